"""A fitted first guess: linear interpolation corrected by a ridge regression on local, cross-column features.

The ``"residual"`` parameterization diffuses the difference between the data and a first guess. Linear
interpolation ignores two things a table usually holds:

- **curvature in time**: a local quadratic fit (LOESS, tricube weights) of the entry from the given values of
  its own column within ``h`` rows, for a narrow and a wide ``h``;
- **the other columns**: how a related column moved across the same gap, ``x_j(t) - interp_j(t)``, where
  ``interp_j`` interpolates column ``j`` between the rows where the target column is given (its value at
  ``t`` minus the straight line between its values at the gap's ends). When two columns are linearly
  related, this carries the target's own departure from the straight line.

For each column, the correction ``sum_p beta_p f_p`` of its interpolation is a ridge regression on these
features, fitted in closed form on entries hidden from training windows exactly as the training targets are
(:func:`fit_first_guess`), and kept only where it lowers the squared error on held-out windows. A feature
that cannot be computed at an entry (too few given values around it, a related column not given) is 0
there, so the guess falls back to interpolation. Shapes are ``(B, K, L)`` windows, as everywhere in
:mod:`tsimpute.diffusion`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .conditioning import _given_neighbours, interpolate_given

FIRST_GUESSES = ("interpolation", "fitted", "learned")  # "learned": tsimpute.learned_guess
LOESS_WIDTHS = (3, 8)  # rows on each side of the entry for the narrow and the wide local quadratic fit
N_RELATED = 8  # related columns per column (at most K - 1)


@dataclass(frozen=True)
class FirstGuess:
    """Weights of the fitted first guess: per column, its ``related`` columns and ``weights``.

    ``weights[k]`` holds ``len(LOESS_WIDTHS)`` coefficients of the local quadratic fits, then one per entry of
    ``related[k]`` (``-1`` pads columns with fewer related columns; their weight is 0).
    """

    related: tuple[tuple[int, ...], ...]
    weights: tuple[tuple[float, ...], ...]

    @classmethod
    def from_dict(cls, d: dict) -> FirstGuess:
        return cls(tuple(tuple(int(v) for v in r) for r in d["related"]),
                   tuple(tuple(float(v) for v in w) for w in d["weights"]))

    def to_dict(self) -> dict:
        return {"related": [list(r) for r in self.related], "weights": [list(w) for w in self.weights]}

    def __call__(self, values: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
        """The first guess of windows ``values (B, K, L)`` given ``given``; given entries are returned unchanged."""
        if len(self.weights) != values.shape[-2]:
            raise ValueError(f"the first guess has {len(self.weights)} features, the windows {values.shape[-2]}")
        related = torch.as_tensor(self.related, dtype=torch.long, device=values.device)
        interp, feats = guess_features(values, given, related)
        w = torch.as_tensor(self.weights, dtype=torch.float32, device=values.device)
        correction = torch.einsum("bklp,kp->bkl", feats, w)
        return torch.where(given > 0, values, interp + correction.to(values.dtype))


def local_quadratic(values: torch.Tensor, given: torch.Tensor, h: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LOESS of every entry not given (degree 2, tricube weights) from the given entries within ``h`` rows.

    Returns the estimate and where it holds (an entry not given, with at least one given entry on each side
    and four in all); elsewhere the estimate is 0. ``values``/``given`` are ``(..., L)``.
    """
    shape = values.shape
    g = given.reshape(-1, 1, shape[-1]).double()
    x = (values * given).reshape(-1, 1, shape[-1]).double()
    d = torch.arange(-h, h + 1, dtype=torch.float64, device=values.device)
    w = (1 - (d.abs() / (h + 1)) ** 3) ** 3
    w[h] = 0.0
    kernels = torch.stack([w * d**p for p in range(5)] + [(d < 0).double(), (d > 0).double()])[:, None]
    s = F.conv1d(g, kernels, padding=h)  # (N, 7, L): moments of the weights, then given counts left and right
    t = F.conv1d(x, kernels[:3], padding=h)  # (N, 3, L)
    left, right = s[:, 5], s[:, 6]
    ok = (left >= 1) & (right >= 1) & (left + right >= 4) & (g[:, 0] == 0)
    a = torch.stack([s[:, 0:3], s[:, 1:4], s[:, 2:5]], dim=-2).permute(0, 3, 1, 2)  # (N, L, 3, 3)
    a = a + 1e-9 * torch.eye(3, dtype=a.dtype, device=a.device)
    rhs = t.permute(0, 2, 1)[..., None]
    est = torch.zeros(ok.shape, dtype=torch.float64, device=values.device)
    if bool(ok.any()):
        est[ok] = torch.linalg.solve(a[ok], rhs[ok])[:, 0, 0]
    return est.reshape(shape).to(values.dtype), ok.reshape(shape)


