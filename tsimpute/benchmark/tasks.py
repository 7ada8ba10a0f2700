"""Benchmark tasks: a protocol's training data, test windows, evaluation targets and metric units.

A :class:`BenchTask` is what every method sees. Values given to the methods are in *model units*
(z-scores with the protocol's training statistics); metrics are computed in *metric units*
(``metric = model * scale + offset``): z-scores for PhysioNet (as CSDI reports it), µg/m³ for PM2.5,
original units for the synthetic data.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .profiles import BenchProfile

__all__ = ["BENCH_DATASETS", "BenchTask", "build_task"]

#: Datasets ``tsimpute bench`` knows.
BENCH_DATASETS: tuple[str, ...] = ("physionet", "pm25", "synthetic")


@dataclass(eq=False)
class BenchTask:
    """One benchmark problem.

    Attributes
    ----------
    dataset : str
        ``physionet``, ``pm25`` or ``synthetic``.
    train_frame : DataFrame
        Panel ``(series id, time)`` x K of training series, model units, NaN = missing.
    test_frame : DataFrame
        Panel ``(window id, time)`` of the test windows with only the given entries (evaluation targets
        and natural gaps are NaN), model units. Every window has exactly ``window`` rows.
    test_given : ndarray (N, L, K)
        ``test_frame`` as windows.
    target : ndarray (N, L, K)
        Ground truth in metric units (NaN where never observed).
    eval_mask : ndarray of bool (N, L, K)
        Evaluation entries.
    scale, offset : ndarray (K,)
        ``metric = model * scale + offset``.
    window : int
        Window length L.
    target_strategy : str
        CSDI's training strategy for this protocol.
    units : str
        Metric units.
    info : dict
        Protocol facts recorded in the results (source, sizes, missing ratio...).
    notes : list of str
        Remarks to show and record (e.g. the embedded-sample fallback).
    norm_mean, norm_std : ndarray (K,) or None
        PhysioNet: the statistics that turned raw values into model units (``(raw - mean) / std``).
    """

    dataset: str
    train_frame: pd.DataFrame
    test_frame: pd.DataFrame
    test_given: np.ndarray
    target: np.ndarray
    eval_mask: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    window: int
    target_strategy: str
    units: str
    info: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    norm_mean: np.ndarray | None = None
    norm_std: np.ndarray | None = None

    @property
    def train_rows(self) -> np.ndarray:
        """Training time steps ``(R, K)`` in model units (for the classical baselines)."""
        return self.train_frame.to_numpy(dtype=np.float64)

    def to_metric(self, x: np.ndarray) -> np.ndarray:
        """Model units to metric units (broadcasts over leading axes)."""
        return x * self.scale + self.offset

    def windows(self, samples: np.ndarray) -> np.ndarray:
        """``(n, N * L, K)`` samples of ``test_frame``'s rows to ``(n, N, L, K)`` windows."""
        n_win, l, k = self.test_given.shape
        return samples.reshape(samples.shape[0], n_win, l, k)


def _panel(values: np.ndarray, ids, times, columns) -> pd.DataFrame:
    """``(N, L, K)`` windows to a panel frame with a ``(series, time)`` MultiIndex."""
    n, l, k = values.shape
    times = np.asarray(times)
    times = times.reshape(-1) if times.ndim == 2 else np.tile(times, n)
    index = pd.MultiIndex.from_arrays([np.repeat(np.asarray(ids), l), times], names=["series", "time"])
    return pd.DataFrame(values.reshape(n * l, k), index=index, columns=list(columns))


