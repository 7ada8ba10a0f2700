"""What the denoiser sees of the conditional observations: the observed values, or their linear interpolation.

CSDI feeds ``M_cond * x`` (0 where a value is not given). PriSTI (Liu et al., ICDE 2023) feeds a linear
interpolation of the given values along time instead, so that every entry carries a first guess that the
network only has to correct; the conditional mask still travels in the side information.
"""

from __future__ import annotations

import torch

CONDITIONINGS = ("observed", "interpolated", "guess")


def _given_neighbours(given: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Positions ``(..., L)``, the last given position at or before each entry and the first at or after (-1: none)."""
    mask = given > 0
    length = given.shape[-1]
    pos = torch.arange(length, device=given.device).expand(given.shape)
    none = torch.full_like(pos, -1)
    prev = torch.where(mask, pos, none).cummax(-1).values
    flipped = torch.where(mask, length - 1 - pos, none).flip(-1).cummax(-1).values.flip(-1)
    nxt = torch.where(flipped >= 0, length - 1 - flipped, none)
    return pos, prev, nxt


def interpolate_given(values: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along the last axis of ``values`` between the entries where ``given`` is 1.

    Before the first and after the last given entry of a row the nearest given value is carried; rows with
    no given entry are 0 (the training mean). Given entries are returned unchanged. Shapes ``(..., L)``.
    """
    pos, prev, nxt = _given_neighbours(given)
    has_prev, has_next = prev >= 0, nxt >= 0
    v_prev = values.gather(-1, prev.clamp(min=0))
    v_next = values.gather(-1, nxt.clamp(min=0))
    span = (nxt - prev).clamp(min=1).to(values.dtype)
    w = ((pos - prev).to(values.dtype) / span).clamp(0, 1)
    both = v_prev + w * (v_next - v_prev)
    out = torch.where(has_prev & has_next, both, torch.where(has_prev, v_prev, torch.where(has_next, v_next, 0.0)))
    return torch.where(given > 0, values, out.to(values.dtype))


def gap_distance(given: torch.Tensor) -> torch.Tensor:
    """How far each entry lies from the given ones, as the variance of a Brownian bridge, ``(..., L)`` float32.

    Between given entries at distances ``d1`` (before) and ``d2`` (after): ``d1 d2 / (d1 + d2)`` (0 at a
    given entry, 1/2 for a single missing entry); before the first or after the last given entry the
    distance to it; ``L`` in a row with no given entry. Interpolation's error grows with it.
    """
    pos, prev, nxt = _given_neighbours(given)
    d1 = (pos - prev).float()
    d2 = (nxt - pos).float()
    has_prev, has_next = prev >= 0, nxt >= 0
    both = d1 * d2 / (d1 + d2).clamp(min=1)
    one = torch.where(has_prev, d1, d2)
    length = float(given.shape[-1])
    return torch.where(has_prev & has_next, both, torch.where(has_prev | has_next, one, length))


def conditional_values(values: torch.Tensor, cond_mask: torch.Tensor, conditioning: str = "observed",
                       guess: torch.Tensor | None = None) -> torch.Tensor:
    """The conditional input channel for windows ``values (B, K, L)`` given ``cond_mask (B, K, L)``.

    ``"observed"``: ``values * cond_mask`` (CSDI). ``"interpolated"``: :func:`interpolate_given` of the given
    values along time, per feature (PriSTI). ``"guess"``: ``guess``, a first guess of the windows that keeps
    the given values (the ``"residual"`` parameterization's).
    """
    if conditioning == "observed":
        return values * cond_mask
    if conditioning == "interpolated":
        return interpolate_given(values * cond_mask, cond_mask)
    if conditioning == "guess":
        if guess is None:
            raise ValueError("conditioning 'guess' needs the first guess of the windows (residual parameterization)")
        return guess
    raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")
