"""Imputation metrics on evaluation entries (CSDI protocol; numpy and properscoring only).

Every function takes a boolean ``mask`` selecting the evaluation entries (values known to the
scorer but hidden from the model); everything outside it is ignored, NaN included.

Sample-based functions take ``samples`` with the sample axis first, ``(n, *shape)``, and a
``target`` and ``mask`` of shape ``shape`` (use ``sample_axis`` for another layout, e.g. CSDI's
``(B, n, L, K)`` with ``sample_axis=1``). Point functions take a prediction of shape ``shape``.

- :func:`mae`, :func:`rmse`: error of the per-entry sample median (CSDI: ``torch.median``,
  which takes the *lower* of the two middle values for an even count; ``median="midpoint"``
  gives numpy's average of the two).
- :func:`mae_point`, :func:`rmse_point`: error of a point prediction.
- :func:`crps_quantile`: CSDI's normalised CRPS (``calc_quantile_CRPS``).
- :func:`crps_ensemble`: mean per-entry CRPS of the sample ensemble (properscoring).

Calibration of the sample ensemble (does the predictive spread match the errors?):

- :func:`coverage`: share of evaluation entries inside the central ``level`` band of their samples.
- :func:`band_width`: mean width of that band (no target needed).
- :func:`interval_score`: Gneiting & Raftery's interval score of the band (width plus a penalty for misses).
- :func:`pit_values`, :func:`pit_histogram`: the randomised probability integral transform of each target
  under its samples, and its histogram (flat when the samples are calibrated).
- :func:`calibration`: coverage and width at several levels at once (``cov50``, ``width50``, ...).

The central ``level`` band of an entry runs from the empirical ``(1 - level) / 2`` quantile to the
``(1 + level) / 2`` quantile of its samples, both computed with numpy's default linear interpolation
(``numpy.quantile(..., method="linear")``, the convention of :func:`crps_quantile`); both bounds are
inclusive. With few samples the band is narrow and coverage biased low (the 90% band of 3 samples runs
nearly from their minimum to their maximum, which a calibrated ensemble covers half of the time).

All values are in the units of the inputs: pass de-normalised arrays for figures in original
units (CSDI reports PM2.5 in ug/m3 and PhysioNet in z-scores for MAE/RMSE; its CRPS is always
computed after de-normalising).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Literal

import numpy as np
import properscoring

__all__ = [
    "CALIBRATION_LEVELS",
    "CRPS_QUANTILES",
    "PITHistogram",
    "band_width",
    "calibration",
    "coverage",
    "crps_ensemble",
    "crps_quantile",
    "evaluate",
    "interval_score",
    "mae",
    "mae_point",
    "pit_histogram",
    "pit_values",
    "rmse",
    "rmse_point",
    "sample_median",
]

#: CSDI's quantile levels: ``np.arange(0.05, 1.0, 0.05)`` (19 levels, same floats as CSDI).
CRPS_QUANTILES: np.ndarray = np.arange(0.05, 1.0, 0.05)

#: Nominal levels of the central bands :func:`calibration` reports by default.
CALIBRATION_LEVELS: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95)

Median = Literal["lower", "midpoint"]


# ----------------------------------------------------------------------------- checks
def _as_mask(mask: object, shape: tuple[int, ...]) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype != bool:
        if m.dtype.kind in "iuf" and np.isin(m, (0, 1)).all():
            m = m.astype(bool)
        else:
            raise TypeError(f"mask must be boolean (or 0/1), got dtype {m.dtype}")
    if m.shape != shape:
        raise ValueError(f"mask has shape {m.shape}, expected {shape} (the shape of target)")
    if not m.any():
        raise ValueError("mask selects no evaluation entry")
    return m


def _as_numeric(name: str, x: object) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    return a


def _check_point(pred: object, target: object, mask: object) -> tuple[np.ndarray, np.ndarray]:
    p, t = _as_numeric("pred", pred), _as_numeric("target", target)
    if p.shape != t.shape:
        raise ValueError(f"pred has shape {p.shape}, target {t.shape}; they must match")
    m = _as_mask(mask, t.shape)
    p, t = p[m].astype(np.float64), t[m].astype(np.float64)
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("pred and target must be finite on the evaluation entries")
    return p, t


def _check_samples(
    samples: object, target: object, mask: object, sample_axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(samples[:, mask], target[mask])`` as float64 arrays ``(n, m)`` and ``(m,)``."""
    s, t = _as_numeric("samples", samples), _as_numeric("target", target)
    if s.ndim != t.ndim + 1:
        raise ValueError(
            f"samples must have one more axis than target (the sample axis); got samples {s.shape}, "
            f"target {t.shape}"
        )
    if not -s.ndim <= sample_axis < s.ndim:
        raise ValueError(f"sample_axis={sample_axis} is out of range for samples of shape {s.shape}")
    s = np.moveaxis(s, sample_axis, 0)
    if s.shape[1:] != t.shape:
        raise ValueError(f"samples have entry shape {s.shape[1:]}, target {t.shape}; they must match")
    if s.shape[0] < 1:
        raise ValueError("samples must hold at least one sample")
    m = _as_mask(mask, t.shape)
    s, t = s[:, m].astype(np.float64), t[m].astype(np.float64)  # copies: inputs never change
    if not (np.isfinite(s).all() and np.isfinite(t).all()):
        raise ValueError("samples and target must be finite on the evaluation entries")
    return s, t


