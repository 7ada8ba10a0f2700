"""CSDI's PhysioNet 2012 protocol: 5-fold split, held-out targets, train-only statistics.

- :func:`physionet_split` reproduces the permutation of CSDI's ``get_dataloader``
  (70% train / 10% validation / 20% test fold, seed 1);
- :func:`holdout_mask` reproduces CSDI's per-stay evaluation targets (10/50/90% of the
  observed values);
- :func:`zscore_stats` computes normalisation statistics from the training stays only
  (CSDI uses all stays before splitting; tsimpute deliberately does not);
- :func:`physionet_task` bundles them for one run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .physionet import PhysioNetData

__all__ = ["PhysioNetTask", "holdout_mask", "physionet_split", "physionet_task", "zscore_stats"]


@dataclass(frozen=True, eq=False)
class PhysioNetTask:
    """Everything one CSDI PhysioNet run needs (see :func:`physionet_task`).

    Attributes
    ----------
    values : ndarray (N, 48, 35)
        Raw values, NaN where missing.
    observed_mask : ndarray of bool (N, 48, 35)
        Recorded entries.
    eval_mask : ndarray of bool (N, 48, 35)
        Held-out evaluation targets (a subset of ``observed_mask``).
    cond_mask : ndarray of bool (N, 48, 35)
        ``observed_mask & ~eval_mask``: what the model is given.
    train_index, valid_index, test_index : ndarray of int64
        Stay indices of the split.
    mean, std : ndarray (35,)
        Per-variable statistics over observed entries of the training stays only.
    """

    values: np.ndarray
    observed_mask: np.ndarray
    eval_mask: np.ndarray
    cond_mask: np.ndarray
    train_index: np.ndarray
    valid_index: np.ndarray
    test_index: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    variables: tuple[str, ...]
    missing_ratio: float
    fold: int
    seed: int


def _check_int(name: str, value: object, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def physionet_split(
    n: int, fold: int = 0, seed: int = 1, n_folds: int = 5, train_frac: float = 0.7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train/validation/test stay indices exactly as CSDI's ``get_dataloader``.

    The indices ``0..n-1`` are shuffled with a ``RandomState(seed)`` (the same permutation as
    CSDI's ``np.random.seed(seed); np.random.shuffle``); the test set is the slice
    ``[int(fold / n_folds * n), int((fold + 1) / n_folds * n))`` of it; the rest is shuffled
    again with a fresh ``RandomState(seed)`` and its first ``int(n * train_frac)`` indices are
    the training set, the remainder the validation set (70% / 10% / 20% of the whole for the
    defaults).

    Parameters
    ----------
    n : int
        Number of stays.
    fold : int, default=0
        Test fold, ``0 <= fold < n_folds``.
    seed : int, default=1
        CSDI's ``--seed``.
    n_folds : int, default=5
        Number of folds.
    train_frac : float, default=0.7
        Training fraction of the whole.

    Returns
    -------
    train_index, valid_index, test_index : ndarray of int64
    """
    n = _check_int("n", n, 1)
    n_folds = _check_int("n_folds", n_folds, 2)
    fold = _check_int("fold", fold)
    seed = _check_int("seed", seed)
    if fold >= n_folds:
        raise ValueError(f"fold must be < n_folds={n_folds}, got {fold}")
    if not 0.0 < train_frac <= 1.0 - 1.0 / n_folds:
        raise ValueError(f"train_frac must be in (0, {1 - 1 / n_folds}], got {train_frac}")
    indices = np.arange(n)
    np.random.RandomState(seed).shuffle(indices)
    frac = 1.0 / n_folds  # == 0.2 exactly for 5 folds, as CSDI writes it
    start, end = int(fold * frac * n), int((fold + 1) * frac * n)
    test = indices[start:end]
    remain = np.delete(indices, np.arange(start, end))
    np.random.RandomState(seed).shuffle(remain)
    num_train = int(n * train_frac)
    return remain[:num_train].astype(np.int64), remain[num_train:].astype(np.int64), test.astype(np.int64)


