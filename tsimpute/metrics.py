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

All values are in the units of the inputs: pass de-normalised arrays for figures in original
units (CSDI reports PM2.5 in ug/m3 and PhysioNet in z-scores for MAE/RMSE; its CRPS is always
computed after de-normalising).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import properscoring

__all__ = [
    "CRPS_QUANTILES",
    "crps_ensemble",
    "crps_quantile",
    "evaluate",
    "mae",
    "mae_point",
    "rmse",
    "rmse_point",
    "sample_median",
]

#: CSDI's quantile levels: ``np.arange(0.05, 1.0, 0.05)`` (19 levels, same floats as CSDI).
CRPS_QUANTILES: np.ndarray = np.arange(0.05, 1.0, 0.05)

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
    samples: object, target: object, mask: object, *, sample_axis: int = 0, median: Median = "lower"
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

    Returns
    -------
    dict
        ``mae``, ``rmse``, ``crps`` (:func:`crps_quantile`), ``crps_ensemble``, ``n_samples``,
        ``n_eval`` (number of evaluation entries).
    """
    s, t = _check_samples(samples, target, mask, sample_axis)
    # the checked (n, m) arrays are already restricted to the evaluation entries
    ones = np.ones(t.shape, dtype=bool)
    return {
        "mae": mae(s, t, ones, median=median),
        "rmse": rmse(s, t, ones, median=median),
        "crps": crps_quantile(s, t, ones),
        "crps_ensemble": crps_ensemble(s, t, ones),
        "n_samples": int(s.shape[0]),
        "n_eval": int(t.size),
    }