def _check_ensemble(samples: object, mask: object, sample_axis: int) -> np.ndarray:
    """Return ``samples[:, mask]`` as a float64 array ``(n, m)`` (no target)."""
    s = _as_numeric("samples", samples)
    if s.ndim < 1:
        raise ValueError("samples must have a sample axis")
    if not -s.ndim <= sample_axis < s.ndim:
        raise ValueError(f"sample_axis={sample_axis} is out of range for samples of shape {s.shape}")
    s = np.moveaxis(s, sample_axis, 0)
    if s.shape[0] < 1:
        raise ValueError("samples must hold at least one sample")
    m = _as_mask(mask, s.shape[1:])
    s = s[:, m].astype(np.float64)
    if not np.isfinite(s).all():
        raise ValueError("samples must be finite on the evaluation entries")
    return s


def _check_level(level: object) -> float:
    if isinstance(level, bool) or not isinstance(level, Real):
        raise TypeError(f"level must be a number in (0, 1), got {level!r}")
    lv = float(level)
    if not 0.0 < lv < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    return lv


def _band(s: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-entry bounds of the central ``level`` band of samples ``(n, m)`` (linear interpolation)."""
    lo, hi = np.quantile(s, [(1.0 - level) / 2.0, (1.0 + level) / 2.0], axis=0)
    return lo, hi


def _level_name(level: float) -> str:
    """``0.9`` -> ``"90"``, ``0.975`` -> ``"97.5"`` (the suffix of :func:`calibration`'s keys)."""
    return f"{round(100.0 * level, 6):g}"


def _median(s: np.ndarray, median: Median) -> np.ndarray:
    if median == "midpoint":
        return np.median(s, axis=0)
    if median == "lower":
        n = s.shape[0]
        return np.partition(s, (n - 1) // 2, axis=0)[(n - 1) // 2]
    raise ValueError(f"median must be 'lower' or 'midpoint', got {median!r}")


# ----------------------------------------------------------------------------- public API
def sample_median(samples: object, *, sample_axis: int = 0, median: Median = "lower") -> np.ndarray:
    """Per-entry median of samples.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples, sample axis ``sample_axis``.
    sample_axis : int, default=0
        Axis holding the samples.
    median : {"lower", "midpoint"}, default="lower"
        ``"lower"``: the lower middle value for even ``n`` (``torch.median``, as CSDI);
        ``"midpoint"``: the mean of the two middle values (``numpy.median``).

    Returns
    -------
    ndarray
        Shape of ``samples`` without the sample axis.
    """
    s = np.moveaxis(_as_numeric("samples", samples), sample_axis, 0).astype(np.float64)
    if s.shape[0] < 1:
        raise ValueError("samples must hold at least one sample")
    return _median(s, median)


def mae_point(pred: object, target: object, mask: object) -> float:
    """Mean absolute error of a point prediction over the evaluation entries.

    Parameters
    ----------
    pred, target : array-like
        Same shape.
    mask : array-like of bool
        Evaluation entries, shape of ``target``.

    Returns
    -------
    float
    """
    p, t = _check_point(pred, target, mask)
    return float(np.abs(p - t).mean())


def rmse_point(pred: object, target: object, mask: object) -> float:
    """Root mean squared error of a point prediction over the evaluation entries.

    Parameters
    ----------
    pred, target : array-like
        Same shape.
    mask : array-like of bool
        Evaluation entries, shape of ``target``.

    Returns
    -------
    float
    """
    p, t = _check_point(pred, target, mask)
    return float(np.sqrt(((p - t) ** 2).mean()))


def mae(
    samples: object, target: object, mask: object, *, sample_axis: int = 0, median: Median = "lower"
) -> float:
    """Mean absolute error of the per-entry sample median (CSDI's MAE).

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.
    median : {"lower", "midpoint"}, default="lower"
        See :func:`sample_median`.

    Returns
    -------
    float
    """
    s, t = _check_samples(samples, target, mask, sample_axis)
    return float(np.abs(_median(s, median) - t).mean())


def rmse(
    samples: object, target: object, mask: object, *, sample_axis: int = 0, median: Median = "lower"
) -> float:
    """Root mean squared error of the per-entry sample median (CSDI's RMSE).

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.
    median : {"lower", "midpoint"}, default="lower"
        See :func:`sample_median`.

    Returns
    -------
    float
    """
    s, t = _check_samples(samples, target, mask, sample_axis)
    return float(np.sqrt(((_median(s, median) - t) ** 2).mean()))


def crps_quantile(samples: object, target: object, mask: object, *, sample_axis: int = 0) -> float:
    """CSDI's normalised CRPS (``calc_quantile_CRPS``).

    For each level ``q`` in :data:`CRPS_QUANTILES` (0.05, 0.10, ..., 0.95) the per-entry
    ``q``-quantile of the samples is taken with linear interpolation (``torch.quantile`` and
    ``numpy.quantile`` default); its quantile loss
    ``2 * sum(|(Q_q - y) * (1{y <= Q_q} - q)|)`` over evaluation entries is divided by
    ``sum(|y|)`` over the same entries; the 19 ratios are averaged.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        Bad shapes, or ``sum(|y|) == 0`` on the evaluation entries (the ratio is undefined).

    Notes
    -----
    Computed in float64. CSDI's torch code gives the same value up to float32 rounding (its
    ``(target <= forecast) * 1.0`` is a float32 tensor, so ``q`` enters the weights rounded to
    float32; relative effect about 1e-8); with float64 weights the two agree to 1e-12.
    """
    s, t = _check_samples(samples, target, mask, sample_axis)
    denom = np.abs(t).sum()
    if denom == 0:
        raise ValueError("target is zero on every evaluation entry: the normalised CRPS is undefined")
    total = 0.0
    for q in CRPS_QUANTILES:
        pred = np.quantile(s, q, axis=0)
        loss = 2.0 * np.abs((pred - t) * ((t <= pred) * 1.0 - q)).sum()
        total += loss / denom
    return float(total / len(CRPS_QUANTILES))


def crps_ensemble(samples: object, target: object, mask: object, *, sample_axis: int = 0) -> float:
    """Mean per-entry CRPS of the sample ensemble (``properscoring.crps_ensemble``).

    Unnormalised, in the units of ``target``; for each entry the empirical-distribution CRPS
    ``E|X - y| - E|X - X'| / 2`` of its samples.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.

    Returns
    -------
    float
    """
    s, t = _check_samples(samples, target, mask, sample_axis)
    return float(np.mean(properscoring.crps_ensemble(t, s.T)))


def evaluate(
    samples: object,
    target: object,
    mask: object,
    *,
    sample_axis: int = 0,
    median: Median = "lower",
    levels: Sequence[float] | None = None,
) -> dict[str, float | int]:
    """All sample metrics at once.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.
    median : {"lower", "midpoint"}, default="lower"
        See :func:`sample_median`.
    levels : sequence of float, optional
        Also report :func:`calibration` at these nominal levels (``cov50``, ``width50``, ...). With a
        single sample (a point prediction) there is no band: those values are NaN. None (default): no
        calibration keys; the other values do not depend on this option.

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``crps`` (:func:`crps_quantile`), ``crps_ensemble``, ``n_samples``,
        ``n_eval`` (number of evaluation entries), then the :func:`calibration` keys if ``levels`` is given.
    """
    if levels is not None:
        _calibration_keys(levels)  # bad levels fail before any work
    s, t = _check_samples(samples, target, mask, sample_axis)
    # the checked (n, m) arrays are already restricted to the evaluation entries
    ones = np.ones(t.shape, dtype=bool)
    out: dict[str, float | int] = {
        "mae": mae(s, t, ones, median=median),
        "rmse": rmse(s, t, ones, median=median),
        "crps": crps_quantile(s, t, ones),
        "crps_ensemble": crps_ensemble(s, t, ones),
        "n_samples": int(s.shape[0]),
        "n_eval": int(t.size),
    }
    if levels is not None:
        if s.shape[0] > 1:
            out.update(calibration(s, t, ones, levels=levels))
        else:  # a point prediction has no band
            out.update(dict.fromkeys(_calibration_keys(levels), float("nan")))
    return out


# ----------------------------------------------------------------------------- calibration
def coverage(
    samples: object, target: object, mask: object, level: float = 0.9, *, sample_axis: int = 0
) -> float:
    """Share of evaluation entries whose target lies inside the central ``level`` band of its samples.

    The band of an entry runs from the ``(1 - level) / 2`` to the ``(1 + level) / 2`` empirical quantile of
    its samples, computed with numpy's default linear interpolation (``numpy.quantile``); both bounds are
    inclusive (``lo <= y <= hi``). A calibrated ensemble covers about ``level`` of the entries (slightly
    less with few samples: see the module docstring); an overconfident one less, an underconfident one more.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    level : float, default=0.9
        Nominal level of the band, strictly between 0 and 1.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.

    Returns
    -------
    float
        In [0, 1].
    """
    lv = _check_level(level)
    s, t = _check_samples(samples, target, mask, sample_axis)
    lo, hi = _band(s, lv)
    return float(((lo <= t) & (t <= hi)).mean())


def band_width(samples: object, mask: object, level: float = 0.9, *, sample_axis: int = 0) -> float:
    """Mean width ``hi - lo`` of the central ``level`` band of the samples over the evaluation entries.

    Same band as :func:`coverage` (linear-interpolation quantiles ``(1 -/+ level) / 2``); no target is
    needed. In the units of ``samples``: read it beside :func:`coverage` (a narrow band is only good if
    it still covers).

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    mask : array-like of bool
        Evaluation entries, shape of one sample.
    level : float, default=0.9
        Nominal level of the band, strictly between 0 and 1.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.

    Returns
    -------
    float
        Non-negative; 0 for a single sample.
    """
    lv = _check_level(level)
    s = _check_ensemble(samples, mask, sample_axis)
    lo, hi = _band(s, lv)
    return float((hi - lo).mean())


def interval_score(
    samples: object, target: object, mask: object, level: float = 0.9, *, sample_axis: int = 0
) -> float:
    """Mean interval score of the central ``level`` band (Gneiting & Raftery 2007, eq. 43).

    With ``alpha = 1 - level`` and the band ``[lo, hi]`` of :func:`coverage`, each entry scores
    ``(hi - lo) + (2 / alpha) * (lo - y) * 1{y < lo} + (2 / alpha) * (y - hi) * 1{y > hi}``: the width plus
    a penalty proportional to how far the target falls outside. Lower is better; it is a proper score for
    the pair of quantiles, so it cannot be improved by narrowing a band that then misses.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    level : float, default=0.9
        Nominal level of the band, strictly between 0 and 1.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.

    Returns
    -------
    float
        In the units of ``target``.
    """
    lv = _check_level(level)
    s, t = _check_samples(samples, target, mask, sample_axis)
    lo, hi = _band(s, lv)
    alpha = 1.0 - lv
    below = np.clip(lo - t, 0.0, None)
    above = np.clip(t - hi, 0.0, None)
    return float(((hi - lo) + (2.0 / alpha) * (below + above)).mean())


def pit_values(
    samples: object,
    target: object,
    mask: object,
    *,
    random_state: int | np.random.Generator | None = None,
    sample_axis: int = 0,
) -> np.ndarray:
    """Randomised probability integral transform of each evaluation entry under its sample ensemble.

    With ``n`` samples, ``r`` of them strictly below the target and ``e`` equal to it, the PIT is
    ``(r + U * (e + 1)) / (n + 1)`` with ``U`` uniform on [0, 1): the target's rank among the ``n + 1``
    values (samples and target), drawn uniformly among tied ranks, spread over its ``1 / (n + 1)`` cell.
    If the target is exchangeable with the samples (a calibrated ensemble) the values are exactly
    uniform on [0, 1], whatever ``n``; overconfident samples pile them up near 0 and 1 (a U shape),
    underconfident ones in the middle, biased ones on one side.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    random_state : int, numpy Generator or None, default=None
        Source of ``U`` (fix it for reproducible values).
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.

    Returns
    -------
    ndarray (m,)
        One value in [0, 1) per evaluation entry, in the order of ``target[mask]``.
    """
    s, t = _check_samples(samples, target, mask, sample_axis)
    n = s.shape[0]
    below = (s < t).sum(axis=0)
    equal = (s == t).sum(axis=0)
    u = np.random.default_rng(random_state).random(t.shape)
    return (below + u * (equal + 1)) / (n + 1)


@dataclass(frozen=True)
class PITHistogram:
    """Histogram of PIT values (:func:`pit_histogram`).

    Attributes
    ----------
    counts : ndarray of int (bins,)
        Evaluation entries per bin.
    frequencies : ndarray of float (bins,)
        ``counts / counts.sum()`` (each is ``1 / bins`` for a calibrated ensemble, up to sampling noise).
    edges : ndarray of float (bins + 1,)
        Bin edges, ``numpy.linspace(0, 1, bins + 1)``; the last bin includes 1.
    """

    counts: np.ndarray
    frequencies: np.ndarray
    edges: np.ndarray

    @property
    def n_eval(self) -> int:
        """Number of evaluation entries counted."""
        return int(self.counts.sum())


def pit_histogram(
    samples: object,
    target: object,
    mask: object,
    bins: int = 10,
    *,
    random_state: int | np.random.Generator | None = None,
    sample_axis: int = 0,
) -> PITHistogram:
    """Histogram over [0, 1] of the randomised PIT values (:func:`pit_values`) of the evaluation entries.

    Flat for a calibrated ensemble; U-shaped when the samples are too narrow (targets fall outside
    them), hump-shaped when too wide, tilted when biased. Choose ``bins`` well below ``n + 1`` (samples
    plus one) only if you want a smooth picture: the randomisation makes any ``bins`` valid.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    bins : int, default=10
        Number of equal-width bins on [0, 1].
    random_state : int, numpy Generator or None, default=None
        Source of the randomisation (see :func:`pit_values`).
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.

    Returns
    -------
    PITHistogram
    """
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer):
        raise TypeError(f"bins must be an integer, got {bins!r}")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    pit = pit_values(samples, target, mask, random_state=random_state, sample_axis=sample_axis)
    edges = np.linspace(0.0, 1.0, int(bins) + 1)
    counts, _ = np.histogram(pit, bins=edges)
    return PITHistogram(counts=counts.astype(np.int64), frequencies=counts / counts.sum(), edges=edges)


def _calibration_keys(levels: Sequence[float]) -> list[str]:
    names = [_level_name(_check_level(lv)) for lv in levels]
    if not names:
        raise ValueError("levels is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"levels must be distinct, got {list(levels)}")
    return [f"{kind}{name}" for name in names for kind in ("cov", "width")]


def calibration(
    samples: object,
    target: object,
    mask: object,
    levels: Sequence[float] = CALIBRATION_LEVELS,
    *,
    sample_axis: int = 0,
) -> dict[str, float]:
    """Coverage and mean width of the central band at each nominal level, in one pass over the data.

    Parameters
    ----------
    samples : array-like, shape (n, ...)
        Samples (sample axis ``sample_axis``).
    target : array-like
        Ground truth, shape of one sample.
    mask : array-like of bool
        Evaluation entries.
    levels : sequence of float, default=(0.5, 0.8, 0.9, 0.95)
        Nominal levels, each strictly between 0 and 1, distinct.
    sample_axis : int, default=0
        Axis of ``samples`` holding the samples.

    Returns
    -------
    dict
        For each level, in the order given, ``cov<L>`` (:func:`coverage`) then ``width<L>``
        (:func:`band_width`), where ``<L>`` is the level in percent (``0.9`` -> ``cov90``, ``width90``;
        ``0.975`` -> ``cov97.5``). A reliability diagram plots ``cov<L>`` against ``L / 100``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> out = calibration(rng.normal(size=(200, 1000)), rng.normal(size=1000), np.ones(1000, bool), [0.9])
    >>> sorted(out)
    ['cov90', 'width90']
    """
    if isinstance(levels, str) or not isinstance(levels, Sequence | np.ndarray):
        raise TypeError(f"levels must be a sequence of numbers, got {levels!r}")
    keys = _calibration_keys(levels)
    s, t = _check_samples(samples, target, mask, sample_axis)
    out: dict[str, float] = {}
    for lv, (cov_key, width_key) in zip(levels, zip(keys[::2], keys[1::2], strict=True), strict=True):
        lo, hi = _band(s, float(lv))
        out[cov_key] = float(((lo <= t) & (t <= hi)).mean())
        out[width_key] = float((hi - lo).mean())
    return out
