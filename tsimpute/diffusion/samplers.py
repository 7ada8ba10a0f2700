"""Reverse-process samplers over any ordered subset of kept steps (METHOD.md §3).

A sampler is a small function ``sample_<method>(eps_fn, x, chain, ...)``: ``eps_fn(x_t, t)`` predicts the
noise at kept step ``t`` (a Python int, the index the network is conditioned on), ``x`` is the initial
noise at the last kept step and ``chain`` (:class:`~tsimpute.diffusion.schedules.Chain`) holds the chain's
own ``alpha_bar`` at each kept step. The network is called exactly once per kept step; the previous
step is looked up in the chain, never computed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch

from .schedules import Chain

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
Callback = Callable[[dict], None]
Clip = tuple[torch.Tensor | float, torch.Tensor | float]


class NFECounter:
    """Wrap an ``eps_fn`` and count its calls (the number of function evaluations, NFE)."""

    def __init__(self, eps_fn: EpsFn):
        self.eps_fn = eps_fn
        self.calls = 0

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        self.calls += 1
        return self.eps_fn(x_t, t)


def antithetic_noise(shape, generator: torch.Generator | None = None, dtype=torch.float32,
                     device=None) -> torch.Tensor:
    """Standard normal noise whose second half along dim 0 is the negated first half (antithetic pairs).

    Every row is standard normal; row ``i`` of the first half is paired with row ``i + n // 2`` (with an
    odd ``n`` the last row is drawn on its own). With samples folded in front of the windows and an even
    number of samples, each sample is paired with another sample of the same window: for a denoiser that
    is linear in its input the pair is symmetric about the mean, and summaries of the samples (median,
    quantiles) vary less than with independent draws.
    """
    n = shape[0]
    half = torch.randn((n // 2, *shape[1:]), generator=generator, dtype=dtype, device=device)
    rest = torch.randn((n % 2, *shape[1:]), generator=generator, dtype=dtype, device=device)
    return torch.cat([half, -half, rest])


def _noise_like(x: torch.Tensor, generator: torch.Generator | None, antithetic: bool = False) -> torch.Tensor:
    if antithetic:
        return antithetic_noise(x.shape, generator, x.dtype, x.device)
    return torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)


def _clipped_x0(x: torch.Tensor, eps: torch.Tensor, ab: float, clip: Clip) -> torch.Tensor:
    """The prediction of the clean values ``(x - sqrt(1 - abar) eps) / sqrt(abar)``, clipped to ``clip``."""
    x0 = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
    lo, hi = clip
    return torch.minimum(torch.maximum(x0, torch.as_tensor(lo, dtype=x0.dtype, device=x0.device)),
                         torch.as_tensor(hi, dtype=x0.dtype, device=x0.device))


def check_variance(variance: float) -> float:
    """Validate the DDPM ``variance`` interpolation weight: a real number in ``[0, 1]``; returns it as a float."""
    if isinstance(variance, bool) or not isinstance(variance, numbers.Real) or not 0.0 <= float(variance) <= 1.0:
        raise ValueError(f"variance must be a number in [0, 1] (0: posterior variance beta-tilde, 1: beta), "
                         f"got {variance!r}")
    return float(variance)


def ddpm_variance(ab: float, ab_prev: float, variance: float = 0.0) -> float:
    """Variance ``sigma^2`` of a DDPM update from ``abar = ab`` to ``abar = ab_prev`` (``ab < ab_prev <= 1``).

    With ``beta = 1 - ab / ab_prev`` and the posterior variance ``beta~ = (1 - ab_prev) / (1 - ab) * beta``:
    ``beta~`` for ``variance=0``, ``beta`` for ``variance=1``, ``exp(v log beta + (1 - v) log beta~)`` between.
    """
    beta = 1.0 - ab / ab_prev
    beta_tilde = (1.0 - ab_prev) / (1.0 - ab) * beta
    if variance == 0.0:
        return beta_tilde
    if variance == 1.0:
        return beta
    if beta_tilde <= 0.0:  # ab_prev == 1: the update into the clean values; 0 ** (1 - v) for 0 < v < 1
        return 0.0
    return math.exp(variance * math.log(beta) + (1.0 - variance) * math.log(beta_tilde))


def _reverse_pairs(chain: Chain):
    """Yield ``(i, t, alpha_bar_i, alpha_bar_prev)`` from the last kept step to the first, as floats."""
    steps = chain.timesteps.tolist()
    ac = chain.alphas_cumprod.tolist()
    for i in range(len(steps) - 1, -1, -1):
        yield i, steps[i], ac[i], ac[i - 1] if i > 0 else 1.0


@torch.no_grad()
def sample_ddpm(
    eps_fn: EpsFn,
    x: torch.Tensor,
    chain: Chain,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    clip: Clip | None = None,
    antithetic: bool = False,
    variance: float = 0.0,
) -> torch.Tensor:
    """Ancestral DDPM sampling over the chain's kept steps, with the chain's own ``alpha_bar``.

    ``x_{i-1} = (x_i - beta_i / sqrt(1 - abar_i) * eps) / sqrt(alpha_i) + sigma_i z``, with
    ``alpha_i = abar_i / abar_{i-1}``, ``beta_i = 1 - alpha_i`` and, by default, the posterior variance
    ``sigma_i^2 = beta~_i = (1 - abar_{i-1}) / (1 - abar_i) * beta_i`` (no noise after the first kept step).

    ``variance=v`` in ``[0, 1]`` interpolates the variance log-linearly between ``beta~_i`` (``v=0``, the
    default) and ``beta_i`` (``v=1``), as Nichol & Dhariwal (2021) parameterize it:
    ``sigma_i^2 = exp(v log beta_i + (1 - v) log beta~_i)``. Both are the chain's own, between consecutive
    kept steps (see :func:`ddpm_variance`). ``beta~_i`` is the right variance when the clean values are
    known given ``x_i``; the further apart the kept steps, the more it understates the spread of the
    samples, and a larger ``v`` restores it.

    ``clip=(lo, hi)`` (bounds broadcastable to ``x``): the same mean written as the posterior of the clean
    values, ``sqrt(abar_{i-1}) beta_i / (1 - abar_i) x0 + sqrt(alpha_i) (1 - abar_{i-1}) / (1 - abar_i) x_i``,
    with the prediction ``x0`` clipped to ``[lo, hi]`` (Ho et al. 2020's clipping). ``antithetic``: the
    noise of every step comes in pairs along dim 0 (:func:`antithetic_noise`; pass initial noise drawn the
    same way).
    """
    check_variance(variance)
    for i, t, ab, ab_prev in _reverse_pairs(chain):
        eps = eps_fn(x, t)
        alpha = ab / ab_prev
        beta = 1.0 - alpha
        # 1. posterior mean (DDPM Eq. 11, or Eq. 7 with a clipped x0)
        if clip is None:
            x = (x - (beta / math.sqrt(1.0 - ab)) * eps) / math.sqrt(alpha)
        else:
            x0 = _clipped_x0(x, eps, ab, clip)
            x = (math.sqrt(ab_prev) * beta / (1.0 - ab)) * x0 + (math.sqrt(alpha) * (1.0 - ab_prev) / (1.0 - ab)) * x
        # 2. add posterior noise except at the last update
        if i > 0:
            sigma = math.sqrt(ddpm_variance(ab, ab_prev, variance))
            x = x + sigma * _noise_like(x, generator, antithetic)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "eps": eps})
    return x


@torch.no_grad()
def sample_ddim(
    eps_fn: EpsFn,
    x: torch.Tensor,
    chain: Chain,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    clip: Clip | None = None,
    antithetic: bool = False,
) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021, Eq. 12) between consecutive kept steps; ``eta=0`` is deterministic.

    ``eta=1`` gives the DDPM ancestral update of :func:`sample_ddpm` exactly. ``clip=(lo, hi)`` clips the
    predicted ``x0`` and re-derives the noise from it, so that the update stays consistent. ``antithetic``
    as in :func:`sample_ddpm`.
    """
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1], got {eta!r}")
    for i, t, ab, ab_prev in _reverse_pairs(chain):
        eps = eps_fn(x, t)
        # 1. predicted x0
        x0 = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
        if clip is not None:
            x0 = _clipped_x0(x, eps, ab, clip)
            eps = (x - math.sqrt(ab) * x0) / math.sqrt(1.0 - ab)
        # 2. noise level of the update
        sigma = eta * math.sqrt((1.0 - ab_prev) / (1.0 - ab) * (1.0 - ab / ab_prev)) if i > 0 else 0.0
        # 3. direction pointing to x_t, then the update
        x = math.sqrt(ab_prev) * x0 + math.sqrt(max(1.0 - ab_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _noise_like(x, generator, antithetic)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "eps": eps, "x0": x0})
    return x


SAMPLERS = {"ddpm": sample_ddpm, "ddim": sample_ddim}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """Look up a sampler function by name (``"ddpm"`` or ``"ddim"``)."""
    try:
        return SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; expected one of {tuple(SAMPLERS)}") from None
