"""Progressive distillation of the deterministic DDIM chain into a sampler of fewer network calls.

Salimans & Ho (ICLR 2022), "Progressive Distillation for Fast Sampling of Diffusion Models": a student
network, initialised from the teacher, learns to take in one DDIM step what the teacher takes in two. Each
round halves the chain; the student of one round is the teacher of the next.

With ``alpha = sqrt(abar)`` and ``sigma = sqrt(1 - abar)`` at a student step ``t``, the teacher takes two
deterministic DDIM steps ``t -> t' -> t''`` from ``x_t``. The student's target is the clean value that makes
one DDIM step from ``x_t`` land exactly on the teacher's ``x_t''``::

    x~0 = (x_t'' - (sigma'' / sigma) x_t) / (alpha'' - (sigma'' / sigma) alpha)

(``x_t''`` itself when ``t''`` is the clean end of the chain), and the loss is the squared error of the
student's clean prediction weighted by the truncated SNR ``max(alpha^2 / sigma^2, 1)``, the paper's
recommended weighting. The student is called through an ``eps_fn(x_t, t)`` like any sampler's
network, whatever its parameterization: its clean prediction is ``(x_t - sigma eps) / alpha``.

Chains are those of :mod:`~tsimpute.diffusion.schedules`: index ``i`` of a chain of ``n`` kept steps holds
``timesteps[i]`` (what the network is conditioned on) and ``alphas_cumprod[i]``; index ``-1`` stands for the
clean end (``abar = 1``). A chain of ``n`` steps coarsens into one of ``m`` steps (``n / 2 <= m < n``) by
keeping ``m`` of its indices, the last (noisiest) always: each student step covers one or two teacher
steps, pairs from the noisy end down (:func:`kept_indices`); ``m = n / 2`` is the paper's halving.

In conditional imputation only the entries that are not given are diffused: the target and the loss are
computed on every entry, and ``mask`` selects those the loss counts (the given entries are conditioning).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .schedules import Chain

EpsFn = Callable[[torch.Tensor, int], torch.Tensor]
Clip = tuple[torch.Tensor | float, torch.Tensor | float]
WEIGHTINGS = ("truncated_snr", "snr")

__all__ = ["LONG_FIRST_STEP", "LONG_STEP_START_LEVEL", "ONE_CALL_START_LEVEL", "WEIGHTINGS", "auto_start_level",
           "coarsen_chain", "ddim_step", "distillation_loss", "distillation_plan", "distillation_target",
           "halve_chain", "kept_indices", "raise_start_level", "target_from_step"]


def kept_indices(n: int, m: int) -> torch.Tensor:
    """The indices (ascending) of a chain of ``n`` steps that a chain of ``m`` steps keeps, ``n / 2 <= m <= n``.

    The last index ``n - 1`` is always kept. From the noisy end, ``n - m`` student steps cover two teacher
    steps each and the other ``2m - n`` one each; ``m = n / 2`` keeps every other index
    (``1, 3, ..., n - 1``), the paper's halving.
    """
    if isinstance(n, bool) or isinstance(m, bool) or not (isinstance(n, int) and isinstance(m, int)):
        raise TypeError(f"n and m must be integers, got {n!r} and {m!r}")
    if not 1 <= m <= n or 2 * m < n:
        raise ValueError(f"a chain of {n} steps coarsens into m steps with n / 2 <= m <= n, got m={m}")
    pairs = n - m
    top = [n - 1 - 2 * j for j in range(pairs)]
    rest = list(range(n - 1 - 2 * pairs, -1, -1))
    return torch.tensor(sorted(top + rest), dtype=torch.long)


def coarsen_chain(chain: Chain, m: int) -> Chain:
    """The chain of ``m`` steps kept from ``chain`` (:func:`kept_indices`), with the teacher's own ``alpha_bar``.

    The student's states have the teacher's marginals at the kept steps, whatever the chain's semantics
    (``respaced`` or ``masked``): its ``alphas_cumprod`` are the teacher chain's at the kept indices.
    """
    idx = kept_indices(len(chain), m)
    return Chain(chain.timesteps[idx].clone(), chain.alphas_cumprod[idx].clone())


def halve_chain(chain: Chain) -> Chain:
    """Every other step of ``chain``, keeping the last (noisiest): ``ceil(n / 2)`` steps.

    For an even ``n`` each student step covers two teacher steps; for an odd ``n`` the lowest student step
    covers one (its target is then the teacher's own clean prediction).
    """
    if len(chain) < 2:
        raise ValueError(f"a chain of {len(chain)} step cannot be halved")
    return coarsen_chain(chain, math.ceil(len(chain) / 2))


def distillation_plan(n: int, calls: int) -> list[int]:
    """The chain lengths of progressive distillation from ``n`` teacher steps down to ``calls``: halved each
    round (rounded up), the last round to exactly ``calls``. Starts with ``n``; e.g. ``8, 4, 2`` or ``10, 5, 3``.
    """
    if isinstance(calls, bool) or not isinstance(calls, int) or not 1 <= calls < n:
        raise ValueError(f"calls must be an integer in [1, {n - 1}] (fewer than the teacher's {n} steps), "
                         f"got {calls!r}")
    plan = [n]
    while plan[-1] > calls:
        plan.append(max(math.ceil(plan[-1] / 2), calls))
    return plan


def _level(chain: Chain, i: int) -> float:
    """``alpha_bar`` of the state at chain index ``i`` (1 for the clean end, ``i = -1``)."""
    return 1.0 if i < 0 else float(chain.alphas_cumprod[i])


def ddim_step(x: torch.Tensor, eps: torch.Tensor, ab: float, ab_next: float,
              clip: Clip | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM update from ``abar = ab`` to ``abar = ab_next`` (``eta = 0``): ``(x_next, x0)``.

    ``clip=(lo, hi)`` clips the clean prediction and re-derives the noise from it, as
    :func:`~tsimpute.diffusion.samplers.sample_ddim` does.
    """
    x0 = (x - math.sqrt(1.0 - ab) * eps) / math.sqrt(ab)
    if clip is not None:
        lo, hi = (torch.as_tensor(c, dtype=x0.dtype, device=x0.device) for c in clip)
        x0 = torch.minimum(torch.maximum(x0, lo), hi)
        eps = (x - math.sqrt(ab) * x0) / math.sqrt(1.0 - ab)
    return math.sqrt(ab_next) * x0 + math.sqrt(1.0 - ab_next) * eps, x0


def target_from_step(x_t: torch.Tensor, x_next: torch.Tensor, ab: float, ab_next: float) -> torch.Tensor:
    """The clean value ``x~0`` with which one DDIM step from ``x_t`` (``abar = ab``) lands on ``x_next``
    (``abar = ab_next``): ``(x_next - (sigma' / sigma) x_t) / (alpha' - (sigma' / sigma) alpha)``."""
    ratio = math.sqrt(1.0 - ab_next) / math.sqrt(1.0 - ab)
    return (x_next - ratio * x_t) / (math.sqrt(ab_next) - ratio * math.sqrt(ab))


@torch.no_grad()
def distillation_target(teacher_eps_fn: EpsFn, x_t: torch.Tensor, chain: Chain, start: int, stop: int,
                        clip: Clip | None = None, student_level: float | None = None) -> torch.Tensor:
    """The student's clean target for its step from teacher chain index ``start`` to ``stop`` (``-1``: clean).

    The teacher takes the deterministic DDIM steps ``start -> start - 1 -> ... -> stop`` of ``chain`` from
    ``x_t`` (one or two of them in progressive distillation), calling ``teacher_eps_fn`` at each step's
    timestep; the target is :func:`target_from_step` from ``x_t`` to where the teacher lands. ``clip`` as in
    :func:`ddim_step` (the teacher's own sampling). ``student_level``: the ``alpha_bar`` with which the student
    reads its step from ``x_t`` (default: the chain's at ``start``; see :func:`raise_start_level`).
    """
    if not -1 <= stop < start < len(chain):
        raise ValueError(f"the teacher steps from index start > stop >= -1, got start={start}, stop={stop}")
    x = x_t
    for i in range(start, stop, -1):
        x, _ = ddim_step(x, teacher_eps_fn(x, int(chain.timesteps[i])), _level(chain, i), _level(chain, i - 1), clip)
    level = _level(chain, start) if student_level is None else float(student_level)
    return target_from_step(x_t, x, level, _level(chain, stop))


#: The start level ``"auto"`` reads a long first step at (``sigma / alpha = 10``).
LONG_STEP_START_LEVEL = 0.01
#: The start level of a one-call student, whose only step goes from pure noise to the clean end
#: (``sigma / alpha = 3``; no next step to stay below).
ONE_CALL_START_LEVEL = 0.1
#: ``"auto"`` raises the start level of a longer chain only when its next-noisiest step's ``alpha_bar`` is at
#: least this (a long first step, as a two-call chain's).
LONG_FIRST_STEP = 0.1


def auto_start_level(chain: Chain) -> float | None:
    """The start level ``start_level="auto"`` reads ``chain``'s first step at; None: the chain's own.

    :data:`ONE_CALL_START_LEVEL` for a chain of one step; :data:`LONG_STEP_START_LEVEL` when the first step is
    long (the next step's ``alpha_bar`` at least :data:`LONG_FIRST_STEP`); otherwise the chain's own level.
    On CSDI's PhysioNet network (``benchmarks/results/distillation.md``), same teacher, data, seed and time:
    the round 4 -> 2 (next level 0.47) went from CRPS 12% to 3% above the 50-step chain read at 0.01, the
    round 8 -> 4 (next level 0.03) from 0.5% to 3.9% (worse), and a one-call student scored 10.7% read at 0.1,
    10.8% at 0.3 and 12.0% at 0.01.
    """
    if len(chain) < 2:
        return ONE_CALL_START_LEVEL
    return LONG_STEP_START_LEVEL if float(chain.alphas_cumprod[-2]) >= LONG_FIRST_STEP else None


def raise_start_level(chain: Chain, alpha_bar: float | None) -> Chain:
    """``chain`` with its noisiest step read at ``alpha_bar`` (if higher than the chain's own there).

    Sampling starts from pure noise at the noisiest step, whatever the chain's ``alpha_bar`` there: that value
    only sets how a network's output becomes a clean prediction, ``(x_t - sigma eps) / alpha``, and the DDIM
    step that follows. At CSDI's last step (``alpha = 0.006``) a noise error is amplified 173 times, so a
    student that must take a long first step has to place its output to a few thousandths. Read at, e.g.,
    ``alpha_bar = 0.01`` (``sigma / alpha = 10``), the same step is well conditioned; the student learns its
    output for that reading (the targets use it), and samples with the chain it returns.
    """
    if alpha_bar is None or float(chain.alphas_cumprod[-1]) >= alpha_bar:
        return chain
    if not 0 < alpha_bar < 1:
        raise ValueError(f"the start level must be an alpha_bar in (0, 1), got {alpha_bar!r}")
    if len(chain) > 1 and alpha_bar >= float(chain.alphas_cumprod[-2]):
        raise ValueError(f"the start level {alpha_bar} must stay below the next step's alpha_bar "
                         f"{float(chain.alphas_cumprod[-2])}")
    levels = chain.alphas_cumprod.clone()
    levels[-1] = alpha_bar
    return Chain(chain.timesteps.clone(), levels)


def distillation_loss(student_eps_fn: EpsFn, x_t: torch.Tensor, t: int, ab: float, target_x0: torch.Tensor,
                      mask: torch.Tensor, weighting: str = "truncated_snr", reduction: str = "mean") -> torch.Tensor:
    """Weighted squared error of the student's clean prediction ``(x_t - sigma eps) / alpha`` against ``target_x0``.

    Parameters
    ----------
    student_eps_fn : callable
        ``eps_fn(x_t, t)`` of the student (gradients flow through it).
    x_t : Tensor (B, ...)
        States at the student step, ``abar = ab``; ``t`` is the step's timestep.
    target_x0, mask : Tensor (B, ...)
        The target (:func:`distillation_target`) and the entries the loss counts (1: diffused and scored).
    weighting : {"truncated_snr", "snr"}
        ``"truncated_snr"``: ``max(alpha^2 / sigma^2, 1)`` on the clean error (the paper's). ``"snr"``:
        ``alpha^2 / sigma^2``, the same as the squared error of the noise implied by the target.
    reduction : {"mean", "sum"}
        The weighted squared errors summed over the counted entries, divided by their number (``"mean"``) or not.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    alpha, sigma = math.sqrt(ab), math.sqrt(1.0 - ab)
    snr = ab / (1.0 - ab)
    weight = max(snr, 1.0) if weighting == "truncated_snr" else snr
    eps = student_eps_fn(x_t, t).float()
    x0 = (x_t.float() - sigma * eps) / alpha
    sq = ((x0 - target_x0.float()) * mask).pow(2).sum() * weight
    if reduction == "sum":
        return sq
    if reduction == "mean":
        return sq / mask.sum().clamp(min=1)
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
