"""Recalibration of the predictive spread: split-conformal scale factors per feature, gap length (optionally,
range of values) and level.

A diffusion sampler that skips steps, or a network trained briefly, draws samples whose spread is too narrow
(or too wide): their central bands hold fewer (more) of the true values than their nominal level. This module
learns, on observed values hidden from the model (held-out windows), how much the samples' spread around their
median must be scaled so that the central band of each level ``l`` covers ``l`` of the truth, and applies it:

- the *score* of a hidden entry at level ``l`` is the factor by which its central ``l`` band, scaled about the
  samples' median ``m``, must grow (or may shrink) to reach the true value ``y``:
  ``max((y - m) / (hi - m), (m - y) / (m - lo))``;
- the factor of a group of ``n`` entries at level ``l`` is the split-conformal quantile of their scores, the
  ``ceil((n + 1) l)``-th smallest (Vovk et al. 2005; Romano et al. 2019's scaled intervals): on exchangeable
  data the scaled band then covers at least ``l`` of new entries, and on average at most ``l + 1 / (n + 1)``;
- one factor per level of :data:`LEVELS`, because errors are often heavier-tailed than the samples (a single
  factor that fixes the 90% band then over-widens the 50% band); a sample is scaled by the factor of the central
  level it sits at (its rank), interpolated between the levels, with the samples' order kept;
- groups are a feature and a range of distance from the given values (:data:`GAP_EDGES` of
  :func:`~tsimpute.diffusion.conditioning.gap_distance`: a single missing hour is not a long gap), and with
  ``value_bins > 1`` a range of the samples' median (the feature's held-out medians cut into equal shares: on
  skewed, positive data such as pollutant concentrations the errors relative to the spread are larger at high
  values than at low ones; on data without that dependence the smaller groups only add noise); a group with
  fewer than ``min_count`` entries takes the factors of its feature and gap range, then of its feature, then
  the overall ones.

The per-entry median is kept (``transform`` is unchanged) and every sample keeps its rank among the samples of
its entry (a draw stays one draw across entries, for multiple imputation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .diffusion.parameterization import gap_bins

__all__ = ["GAP_EDGES", "LEVELS", "SpreadCalibration", "conformal_quantile", "fit_spread_calibration"]

#: Edges of the gap-distance ranges (``gap_distance`` is 1/2 for a single missing entry).
GAP_EDGES = (0.5, 2.0, 8.0)
#: Central levels that get a factor of their own.
LEVELS = (0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class SpreadCalibration:
    """Scale factors of the samples' spread, ``factors[k, b, v, j]`` for feature ``k``, gap range ``b``, value
    range ``v`` and central level ``levels[j]``.

    ``value_edges[k]`` (ascending, in the samples' units) cut feature ``k``'s medians into the value ranges
    (none: one range); ``counts[k, b, v]`` are the held-out entries behind each group and ``sampling`` the
    sampling settings the factors describe (set by the estimator). Factors ``(K, B, J)`` (one value range, as
    written before value ranges existed) are read as ``(K, B, 1, J)``.
    """

    factors: np.ndarray
    counts: np.ndarray
    levels: tuple[float, ...] = LEVELS
    sampling: dict | None = None
    value_edges: np.ndarray | None = None

    def __post_init__(self) -> None:
        factors, counts = np.asarray(self.factors, dtype=np.float64), np.asarray(self.counts, dtype=np.int64)
        if factors.ndim == 3:
            factors, counts = factors[:, :, None, :], counts[:, :, None]
        edges = np.zeros((factors.shape[0], 0)) if self.value_edges is None else np.asarray(self.value_edges,
                                                                                            dtype=np.float64)
        if factors.ndim != 4 or edges.shape != (factors.shape[0], factors.shape[2] - 1):
            raise ValueError(f"factors {factors.shape} and value_edges {edges.shape} do not match: expected "
                             "(K, B, V, J) and (K, V - 1)")
        object.__setattr__(self, "factors", factors)
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "value_edges", edges)

    def apply(self, samples: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """Samples ``(n, N, K, L)`` of windows given ``cond_mask (N, K, L)``, rescaled about their per-entry
        median, in float64 (so that the median stays what it was).

        The sample of rank ``j`` (of ``n``) sits at the central level ``|2 j / (n - 1) - 1|`` (numpy's linear
        quantiles), and is moved away from (or towards) the median by that level's factor, interpolated between
        :attr:`levels`; distances stay ordered, so every sample keeps its rank. Given entries (all samples
        equal) are unchanged.
        """
        if samples.shape[-2] != self.factors.shape[0]:
            raise ValueError(f"the calibration has {self.factors.shape[0]} features, the samples "
                             f"{samples.shape[-2]}")
        n = samples.shape[0]
        x = samples.double()
        if n < 2:
            return x
        bins = gap_bins(cond_mask.to(x.device), GAP_EDGES)
        order = x.argsort(dim=0)
        ordered = x.gather(0, order)
        median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        edges = torch.as_tensor(self.value_edges, dtype=torch.float64, device=x.device)  # (K, V - 1)
        ranges = (median.unsqueeze(-1) >= edges.view(1, edges.shape[0], 1, -1)).sum(-1)  # (N, K, L)
        table = torch.as_tensor(self.factors, dtype=torch.float64, device=x.device)  # (K, B, V, J)
        k = torch.arange(table.shape[0], device=x.device).view(1, -1, 1)
        per_entry = table[k, bins, ranges]  # (N, K, L, J)
        ranks = order.argsort(dim=0).double()
        level = (2 * ranks / (n - 1) - 1).abs()  # (n, N, K, L)
        factor = _interpolate(level, torch.as_tensor(self.levels, dtype=torch.float64, device=x.device), per_entry)
        distance = factor * (x - median)
        # keep the order: along each side of the median, distances only grow with the rank
        d_sorted = distance.gather(0, order)
        upper = torch.cummax(d_sorted.clamp(min=0), dim=0).values
        lower = -torch.cummax((-d_sorted).clamp(min=0).flip(0), dim=0).values.flip(0)
        d_sorted = torch.where(d_sorted >= 0, upper, lower)
        return median + torch.empty_like(distance).scatter_(0, order, d_sorted)

    def to_dict(self) -> dict:
        return {"factors": self.factors.tolist(), "counts": self.counts.tolist(), "levels": list(self.levels),
                "sampling": self.sampling, "value_edges": self.value_edges.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> SpreadCalibration:
        edges = d.get("value_edges")
        return cls(np.asarray(d["factors"], dtype=np.float64), np.asarray(d["counts"], dtype=np.int64),
                   tuple(float(v) for v in d["levels"]), d.get("sampling"),
                   None if edges is None else np.asarray(edges, dtype=np.float64).reshape(len(d["factors"]), -1))


def _interpolate(level: torch.Tensor, grid: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear ``values`` (..., J) at the grid ``grid`` (J,), read at ``level`` (n, ...), flat outside."""
    j = torch.bucketize(level.clamp(grid[0], grid[-1]).contiguous(), grid).clamp(1, len(grid) - 1)
    lo_g, hi_g = grid[j - 1], grid[j]
    w = ((level.clamp(grid[0], grid[-1]) - lo_g) / (hi_g - lo_g)).clamp(0, 1)
    v = values.unsqueeze(0).expand(level.shape[0], *values.shape)
    lo_v = v.gather(-1, (j - 1).unsqueeze(-1)).squeeze(-1)
    hi_v = v.gather(-1, j.unsqueeze(-1)).squeeze(-1)
    return lo_v + w * (hi_v - lo_v)


def conformal_quantile(scores: np.ndarray, level: float) -> float:
    """The split-conformal quantile of ``n`` scores at ``level``: the ``ceil((n + 1) level)``-th smallest
    (the largest when that rank exceeds ``n``)."""
    n = len(scores)
    rank = min(n, math.ceil((n + 1) * level))
    return float(np.partition(np.asarray(scores, dtype=np.float64), rank - 1)[rank - 1])


def fit_spread_calibration(samples: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor,
                           cond_mask: torch.Tensor, levels: tuple[float, ...] = LEVELS, min_count: int = 100,
                           max_factor: float = 100.0, value_bins: int = 1) -> SpreadCalibration:
    """Fit :class:`SpreadCalibration` from samples ``(n, N, K, L)`` of hidden entries ``hidden (N, K, L)``
    (true values ``target``) of windows given ``cond_mask``; ``value_bins`` ranges of the samples' median per
    feature (equal shares of its hidden entries).

    Raises ValueError when fewer than ``min_count`` entries are hidden in all, a level is not in (0, 1) or
    ``value_bins`` is not a positive integer.
    """
    if isinstance(value_bins, bool) or not isinstance(value_bins, int) or value_bins < 1:
        raise ValueError(f"value_bins must be a positive integer, got {value_bins!r}")
    levels = tuple(float(v) for v in levels)
    if not levels or any(not 0 < v < 1 for v in levels) or list(levels) != sorted(set(levels)):
        raise ValueError(f"levels must be increasing numbers strictly between 0 and 1, got {levels!r}")
    if samples.shape[0] < 2:
        raise ValueError("a spread calibration needs at least 2 samples per entry")
    sel = hidden.detach().cpu().numpy() > 0
    total = int(sel.sum())
    if total < min_count:
        raise ValueError(f"a spread calibration needs at least {min_count} hidden entries, got {total}")
    s = samples.detach().double().cpu().numpy()[:, sel]  # (n, entries)
    y = target.detach().double().cpu().numpy()[sel]
    n_features, n_bins = samples.shape[-2], len(GAP_EDGES) + 1
    feature = np.broadcast_to(np.arange(n_features)[None, :, None], sel.shape)[sel]
    bins = gap_bins(cond_mask, GAP_EDGES).cpu().numpy()[sel]
    m = np.quantile(s, 0.5, axis=0)
    eps = 1e-12
    scores = []
    for lv in levels:
        lo, hi = np.quantile(s, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
        up = (y - m) / np.maximum(hi - m, eps)
        down = (m - y) / np.maximum(m - lo, eps)
        scores.append(np.clip(np.maximum(up, down), 0.0, None))

    def factors_of(where: np.ndarray) -> np.ndarray:
        return np.array([min(conformal_quantile(sc[where], lv), max_factor) for sc, lv in zip(scores, levels,
                                                                                             strict=True)])

    shares = np.arange(1, value_bins) / value_bins
    edges = np.full((n_features, value_bins - 1), np.inf)
    for k in range(n_features):
        if (feature == k).any():
            edges[k] = np.quantile(m[feature == k], shares)
    ranges = (m[:, None] >= edges[feature]).sum(-1)
    overall = factors_of(np.ones(len(y), dtype=bool))
    factors = np.empty((n_features, n_bins, value_bins, len(levels)))
    counts = np.zeros((n_features, n_bins, value_bins), dtype=np.int64)
    for k in range(n_features):
        in_k = feature == k
        of_k = factors_of(in_k) if in_k.sum() >= min_count else overall
        for b in range(n_bins):
            in_kb = in_k & (bins == b)
            of_kb = factors_of(in_kb) if in_kb.sum() >= min_count else of_k
            for v in range(value_bins):
                cell = in_kb & (ranges == v)
                counts[k, b, v] = int(cell.sum())
                factors[k, b, v] = factors_of(cell) if counts[k, b, v] >= min_count else of_kb
    return SpreadCalibration(factors, counts, levels, value_edges=edges)
