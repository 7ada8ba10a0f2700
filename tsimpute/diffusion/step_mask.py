"""The learned diffusion step mask (EDDPM, METHOD.md §4): scores, budget projection, policy gradient.

A mask ``m`` in ``{0,1}^T`` keeps step ``t`` where ``m_t = 1``; ``m_t ~ Bernoulli(s_t)`` independently,
with scores ``s`` in ``[0,1]^T`` used directly as probabilities. The scores are learned by a projected,
variance-reduced score-function (REINFORCE) step onto ``{s : 0 <= s <= 1, sum(s) <= K}``, whose budget
``K`` shrinks along a cubic schedule. Nothing here knows about networks or time series.

Always-kept steps
    ``StepMask(keep_last=True)`` (the default) and ``always_keep`` pin some steps: their score is held at 1,
    they are 1 in every sampled mask, they are not random (their log-prob gradient is 0) and they are always
    in the read-out. Keeping ``T-1`` makes a respaced chain start from the full chain's terminal noise level;
    under masked semantics the terminal level still depends on the other kept steps, but is at most
    ``1 - beta[T-1]`` instead of close to 1 for a mask of early steps only.

Empty masks
    Without always-kept steps a draw may keep nothing. Its *effective* mask (:func:`effective_masks`) keeps
    ``T-1`` instead. :func:`mask_update` hands effective masks to the loss and uses the drawn ones in the
    log-likelihood, which keeps the estimator unbiased for the reward ``L(effective(m))``;
    :func:`sample_kept_timestep` and :func:`elbo_weight` apply the same rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from .schedules import NoiseSchedule

PROB_EPS = 1e-6
LOSS_WEIGHTS = ("simple", "elbo")


def _check_budget(budget: float, name: str = "budget") -> float:
    if isinstance(budget, bool) or not isinstance(budget, int | float):
        raise TypeError(f"{name} must be a real number, got {type(budget).__name__}")
    if math.isnan(budget) or budget < 0:
        raise ValueError(f"{name} must be a non-negative number, got {budget!r}")
    return float(budget)


def project_capped_simplex(z: torch.Tensor, budget: float) -> torch.Tensor:
    """Euclidean projection of ``z`` onto ``{s in [0,1]^T : sum(s) <= budget}`` (exact, sort-based).

    The projection is ``clip(z - v, 0, 1)`` with ``v = 0`` if ``sum(clip(z, 0, 1)) <= budget``, else the
    ``v > 0`` solving ``f(v) = sum(clip(z - v, 0, 1)) = budget``. ``f`` is piecewise linear and non-increasing
    with breakpoints ``{z_i, z_i - 1}``; it is evaluated at every breakpoint in ``O(T log T)`` from sorted
    prefix sums, and ``v`` is found by linear interpolation on the segment that brackets ``budget``.
    Computed in float64.

    Parameters
    ----------
    z : Tensor (T,)
        Finite point to project.
    budget : float
        ``K >= 0``; ``K >= T`` reduces to clipping, ``K = 0`` gives zeros.

    Returns
    -------
    Tensor (T,)
        The projection, in the dtype of ``z``.
    """
    budget = _check_budget(budget)
    if not isinstance(z, torch.Tensor) or z.dim() != 1:
        raise ValueError("z must be a 1-D tensor")
    if not bool(torch.isfinite(z).all()):
        raise ValueError("z must be finite")
    x = z.to(torch.float64)
    clipped = x.clamp(0, 1)
    if float(clipped.sum()) <= budget:
        return clipped.to(z.dtype)
    if budget == 0:
        return torch.zeros_like(z)
    zero = torch.zeros(1, dtype=x.dtype, device=x.device)
    points = torch.cat([zero, x, x - 1]).clamp(min=0).unique()  # sorted ascending, starts at 0
    f = _sum_relu(x, points) - _sum_relu(x - 1, points)  # f(points), non-increasing, f(0) > budget
    j = int(torch.nonzero(f <= budget)[0])  # first breakpoint at or under the budget; j >= 1
    lo, hi, f_lo, f_hi = points[j - 1], points[j], f[j - 1], f[j]
    v = lo + (f_lo - budget) * (hi - lo) / (f_lo - f_hi)
    return (x - v).clamp(0, 1).to(z.dtype)


def _sum_relu(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``sum_i max(a_i - v, 0)`` for every entry of ``v``, via sorting and suffix sums."""
    a = torch.sort(a).values
    suffix = torch.cat([torch.flip(torch.cumsum(torch.flip(a, [0]), 0), [0]), a.new_zeros(1)])
    idx = torch.searchsorted(a, v, right=True)
    return suffix[idx] - (a.numel() - idx) * v