def same_gap_deviation(values: torch.Tensor, given: torch.Tensor, related: torch.Tensor) -> torch.Tensor:
    """``x_j(t) - interp_j(t)`` for every column ``k`` and each of its ``related[k]`` columns ``j``: ``(B, K, R, L)``.

    ``interp_j`` interpolates column ``j`` between the given entries of column ``k`` around ``t`` (carried at
    the ends, as :func:`~tsimpute.diffusion.conditioning.interpolate_given`). 0 where ``j`` is not given at
    ``t`` or at those entries, where ``k`` has no given entry, and for padding (``-1``) columns.
    """
    b, k, length = values.shape
    r = related.shape[1]
    pos, prev, nxt = _given_neighbours(given)
    has_prev, has_next = prev >= 0, nxt >= 0
    idx = related.clamp(min=0)
    xj = (values * given)[:, idx]  # (B, K, R, L)
    gj = given[:, idx]
    expand = (b, k, r, length)
    p = prev.clamp(min=0)[:, :, None].expand(expand)
    n = nxt.clamp(min=0)[:, :, None].expand(expand)
    span = (nxt - prev).clamp(min=1).to(values.dtype)
    w = ((pos - prev).to(values.dtype) / span).clamp(0, 1)[:, :, None]
    hp, hn = has_prev[:, :, None], has_next[:, :, None]
    v_prev, v_next = xj.gather(-1, p), xj.gather(-1, n)
    line = torch.where(hp & hn, v_prev + w * (v_next - v_prev), torch.where(hp, v_prev, v_next))
    ok = (gj > 0) & (hp | hn) & (~hp | (gj.gather(-1, p) > 0)) & (~hn | (gj.gather(-1, n) > 0))
    ok = ok & (related >= 0)[None, :, :, None]
    return torch.where(ok, xj - line, torch.zeros((), dtype=values.dtype, device=values.device))