def _subset(n: int, size: int | None) -> np.ndarray:
    """``size`` indices spread evenly over ``range(n)`` (all when None or larger)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, size).round().astype(np.int64))


def _covering_subset(pool: np.ndarray, size: int, observed: np.ndarray) -> np.ndarray:
    """The first ``size`` series of ``pool``, with later ones swapped in so that every feature observed
    somewhere in the pool is observed in the subset (a model cannot learn a feature it never sees).

    ``observed`` is ``(series, time, features)``; a swapped-in series replaces the last chosen series that
    is not the only one observing some feature.
    """
    chosen = list(pool[:size])
    seen = observed[pool].any(axis=1)  # (pool, K)
    for k in np.flatnonzero(seen.any(axis=0)):
        if observed[chosen, :, k].any():
            continue
        donor = pool[size:][seen[size:, k]][0]
        counts = observed[chosen].any(axis=1).sum(axis=0)  # series observing each feature
        for j in range(len(chosen) - 1, -1, -1):
            if not (observed[chosen[j]].any(axis=0) & (counts == 1)).any():
                chosen[j] = donor
                break
    return np.asarray(chosen)


# ----------------------------------------------------------------------------- PhysioNet
def _physionet(profile: BenchProfile, *, data_dir, missing_ratio: float, source: str,
               statistics: str = "train") -> BenchTask:
    from ..datasets import SampleDataWarning, load_physionet, physionet_task

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SampleDataWarning)
        data = load_physionet("set-a", source=source, data_dir=data_dir)
    for w in caught:
        if issubclass(w.category, SampleDataWarning):
            notes.append(
                "PhysioNet set-a archive not found: using the embedded real sample of the first "
                f"{len(data.values)} stays (not comparable with published full-data figures)"
            )
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    task = physionet_task(data, missing_ratio=missing_ratio, fold=0, seed=1)
    if statistics == "csdi":
        from ..pretrained import csdi_physionet_scaler

        mean, std = csdi_physionet_scaler()
        stats_text = "z-score with CSDI's statistics (all observed set-a values), as the published model expects"
        if data.source != "full":
            notes.append(
                "the published CSDI model was trained on 80% of the full set-a: on the embedded sample, fold 0's "
                "test stays are not CSDI's, and some were in the model's training data (results are optimistic)"
            )
    else:
        mean, std = task.mean, task.std
        stats_text = "z-score with mean/std of CSDI's training stays"
    z = (task.values - mean) / std
    # training pool: CSDI's training stays, then its validation stays (the Imputer keeps its own 1/8 for
    # early stopping, 70% / 10% of the whole as in CSDI when the pool is complete)
    pool = np.concatenate([task.train_index, task.valid_index])
    train_idx = pool if profile.n_train is None else _covering_subset(pool, profile.n_train, ~np.isnan(z))
    test_idx = task.test_index if profile.n_test is None else task.test_index[: profile.n_test]
    hours = np.arange(z.shape[1])
    ids = data.record_ids
    given = np.where(task.cond_mask, z, np.nan)[test_idx]
    k = z.shape[-1]
    return BenchTask(
        dataset="physionet",
        train_frame=_panel(z[train_idx], ids[train_idx], hours, task.variables),
        test_frame=_panel(given, ids[test_idx], hours, task.variables),
        test_given=given,
        target=z[test_idx],
        eval_mask=task.eval_mask[test_idx],
        scale=np.ones(k),
        offset=np.zeros(k),
        window=z.shape[1],
        target_strategy="random",
        units="z-score",
        info={
            "source": data.source,
            "set": data.set_name,
            "path": None if data.path is None else str(data.path),
            "missing_ratio": float(missing_ratio),
            "fold": 0,
            "split_seed": 1,
            "n_stays": int(len(data.values)),
            "n_train_series": int(len(train_idx)),
            "n_train_pool": int(len(pool)),
            "n_test": int(len(test_idx)),
            "n_test_fold": int(len(task.test_index)),
            "n_eval": int(task.eval_mask[test_idx].sum()),
            "statistics": stats_text,
        },
        notes=notes,
        norm_mean=np.asarray(mean, dtype=np.float64),
        norm_std=np.asarray(std, dtype=np.float64),
    )


# ----------------------------------------------------------------------------- PM2.5
def _pm25(profile: BenchProfile, *, data_dir) -> BenchTask:
    from ..datasets import PM25_TEST_MONTHS, load_pm25, pm25_windows

    window = 36
    data = load_pm25(data_dir=data_dir)
    mean = data.mean.to_numpy(dtype=np.float64)
    std = data.std.to_numpy(dtype=np.float64)
    test = pm25_windows("test", data=data, window=window)
    z_ground = (data.ground - mean) / std
    train = z_ground[~z_ground.index.month.isin(PM25_TEST_MONTHS)]
    months = train.index.month.to_numpy()
    # one series per month (paper), or chunks of six days when a subset is drawn
    chunk = None if profile.n_train is None else 4 * window
    pieces = []
    for m in pd.unique(months):
        part = train[months == m]
        if chunk is None:
            pieces.append(part)
        else:
            pieces.extend(part.iloc[s : s + chunk] for s in range(0, len(part) - window + 1, chunk))
    pieces = [p for p in pieces if len(p) >= window]
    n_series = len(pieces)
    if profile.n_train is not None and profile.n_train < n_series:
        keep = np.sort(np.random.default_rng(0).choice(n_series, profile.n_train, replace=False))
        pieces = [pieces[i] for i in keep]
    train_frame = pd.concat(pieces, keys=range(len(pieces)), names=["series", "time"])
    sel = _subset(len(test.values), profile.n_test)
    z_test = (test.values[sel] - mean) / std
    given = np.where(test.cond_mask[sel], z_test, np.nan)
    times = np.asarray(test.start[sel])[:, None] + np.arange(window) * np.timedelta64(1, "h")
    eval_mask = test.eval_mask[sel]
    return BenchTask(
        dataset="pm25",
        train_frame=train_frame,
        test_frame=_panel(given, sel, times, data.ground.columns),
        test_given=given,
        target=test.values[sel],
        eval_mask=eval_mask,
        scale=std,
        offset=mean,
        window=window,
        target_strategy="mix",
        units="ug/m3",
        info={
            "source": "full",
            "test_months": list(PM25_TEST_MONTHS),
            "n_train_series": len(pieces),
            "n_train_series_total": n_series,
            "train_series": "whole months" if chunk is None else f"chunks of {chunk} hours",
            "n_train_rows": int(len(train_frame)),
            "n_test": int(len(sel)),
            "n_test_fold": int(len(test.values)),
            "n_eval": int(eval_mask.sum()),
            "statistics": "z-score with mean/std of the non-test months (CSDI); metrics in ug/m3",
        },
    )


# ----------------------------------------------------------------------------- synthetic
def _synthetic(profile: BenchProfile, *, missing_ratio: float) -> BenchTask:
    from ..datasets import holdout_mask
    from ..synthetic import correlated_sinusoids

    window = 24
    n_train = 40 if profile.n_train is None else profile.n_train
    n_test = 40 if profile.n_test is None else profile.n_test
    chunk = 4 * window
    n_rows = n_train * chunk + n_test * window
    with_gaps, complete = correlated_sinusoids(n_rows=n_rows, n_features=6, missing_rate=0.2, seed=0)
    split = n_train * chunk
    train_raw = with_gaps.iloc[:split]
    mean = train_raw.mean().to_numpy()
    std = train_raw.std(ddof=0).to_numpy()
    z = (with_gaps - mean) / std
    train_frame = pd.concat(
        [z.iloc[s : s + chunk] for s in range(0, split, chunk)], keys=range(n_train), names=["series", "time"]
    )
    k = with_gaps.shape[1]
    test_z = z.iloc[split:].to_numpy().reshape(n_test, window, k)
    observed = ~np.isnan(test_z)
    eval_mask = holdout_mask(observed, missing_ratio, seed=1)
    given = np.where(eval_mask, np.nan, test_z)
    target = np.where(observed, complete.iloc[split:].to_numpy().reshape(n_test, window, k), np.nan)
    times = with_gaps.index[split:].to_numpy().reshape(n_test, window)
    return BenchTask(
        dataset="synthetic",
        train_frame=train_frame,
        test_frame=_panel(given, np.arange(n_test), times, with_gaps.columns),
        test_given=given,
        target=target,
        eval_mask=eval_mask,
        scale=std,
        offset=mean,
        window=window,
        target_strategy="random",
        units="original",
        info={
            "source": "tsimpute.synthetic.correlated_sinusoids(seed=0, missing_rate=0.2)",
            "missing_ratio": float(missing_ratio),
            "n_train_series": n_train,
            "n_test": n_test,
            "n_eval": int(eval_mask.sum()),
        },
    )


def build_task(
    dataset: str,
    profile: BenchProfile,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    missing_ratio: float = 0.1,
    source: str = "auto",
    statistics: str = "train",
) -> BenchTask:
    """Load a dataset and cut it into a :class:`BenchTask` of the profile's size.

    Parameters
    ----------
    dataset : {"physionet", "pm25", "synthetic"}
        Which protocol (METHOD.md §7).
    profile : BenchProfile
        Sizes (``n_train``, ``n_test``), already resolved for the dataset.
    data_dir : str or path-like, optional
        Data root searched first (see :mod:`tsimpute.datasets`).
    missing_ratio : float, default=0.1
        PhysioNet / synthetic: share of observed values held out as evaluation targets.
    source : {"auto", "full", "sample"}, default="auto"
        PhysioNet archive or embedded sample (see :func:`tsimpute.datasets.load_physionet`).
    statistics : {"train", "csdi"}, default="train"
        PhysioNet normalisation: mean/std of the training stays (tsimpute's protocol), or CSDI's (all observed
        set-a values, what CSDI's published network was trained with).

    Raises
    ------
    ValueError
        Unknown dataset, bad missing ratio, or a data file failing its checksum.
    FileNotFoundError
        Data files not found (the message lists where they were looked for).
    """
    if dataset not in BENCH_DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {list(BENCH_DATASETS)}")
    if not (isinstance(missing_ratio, int | float) and 0 < missing_ratio < 1):
        raise ValueError(f"missing_ratio must lie in (0, 1), got {missing_ratio!r}")
    if data_dir is not None and not os.path.isdir(data_dir):
        raise FileNotFoundError(f"data directory {os.fspath(data_dir)!r} does not exist")
    if statistics not in ("train", "csdi"):
        raise ValueError(f"statistics must be 'train' or 'csdi', got {statistics!r}")
    if statistics == "csdi" and dataset != "physionet":
        raise ValueError("CSDI's statistics are defined for physionet only")
    if dataset == "physionet":
        return _physionet(profile, data_dir=data_dir, missing_ratio=missing_ratio, source=source,
                          statistics=statistics)
    if dataset == "pm25":
        return _pm25(profile, data_dir=data_dir)
    return _synthetic(profile, missing_ratio=missing_ratio)