def cubic_budget(epoch: float, n_epochs: float, warmup_epochs: float, final_fraction: float) -> float:
    """Fraction ``gamma_e`` of steps allowed at ``epoch`` (cubic schedule, METHOD.md §4 step 1).

    ``gamma = 1`` for ``epoch < warmup_epochs``, then
    ``gamma = g_f + (1 - g_f) (1 - (epoch - e_1) / (n_epochs - e_1))^3``, and ``g_f`` for
    ``epoch >= n_epochs``. The budget is ``K_e = gamma_e * T``.

    Parameters
    ----------
    epoch : float
        Progress, possibly fractional: pass ``e + i / iters_per_epoch`` at iteration ``i`` of epoch ``e`` to
        shrink the budget smoothly within epochs. With integer epochs ``0..N-1`` the last epoch still sits
        slightly above ``g_f``; pass ``n_epochs`` below the training length to hold the final budget for a
        while (the read-out keeps exactly ``round(g_f T)`` steps either way).
    n_epochs : float
        Epoch at which the budget reaches ``final_fraction``; ``> warmup_epochs``.
    warmup_epochs : float
        ``e_1 >= 0``: epochs at full budget.
    final_fraction : float
        ``g_f`` in ``(0, 1]``.
    """
    for name, val in (("epoch", epoch), ("n_epochs", n_epochs), ("warmup_epochs", warmup_epochs)):
        _check_budget(val, name)
    if not n_epochs > warmup_epochs:
        raise ValueError(f"n_epochs must exceed warmup_epochs, got {n_epochs!r} <= {warmup_epochs!r}")
    if not 0 < final_fraction <= 1:
        raise ValueError(f"final_fraction must lie in (0, 1], got {final_fraction!r}")
    progress = min(max((epoch - warmup_epochs) / (n_epochs - warmup_epochs), 0.0), 1.0)
    return final_fraction + (1 - final_fraction) * (1 - progress) ** 3


