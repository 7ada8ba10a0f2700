"""What the denoiser sees of the conditional observations: the observed values, or their linear interpolation.

CSDI feeds ``M_cond * x`` (0 where a value is not given). PriSTI (Liu et al., ICDE 2023) feeds a linear
interpolation of the given values along time instead, so that every entry carries a first guess that the
network only has to correct; the conditional mask still travels in the side information.
"""

from __future__ import annotations

import torch

CONDITIONINGS = ("observed", "interpolated")


def interpolate_given(values: torch.Tensor, given: torch.Tensor) -> torch.Tensor:
    """Linear interpolation along the last axis of ``values`` between the entries where ``given`` is 1.

    Before the first and after the last given entry of a row the nearest given value is carried; rows with
    no given entry are 0 (the training mean). Given entries are returned unchanged. Shapes ``(..., L)``.
    """
    mask = given > 0
    length = values.shape[-1]
    pos = torch.arange(length, device=values.device).expand(values.shape)
    none = torch.full_like(pos, -1)
    prev = torch.where(mask, pos, none).cummax(-1).values  # last given position at or before each entry
    flipped = torch.where(mask, length - 1 - pos, none).flip(-1).cummax(-1).values.flip(-1)
    nxt = torch.where(flipped >= 0, length - 1 - flipped, none)  # first given position at or after
    has_prev, has_next = prev >= 0, nxt >= 0
    v_prev = values.gather(-1, prev.clamp(min=0))
    v_next = values.gather(-1, nxt.clamp(min=0))
    span = (nxt - prev).clamp(min=1).to(values.dtype)
    w = ((pos - prev).to(values.dtype) / span).clamp(0, 1)
    both = v_prev + w * (v_next - v_prev)
    out = torch.where(has_prev & has_next, both, torch.where(has_prev, v_prev, torch.where(has_next, v_next, 0.0)))
    return torch.where(mask, values, out.to(values.dtype))


def conditional_values(values: torch.Tensor, cond_mask: torch.Tensor, conditioning: str = "observed") -> torch.Tensor:
    """The conditional input channel for windows ``values (B, K, L)`` given ``cond_mask (B, K, L)``.

    ``"observed"``: ``values * cond_mask`` (CSDI). ``"interpolated"``: :func:`interpolate_given` of the given
    values along time, per feature (PriSTI).
    """
    if conditioning == "observed":
        return values * cond_mask
    if conditioning == "interpolated":
        return interpolate_given(values * cond_mask, cond_mask)
    raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {conditioning!r}")


def conditioning_of(model: torch.nn.Module) -> str:
    """The conditioning a denoiser was built for (its ``config.conditioning``; ``"observed"`` if it has none)."""
    return getattr(getattr(model, "config", None), "conditioning", "observed")
