"""Seeded missingness simulators: which observed entries to hide for evaluation.

Every simulator takes a boolean ``observed`` mask of shape ``(..., L, K)`` (time on the
second-to-last axis, features on the last; a wide frame is ``(L, K)``, a batch of windows
``(N, L, K)``) and returns a new boolean *hide* mask of the same shape that is True only on
observed entries. Rates are fractions of the observed entries (or, for
:func:`feature_outage`, of the (series, feature) pairs that have observations); the number
hidden is ``round(rate * count)``, exactly. Randomness comes only from ``seed`` (an int or a
:class:`numpy.random.Generator`); inputs are never modified.

- :func:`mcar`: entries hidden uniformly at random.
- :func:`block_missing`: contiguous runs of ``block_len`` time steps of one feature.
- :func:`feature_outage`: a feature hidden for a whole series / window.
- :func:`hide`: any of these applied to a DataFrame, returning ``(df_with_gaps, hidden)``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["KINDS", "block_missing", "feature_outage", "hide", "mcar"]

KINDS: tuple[str, ...] = ("mcar", "block", "feature")


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise TypeError(f"seed must be an int or a numpy Generator, got {type(seed).__name__}")
    return np.random.default_rng(int(seed))


def _observed(observed: object) -> np.ndarray:
    obs = np.asarray(observed)
    if obs.dtype != bool:
        raise TypeError(f"observed must be a boolean array, got dtype {obs.dtype}")
    if obs.ndim < 2:
        raise ValueError(f"observed must have shape (..., L, K), got shape {obs.shape}")
    return obs


def _rate(rate: object) -> float:
    if isinstance(rate, bool) or not isinstance(rate, int | float | np.integer | np.floating):
        raise TypeError(f"rate must be a number, got {type(rate).__name__}")
    if not 0.0 <= float(rate) <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    return float(rate)


def mcar(observed: np.ndarray, rate: float, seed: int | np.random.Generator) -> np.ndarray:
    """Hide ``round(rate * n_observed)`` observed entries chosen uniformly at random.

    Parameters
    ----------
    observed : ndarray of bool, shape (..., L, K)
        Observed entries.
    rate : float
        Fraction of the observed entries to hide, in [0, 1].
    seed : int or numpy.random.Generator
        Randomness.

    Returns
    -------
    ndarray of bool
        Hide mask, same shape, a subset of ``observed``.
    """
    obs, r, rng = _observed(observed), _rate(rate), _rng(seed)
    idx = np.flatnonzero(obs)
    out = np.zeros(obs.size, dtype=bool)
    out[rng.choice(idx, size=round(r * idx.size), replace=False)] = True
    return out.reshape(obs.shape)


def block_missing(
    observed: np.ndarray, rate: float, block_len: int, seed: int | np.random.Generator
) -> np.ndarray:
    """Hide contiguous blocks of ``block_len`` time steps of single features.

    Blocks are placed one batch at a time: each is anchored on a still-hidable observed entry
    (uniformly chosen), starts at a uniform offset before it (clipped to the series), and hides
    the observed entries it covers. Once fewer than ``2 * block_len`` entries remain to reach
    ``round(rate * n_observed)``, blocks are added one by one and the last one is cut short
    (keeping its earliest entries), so the count is exact. Blocks may touch or overlap, so
    runs can be longer than ``block_len``; a block is shorter where the series is.

    Parameters
    ----------
    observed : ndarray of bool, shape (..., L, K)
        Observed entries.
    rate : float
        Fraction of the observed entries to hide, in [0, 1].
    block_len : int
        Block length in time steps (>= 1).
    seed : int or numpy.random.Generator
        Randomness.

    Returns
    -------
    ndarray of bool
        Hide mask, same shape, a subset of ``observed``.
    """
    obs, r, rng = _observed(observed), _rate(rate), _rng(seed)
    if isinstance(block_len, bool) or not isinstance(block_len, int | np.integer) or block_len < 1:
        raise ValueError(f"block_len must be a positive int, got {block_len!r}")
    shape = obs.shape
    length = shape[-2]
    obs3 = obs.reshape(-1, length, shape[-1])
    hidden = np.zeros_like(obs3)
    target = round(r * int(obs3.sum()))
    count = 0
    width = min(int(block_len), length)
    steps = np.arange(width)
    while count < target:
        avail = np.flatnonzero(obs3 & ~hidden)
        remaining = target - count
        n_blocks = remaining // (2 * width)
        if n_blocks >= 1:
            anchors = rng.choice(avail, size=min(n_blocks, avail.size), replace=False)
            b, t, k = np.unravel_index(anchors, obs3.shape)
            start = np.clip(t - rng.integers(0, width, size=t.size), 0, length - width)
            tt = start[:, None] + steps
            hidden[b[:, None], tt, k[:, None]] |= obs3[b[:, None], tt, k[:, None]]
            count = int(hidden.sum())
            continue
        b, t, k = np.unravel_index(rng.choice(avail), obs3.shape)
        start = int(np.clip(t - rng.integers(0, width), 0, length - width))
        fresh = start + np.flatnonzero(
            obs3[b, start : start + width, k] & ~hidden[b, start : start + width, k]
        )
        hidden[b, fresh[:remaining], k] = True
        count += min(fresh.size, remaining)
    return hidden.reshape(shape)


def feature_outage(observed: np.ndarray, rate: float, seed: int | np.random.Generator) -> np.ndarray:
    """Hide whole features for whole series (sensor outages).

    Among the (series, feature) pairs with at least one observation (a series being one
    ``(L, K)`` slice), ``round(rate * n_pairs)`` are chosen uniformly and all their observed
    entries hidden. For a single ``(L, K)`` frame this hides whole columns.

    Parameters
    ----------
    observed : ndarray of bool, shape (..., L, K)
        Observed entries.
    rate : float
        Fraction of the observed (series, feature) pairs to hide, in [0, 1].
    seed : int or numpy.random.Generator
        Randomness.

    Returns
    -------
    ndarray of bool
        Hide mask, same shape, a subset of ``observed``.
    """
    obs, r, rng = _observed(observed), _rate(rate), _rng(seed)
    obs3 = obs.reshape(-1, obs.shape[-2], obs.shape[-1])
    has = obs3.any(axis=1)  # (B, K)
    pairs = np.flatnonzero(has)
    chosen = np.zeros(has.size, dtype=bool)
    chosen[rng.choice(pairs, size=round(r * pairs.size), replace=False)] = True
    return (obs3 & chosen.reshape(has.shape)[:, None, :]).reshape(obs.shape)


def hide(
    df: pd.DataFrame,
    kind: str = "mcar",
    rate: float = 0.1,
    seed: int | np.random.Generator = 0,
    *,
    block_len: int = 24,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hide observed values of a wide DataFrame (rows = time, columns = features).

    Parameters
    ----------
    df : pandas.DataFrame
        Numeric columns, NaN where missing. Not modified.
    kind : {"mcar", "block", "feature"}, default="mcar"
        :func:`mcar`, :func:`block_missing` or :func:`feature_outage`.
    rate : float, default=0.1
        Fraction to hide (see the simulator).
    seed : int or numpy.random.Generator, default=0
        Randomness.
    block_len : int, default=24
        Block length for ``kind="block"``.

    Returns
    -------
    df_with_gaps : pandas.DataFrame
        A copy of ``df`` (float columns) with the hidden entries set to NaN.
    hidden : pandas.DataFrame of bool
        True where a value was hidden; same index and columns.
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    non_numeric = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if non_numeric:
        raise TypeError(f"df has non-numeric columns {non_numeric}")
    observed = df.notna().to_numpy()
    if kind == "mcar":
        mask = mcar(observed, rate, seed)
    elif kind == "block":
        mask = block_missing(observed, rate, block_len, seed)
    elif kind == "feature":
        mask = feature_outage(observed, rate, seed)
    else:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    hidden = pd.DataFrame(mask, index=df.index, columns=df.columns)
    gaps = df.astype("float64").mask(hidden)
    return gaps, hidden
