"""Recalibration of the predictive spread: split-conformal scale factors per feature and gap length.

A diffusion sampler that skips steps, or a network trained briefly, draws samples whose spread is too narrow
(or too wide): their central bands hold fewer (more) of the true values than their nominal level. This module
learns, on observed values hidden from the model (held-out windows), how much the samples' spread around their
median must be scaled so that the central ``level`` band covers ``level`` of the truth, and applies it:

- the *score* of a hidden entry is the factor by which its band, scaled about the samples' median, must grow
  (or may shrink) to reach the true value: ``max((y - m) / (hi - m), (m - y) / (m - lo))``;
- the factor of a group of entries is the split-conformal quantile of their scores, the
  ``ceil((n + 1) level) / n`` empirical quantile (Vovk et al. 2005; Romano et al. 2019's scaled intervals): on
  exchangeable data the scaled band then covers at least ``level`` of new entries;
- groups are a feature and a range of distance from the given values (:data:`GAP_EDGES` of
  :func:`~tsimpute.diffusion.conditioning.gap_distance`: a single missing hour is not a long gap); a group with
  fewer than ``min_count`` entries takes its feature's factor, and a feature with too few the overall one.

Scaling every sample about the per-entry median keeps the median (``transform`` is unchanged) and scales every
quantile by the same factor, so bands of any level move together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .diffusion.conditioning import gap_distance

__all__ = ["GAP_EDGES", "SpreadCalibration", "fit_spread_calibration"]

#: Edges of the gap-distance ranges (``gap_distance`` is 1/2 for a single missing entry).
GAP_EDGES = (0.5, 2.0, 8.0)


def _gap_bins(cond_mask: torch.Tensor) -> np.ndarray:
    edges = torch.as_tensor(GAP_EDGES, dtype=torch.float32, device=cond_mask.device)
    return torch.bucketize(gap_distance(cond_mask), edges).cpu().numpy()


@dataclass(frozen=True)
class SpreadCalibration:
    """Scale factors of the samples' spread, ``factors[k, b]`` for feature ``k`` and gap range ``b``.

    ``level`` is the nominal level they were fitted for, ``counts`` the held-out entries behind each group and
    ``sampling`` the sampling settings they describe (set by the estimator).
    """

    factors: np.ndarray
    counts: np.ndarray
    level: float
    sampling: dict | None = None

    def apply(self, samples: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """Samples ``(n, N, K, L)`` of windows given ``cond_mask (N, K, L)``, scaled about their per-entry median,
        in float64 (so that the median stays what it was).

        Entries that are given (all samples equal) are unchanged.
        """
        if samples.shape[-2] != self.factors.shape[0]:
            raise ValueError(f"the calibration has {self.factors.shape[0]} features, the samples "
                             f"{samples.shape[-2]}")
        bins = _gap_bins(cond_mask)
        k = np.arange(self.factors.shape[0])[None, :, None]
        factor = torch.as_tensor(self.factors[k, bins], dtype=torch.float64, device=samples.device)
        samples = samples.double()
        ordered = samples.sort(dim=0).values
        n = samples.shape[0]
        median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        return median + factor * (samples - median)

    def to_dict(self) -> dict:
        return {"factors": self.factors.tolist(), "counts": self.counts.tolist(), "level": float(self.level),
                "sampling": self.sampling}

    @classmethod
    def from_dict(cls, d: dict) -> SpreadCalibration:
        return cls(np.asarray(d["factors"], dtype=np.float64), np.asarray(d["counts"], dtype=np.int64),
                   float(d["level"]), d.get("sampling"))


def _conformal_factor(scores: np.ndarray, level: float) -> float:
    n = len(scores)
    q = min(1.0, math.ceil((n + 1) * level) / n)
    return float(np.quantile(scores, q, method="higher"))


def fit_spread_calibration(samples: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor,
                           cond_mask: torch.Tensor, level: float = 0.9, min_count: int = 30,
                           max_factor: float = 100.0) -> SpreadCalibration:
    """Fit :class:`SpreadCalibration` from samples ``(n, N, K, L)`` of hidden entries ``hidden (N, K, L)``
    (true values ``target``) of windows given ``cond_mask``.

    Raises ValueError when fewer than ``min_count`` entries are hidden in all, or ``level`` is not in (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    if samples.shape[0] < 2:
        raise ValueError("a spread calibration needs at least 2 samples per entry")
    s = samples.detach().double().cpu().numpy()
    lo, m, hi = np.quantile(s, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)
    y = target.detach().double().cpu().numpy()
    eps = 1e-12
    up = (y - m) / np.maximum(hi - m, eps)
    down = (m - y) / np.maximum(m - lo, eps)
    score = np.clip(np.maximum(up, down), 0.0, None)
    sel = hidden.detach().cpu().numpy() > 0
    n_features, n_bins = samples.shape[-2], len(GAP_EDGES) + 1
    total = int(sel.sum())
    if total < min_count:
        raise ValueError(f"a spread calibration needs at least {min_count} hidden entries, got {total}")
    bins = _gap_bins(cond_mask)
    feature = np.broadcast_to(np.arange(n_features)[None, :, None], sel.shape)
    overall = min(_conformal_factor(score[sel], level), max_factor)
    factors = np.full((n_features, n_bins), overall)
    counts = np.zeros((n_features, n_bins), dtype=np.int64)
    for k in range(n_features):
        in_k = sel & (feature == k)
        base = min(_conformal_factor(score[in_k], level), max_factor) if in_k.sum() >= min_count else overall
        for b in range(n_bins):
            cell = in_k & (bins == b)
            counts[k, b] = int(cell.sum())
            factors[k, b] = min(_conformal_factor(score[cell], level), max_factor) if counts[k, b] >= min_count \
                else base
    return SpreadCalibration(factors, counts, float(level))