def guess_features(values: torch.Tensor, given: torch.Tensor,
                   related: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The interpolation ``(B, K, L)`` and the features ``(B, K, L, P)`` of the correction (0 at given entries)."""
    interp = interpolate_given(values * given, given)
    feats = []
    for h in LOESS_WIDTHS:
        est, ok = local_quadratic(values, given, h)
        feats.append(torch.where(ok, est - interp, torch.zeros_like(interp)))
    feats.extend(same_gap_deviation(values, given, related).unbind(2))
    out = torch.stack(feats, dim=-1).float()
    return interp, out * (1 - given).unsqueeze(-1).float()


def related_columns(values: torch.Tensor, observed: torch.Tensor, n: int = N_RELATED) -> torch.Tensor:
    """For every column, the ``n`` columns whose hour-to-hour changes correlate most with its own: ``(K, n)``.

    Correlations of second differences over the entries where both columns and their neighbours are observed,
    shrunk toward 0 by the number of such entries (``c * m / (m + 100)``); ``-1`` pads when ``K - 1 < n``.
    """
    k = values.shape[-2]
    ok = observed[..., 1:-1] * observed[..., :-2] * observed[..., 2:]
    dev = (values[..., 1:-1] - (values[..., :-2] + values[..., 2:]) / 2) * ok
    flat_dev = dev.transpose(0, 1).reshape(k, -1).double()
    flat_ok = ok.transpose(0, 1).reshape(k, -1).double()
    m = flat_ok @ flat_ok.T
    cross = flat_dev @ flat_dev.T
    sq = (flat_dev**2) @ flat_ok.T  # sq[i, j]: sum of dev_i^2 where both are observed
    corr = cross / (sq * sq.T).sqrt().clamp(min=1e-12) * m / (m + 100)
    score = torch.where(torch.eye(k, dtype=torch.bool, device=corr.device), -1.0, corr.abs())
    order = score.argsort(dim=1, descending=True)[:, : min(n, k - 1)]
    if order.shape[1] < n:
        order = torch.cat([order, order.new_full((k, n - order.shape[1]), -1)], dim=1)
    return order


@torch.no_grad()
def fit_first_guess(values: torch.Tensor, observed: torch.Tensor, hide: float = 0.1, ridge: float = 1e-2,
                    max_entries: int = 2_000_000, generator: torch.Generator | None = None) -> FirstGuess:
    """Fit the correction of interpolation on training windows ``values``/``observed`` ``(B, K, L)``.

    A fraction ``hide`` of the observed entries is hidden at random, so that the given entries keep the
    data's own missing pattern, and the hidden ones are the regression's targets; windows are repeated with
    fresh draws up to ``max_entries`` entries in all (at most 16 draws; beyond that, evenly spaced windows
    are kept), which bounds the memory of the features. For each column the correction is a median
    regression (least absolute error, by iteratively reweighted ridge regressions with ``ridge`` times the
    diagonal of the normal equations: the imputations are scored in absolute error, and columns such as
    rainfall are mostly 0 with rare large values). It is fitted on the first half of the windows and
    checked on the second; kept, refitted on all windows, only if it lowers the absolute error of
    interpolation there, else all its weights are 0.
    """
    max_windows = max(2, max_entries // max(values.shape[-2] * values.shape[-1], 1))
    draws = max(1, min(16, max_windows // max(len(values), 1)))
    if len(values) > max_windows:
        keep = torch.linspace(0, len(values) - 1, max_windows, device=values.device).long()
        values, observed = values[keep], observed[keep]
    related = related_columns(values, observed)
    half = len(values) // 2

    def targets(sl: slice) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per column, the features ``(n, P)`` and the correction ``(n,)`` at its hidden entries."""
        v, o = values[sl].repeat(draws, 1, 1), observed[sl].repeat(draws, 1, 1)
        cond = o * (torch.rand(o.shape, generator=generator, device=o.device) >= hide)
        interp, f = guess_features(v, cond, related)
        hidden = (o - cond) > 0
        y = v - interp
        return [(f[:, k][hidden[:, k]].double(), y[:, k][hidden[:, k]].double()) for k in range(v.shape[1])]

    first, second = targets(slice(0, half)), targets(slice(half, None))
    weights = []
    for (f1, y1), (f2, y2) in zip(first, second, strict=True):
        beta = _median_regression(f1, y1, ridge)
        keep = len(y1) > 0 and len(y2) > 0 and bool((y2 - f2 @ beta).abs().sum() < y2.abs().sum())
        weights.append(_median_regression(torch.cat([f1, f2]), torch.cat([y1, y2]), ridge) if keep
                       else torch.zeros_like(beta))
    return FirstGuess(tuple(tuple(int(v) for v in r) for r in related.tolist()),
                      tuple(tuple(float(v) for v in w) for w in weights))


def _median_regression(f: torch.Tensor, y: torch.Tensor, ridge: float, iterations: int = 20) -> torch.Tensor:
    """Ridge-regularised least-absolute-error coefficients of ``y ~ f`` by iteratively reweighted least squares."""
    beta = torch.zeros(f.shape[-1], dtype=f.dtype, device=f.device)
    if len(y) == 0:
        return beta
    floor = 1e-3 * float(y.abs().mean()) + 1e-12
    w = torch.ones_like(y)
    for _ in range(iterations):
        a = (f * w[:, None]).T @ f
        a = a + torch.diag(ridge * torch.diagonal(a) + 1e-12)
        beta = torch.linalg.solve(a, (f * w[:, None]).T @ y)
        w = 1.0 / (y - f @ beta).abs().clamp(min=floor)
    return beta


def first_guess_of(values: torch.Tensor, given: torch.Tensor, guess: Callable | None) -> torch.Tensor:
    """``guess(values, given)`` (a :class:`FirstGuess` or any such callable), or the linear interpolation of the
    given values when ``guess`` is None."""
    if guess is None:
        return interpolate_given(values * given, given)
    return guess(values, given)