class StepMask(torch.nn.Module):
    """Bernoulli distribution over diffusion step masks with learnable probabilities ``s``.

    The scores are a buffer, not a parameter: they are updated by :meth:`step` (a projected policy-gradient
    step), not by the network's optimiser, and are saved in ``state_dict``.

    Parameters
    ----------
    n_steps : int
        Number of diffusion steps T.
    init : float, default=1.0
        Initial score of every free step (EDDPM starts from all steps kept).
    keep_last : bool, default=True
        Pin the last step ``T-1`` (see the module docstring).
    always_keep : sequence of int, default=()
        Further pinned steps.

    Attributes
    ----------
    scores : float32 Tensor (T,)
        Keep probabilities ``s``; 1 on pinned steps.
    forced : bool Tensor (T,)
        Pinned steps (not saved in ``state_dict``: rebuilt from the constructor arguments).
    """

    def __init__(
        self, n_steps: int, init: float = 1.0, keep_last: bool = True, always_keep: Sequence[int] = ()
    ):
        super().__init__()
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
        if not 0 <= init <= 1:
            raise ValueError(f"init must lie in [0, 1], got {init!r}")
        pinned = sorted(set(always_keep) | ({n_steps - 1} if keep_last else set()))
        if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < n_steps for i in pinned):
            raise ValueError(f"always_keep must hold step indices in [0, {n_steps - 1}], got {always_keep!r}")
        self.n_steps = n_steps
        self.keep_last = keep_last
        self.always_keep = tuple(pinned)
        forced = torch.zeros(n_steps, dtype=torch.bool)
        forced[pinned] = True
        self.register_buffer("forced", forced, persistent=False)
        self.register_buffer("scores", torch.where(forced, 1.0, float(init)).float())

    def extra_repr(self) -> str:
        return f"n_steps={self.n_steps}, keep_last={self.keep_last}, always_keep={list(self.always_keep)}"

    @property
    def n_forced(self) -> int:
        """Number of pinned steps."""
        return len(self.always_keep)

    def sample(self, n_masks: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n_masks`` masks ``m ~ Bernoulli(s)``: float 0/1 Tensor (n_masks, T); pinned steps are 1."""
        if isinstance(n_masks, bool) or not isinstance(n_masks, int) or n_masks < 1:
            raise ValueError(f"n_masks must be a positive integer, got {n_masks!r}")
        probs = self.scores.detach().clamp(0, 1).expand(n_masks, -1)
        return torch.bernoulli(probs, generator=generator).masked_fill(self.forced, 1.0)

    def log_prob_grad(self, masks: torch.Tensor) -> torch.Tensor:
        """Score function ``d ln p(m|s) / d s_t = (m_t - s_t) / (s_t (1 - s_t))`` per mask, Tensor (J, T).

        Written as ``m_t / s_t - (1 - m_t) / (1 - s_t)`` with ``s`` clamped into ``[PROB_EPS, 1 - PROB_EPS]``:
        for outcomes of non-zero probability this is within ``O(PROB_EPS)`` of the exact value, also at the
        boundary (``s = 1, m = 1`` gives 1; ``s = 0, m = 0`` gives -1); impossible outcomes are capped at
        ``1 / PROB_EPS``. Pinned steps are not random: their column is 0.
        """
        return self._log_prob_grad64(masks).to(self.scores.dtype)

    def _log_prob_grad64(self, masks: torch.Tensor) -> torch.Tensor:
        m = _check_masks(masks, self.n_steps).to(torch.float64)
        s = self.scores.detach().to(torch.float64).clamp(PROB_EPS, 1 - PROB_EPS)
        return (m / s - (1 - m) / (1 - s)).masked_fill(self.forced, 0.0)

    def policy_gradient(self, losses: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Leave-one-out estimator ``g = 1/(J-1) sum_j (L_j - mean(L)) grad ln p(m_j|s)``, Tensor (T,).

        Unbiased for ``grad_s E[L(m)]``; at ``s = 1`` it is 0 up to rounding (all masks equal, so the centred
        losses sum to 0), whatever the losses. ``losses`` (J,) are detached; ``J >= 2``.
        """
        losses = torch.as_tensor(losses).detach().to(device=self.scores.device, dtype=torch.float64)
        if losses.dim() != 1 or losses.numel() < 2:
            raise ValueError(f"losses must have shape (J,) with J >= 2, got {tuple(losses.shape)}")
        if masks.dim() != 2 or masks.shape[0] != losses.numel():
            raise ValueError(f"masks must have shape ({losses.numel()}, T), got {tuple(masks.shape)}")
        if not bool(torch.isfinite(losses).all()):
            raise ValueError("losses must be finite")
        centred = losses - losses.mean()
        grad = (centred[:, None] * self._log_prob_grad64(masks)).sum(0) / (losses.numel() - 1)
        return grad.to(self.scores.dtype)

    @torch.no_grad()
    def step(self, grad: torch.Tensor, lr: float, budget: float) -> None:
        """In place ``s <- proj(s - lr * grad)`` onto ``{s in [0,1]^T : sum(s) <= budget}``; pins stay at 1.

        ``budget`` is the absolute number ``K_e = gamma_e * T`` and must be at least the number of pinned
        steps (the free steps share ``budget - n_forced``).
        """
        budget = _check_budget(budget)
        lr = _check_budget(lr, "lr")
        if grad.shape != self.scores.shape or not bool(torch.isfinite(grad).all()):
            raise ValueError(f"grad must be a finite tensor of shape ({self.n_steps},)")
        if budget < self.n_forced:
            raise ValueError(f"budget must be >= the {self.n_forced} always-kept steps, got {budget!r}")
        z = self.scores - lr * grad.to(self.scores)
        free = ~self.forced
        self.scores[free] = project_capped_simplex(z[free], budget - self.n_forced)
        self.scores[self.forced] = 1.0

    def kept_steps(self, k: int) -> torch.Tensor:
        """Read-out: the ``k`` kept steps, ascending LongTensor (k,): pinned steps, then the top scores.

        Ties are broken by the larger step index (noisier steps first), so that ties never drop a late step
        in favour of an early one; the result is deterministic and has exactly ``k`` entries.
        """
        if isinstance(k, bool) or not isinstance(k, int) or not max(1, self.n_forced) <= k <= self.n_steps:
            raise ValueError(f"k must be an integer in [{max(1, self.n_forced)}, {self.n_steps}], got {k!r}")
        key = torch.where(self.forced, math.inf, self.scores.detach().double()).cpu()
        desc_index = torch.arange(self.n_steps - 1, -1, -1)
        order = torch.sort(key[desc_index], descending=True, stable=True).indices
        return torch.sort(desc_index[order[:k]]).values

    def binarity(self, k: int) -> dict[str, float]:
        """How close ``s`` is to the binary read-out of :meth:`kept_steps` ``(k)``.

        Returns ``{"max_kept_distance_from_1": max over kept t of 1 - s_t,
        "max_dropped_distance_from_0": max over dropped t of s_t}`` (0.0 where the set is empty).
        """
        kept = torch.zeros(self.n_steps, dtype=torch.bool)
        kept[self.kept_steps(k)] = True
        s = self.scores.detach().double().cpu()
        return {
            "max_kept_distance_from_1": float((1 - s[kept]).max()),
            "max_dropped_distance_from_0": float(s[~kept].max()) if bool((~kept).any()) else 0.0,
        }


def _check_masks(masks: torch.Tensor, n_steps: int | None = None) -> torch.Tensor:
    if not isinstance(masks, torch.Tensor) or masks.dim() != 2:
        raise ValueError("masks must be a 2-D tensor (J, T)")
    if n_steps is not None and masks.shape[1] != n_steps:
        raise ValueError(f"masks must have {n_steps} columns, got {masks.shape[1]}")
    if not bool(((masks == 0) | (masks == 1)).all()):
        raise ValueError("masks must hold only 0 and 1")
    return masks


def effective_masks(masks: torch.Tensor) -> torch.Tensor:
    """Float copy of ``masks`` (J, T) where rows that keep no step keep the last step ``T-1`` instead."""
    m = _check_masks(masks).to(torch.float64 if masks.dtype == torch.float64 else torch.float32).clone()
    m[m.sum(1) == 0, -1] = 1.0
    return m


def sample_kept_timestep(
    masks: torch.Tensor, n: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Draw ``n`` steps uniformly (with replacement) among each mask's kept steps: LongTensor (J, n).

    Rows that keep no step draw ``T-1`` (see :func:`effective_masks`).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    return torch.multinomial(effective_masks(masks), n, replacement=True, generator=generator)


def elbo_weight(
    schedule: NoiseSchedule, masks: torch.Tensor, t: torch.Tensor, normalize: bool = True
) -> torch.Tensor:
    """Masked-chain ELBO weight ``C_t = (beta_t m_t)^2 / (2 sigma_t^2 alpha_hat_t(m) (1 - alpha_t(m)))``.

    With ``sigma_t^2 = beta_tilde_t(m)`` this is ``beta_t / (2 (1 - beta_t) (1 - alpha_{t-1}(m)))`` on a kept
    step. At the first kept step ``beta_tilde = 0`` and the weight diverges; there we take DDPM's other
    variance ``sigma_t^2 = beta_t``, which gives ``1 / (2 (1 - beta_t))``. Skipped steps weigh 0.
    As in METHOD.md §4 step 2, one term is drawn uniformly among the kept steps and the factor ``k``
    (number of kept steps) that would make it an unbiased estimate of the bound's sum is not applied.

    Parameters
    ----------
    schedule : NoiseSchedule
    masks : Tensor (J, T)
        0/1 masks (empty rows keep ``T-1``, see :func:`effective_masks`).
    t : LongTensor (J,) or (J, n)
        Steps per mask.
    normalize : bool, default=True
        Divide by the mean weight of the full chain (all steps kept), so that ``simple`` and ``elbo``
        losses have the same scale for the full chain. A constant: it does not change which mask is better.

    Returns
    -------
    float32 Tensor, shape of ``t``.
    """
    m = effective_masks(masks).to(torch.float64)
    if m.shape[1] != schedule.n_steps:
        raise ValueError(f"masks must have {schedule.n_steps} columns, got {m.shape[1]}")
    if t.dtype != torch.long or t.dim() not in (1, 2) or t.shape[0] != m.shape[0]:
        raise ValueError(f"t must be a LongTensor of shape ({m.shape[0]},) or ({m.shape[0]}, n)")
    if bool((t < 0).any()) or bool((t >= schedule.n_steps).any()):
        raise ValueError(f"t must lie in [0, {schedule.n_steps - 1}]")
    full = _elbo_table(schedule, m)
    idx = t.to(m.device) if t.dim() == 2 else t.to(m.device)[:, None]
    weights = full.gather(1, idx).reshape(t.shape)
    if normalize:
        full_chain = torch.ones(1, schedule.n_steps, dtype=torch.float64)
        weights = weights / float(_elbo_table(schedule, full_chain).mean())
    return weights.float()


def _elbo_table(schedule: NoiseSchedule, m: torch.Tensor) -> torch.Tensor:
    """Weights at every step for float64 masks ``m`` (J, T), see :func:`elbo_weight`."""
    beta = schedule.betas.to(m.device)
    alpha = schedule.masked_alphas_cumprod(m)
    alpha_prev = torch.cat([torch.ones_like(alpha[:, :1]), alpha[:, :-1]], 1)
    first = alpha_prev == 1  # no earlier kept step: beta_tilde = 0, use sigma^2 = beta
    denom = torch.where(first, 1 - alpha, 1 - alpha_prev)
    kept = (m == 1) & (denom > 0)
    return torch.where(kept, beta / (2 * (1 - beta) * denom.where(kept, 1.0)), 0.0)


def loss_weight(kind: str, schedule: NoiseSchedule, masks: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-term loss weight ``C_t``: ``"simple"`` (1) or ``"elbo"`` (normalised :func:`elbo_weight`)."""
    if kind == "simple":
        return torch.ones(t.shape, dtype=torch.float32, device=t.device)
    if kind == "elbo":
        return elbo_weight(schedule, masks, t, normalize=True)
    raise ValueError(f"kind must be one of {LOSS_WEIGHTS}, got {kind!r}")


def mask_update(
    mask: StepMask,
    loss_fn: Callable[[torch.Tensor], torch.Tensor | float],
    n_masks: int,
    lr: float,
    budget: float,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One REINFORCE round on ``mask``: draw ``n_masks`` masks, score them, take a projected step.

    Parameters
    ----------
    mask : StepMask
        Updated in place.
    loss_fn : callable
        Maps one effective mask (T,) (never empty) to a scalar reward to *minimise* (network loss on the
        minibatch, imputation error, CRPS, ...). The returned value is detached here; the closure may
        itself back-propagate into the network.
    n_masks : int
        ``J >= 2`` draws.
    lr, budget : float
        Step size and absolute step budget ``K_e`` (see :meth:`StepMask.step`).
    generator : torch.Generator, optional

    Returns
    -------
    dict
        ``loss_mean``, ``loss_std``, ``grad_norm``, ``scores_sum`` (after the step), ``kept_mean``
        (mean number of kept steps in the draws).
    """
    if isinstance(n_masks, bool) or not isinstance(n_masks, int) or n_masks < 2:
        raise ValueError(f"n_masks must be an integer >= 2, got {n_masks!r}")
    masks = mask.sample(n_masks, generator=generator)
    effective = effective_masks(masks)
    losses = torch.tensor([float(torch.as_tensor(loss_fn(row)).detach()) for row in effective])
    grad = mask.policy_gradient(losses, masks)
    mask.step(grad, lr, budget)
    return {
        "loss_mean": float(losses.mean()),
        "loss_std": float(losses.std()),
        "grad_norm": float(grad.double().norm()),
        "scores_sum": float(mask.scores.double().sum()),
        "kept_mean": float(effective.sum(1).mean()),
    }