def holdout_mask(
    observed_mask: np.ndarray,
    missing_ratio: float,
    seed: int | np.random.RandomState | np.random.Generator = 1,
) -> np.ndarray:
    """Draw evaluation targets among observed entries, per stay, as CSDI does.

    For each stay (axis 0) in order, ``int(missing_ratio * count)`` of its ``count`` observed
    entries (flattened ``(L, K)`` order) are chosen without replacement. With an int seed a
    ``np.random.RandomState(seed)`` is used and, applied to all stays in RecordID order, the
    result equals CSDI's (``Physio_Dataset`` seeds the global RNG once, then calls
    ``np.random.choice`` per stay). Note ``int`` truncates (CSDI), it does not round.

    Parameters
    ----------
    observed_mask : array-like of bool, shape (N, L, K)
        Recorded entries.
    missing_ratio : float
        Fraction of each stay's observed entries to hold out, in [0, 1].
    seed : int, numpy RandomState or numpy Generator, default=1
        Randomness (a Generator gives different draws than CSDI's).

    Returns
    -------
    ndarray of bool, shape (N, L, K)
        True at held-out targets (always a subset of ``observed_mask``).
    """
    obs = np.asarray(observed_mask)
    if obs.ndim != 3:
        raise ValueError(f"observed_mask must have shape (N, L, K), got shape {obs.shape}")
    if obs.dtype != bool:
        raise TypeError(f"observed_mask must be boolean, got dtype {obs.dtype}")
    if not (isinstance(missing_ratio, float | int) and 0.0 <= missing_ratio <= 1.0):
        raise ValueError(f"missing_ratio must be a number in [0, 1], got {missing_ratio!r}")
    if isinstance(seed, np.random.RandomState | np.random.Generator):
        rng = seed
    else:
        rng = np.random.RandomState(_check_int("seed", seed))
    flat = obs.reshape(obs.shape[0], -1)
    out = np.zeros_like(flat)
    for i in range(flat.shape[0]):
        idx = np.flatnonzero(flat[i])
        chosen = rng.choice(idx, int(len(idx) * missing_ratio), replace=False)
        out[i, chosen] = True
    return out.reshape(obs.shape)


def zscore_stats(values: np.ndarray, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-variable mean and (population, ddof=0) std over observed entries of some stays.

    CSDI computes these over all 4000 stays before splitting; tsimpute computes them from the
    training stays only (pass ``index=train_index``) so no test information leaks.

    Parameters
    ----------
    values : ndarray, shape (N, L, K)
        Values with NaN where missing.
    index : ndarray of int, optional
        Stays to use; default all.

    Returns
    -------
    mean, std : ndarray of float64, shape (K,)
        A variable never observed gets mean 0 and std 1; a constant one std 1 (with a warning).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 3:
        raise ValueError(f"values must have shape (N, L, K), got shape {v.shape}")
    if index is not None:
        v = v[np.asarray(index)]
    flat = v.reshape(-1, v.shape[-1])
    count = (~np.isnan(flat)).sum(axis=0)
    empty = count == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.where(empty, 0.0, np.nanmean(flat, axis=0))
        std = np.where(empty, 1.0, np.nanstd(flat, axis=0))
    bad = empty | (std == 0)
    if bad.any():
        warnings.warn(
            f"variables {np.flatnonzero(bad).tolist()} are unobserved or constant; std set to 1", stacklevel=2
        )
        std = np.where(bad, 1.0, std)
    return mean, std


def physionet_task(
    data: PhysioNetData, missing_ratio: float = 0.1, fold: int = 0, seed: int = 1
) -> PhysioNetTask:
    """Assemble the CSDI PhysioNet protocol: split, held-out targets, train-only statistics.

    Parameters
    ----------
    data : PhysioNetData
        From :func:`load_physionet`.
    missing_ratio : float, default=0.1
        Held-out fraction of observed values (0.1, 0.5, 0.9 in CSDI).
    fold : int, default=0
        Test fold (5 folds).
    seed : int, default=1
        Seed of both the split and the held-out draw (as CSDI's ``--seed``).

    Returns
    -------
    PhysioNetTask
    """
    observed = data.observed_mask
    eval_mask = holdout_mask(observed, missing_ratio, seed)
    train, valid, test = physionet_split(len(data.values), fold=fold, seed=seed)
    mean, std = zscore_stats(data.values, train)
    return PhysioNetTask(
        values=data.values.copy(),
        observed_mask=observed,
        eval_mask=eval_mask,
        cond_mask=observed & ~eval_mask,
        train_index=train,
        valid_index=valid,
        test_index=test,
        mean=mean,
        std=std,
        variables=data.variables,
        missing_ratio=float(missing_ratio),
        fold=fold,
        seed=seed,
    )
