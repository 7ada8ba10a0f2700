"""The denoising objective: noise MSE on target entries only (METHOD.md §3)."""

from __future__ import annotations

import torch


def masked_eps_mse(
    eps_pred: torch.Tensor,
    eps: torch.Tensor,
    target_mask: torch.Tensor,
    weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Squared error between ``eps`` and ``eps_pred`` on the entries where ``target_mask`` is 1.

    Parameters
    ----------
    eps_pred, eps, target_mask : Tensor (B, ...)
        Predicted and true noise and the mask of target entries.
    weight : Tensor (B,), optional
        Per-sample loss weight ``C_t``.
    reduction : {"mean", "none"}
        ``"mean"``: CSDI's loss, the sum of squared errors over all target entries of the batch divided by
        the number of target entries. ``"none"``: one loss per sample (its mean over its own targets), which
        the step mask's policy gradient needs.
    """
    b = eps.shape[0]
    sq = ((eps_pred.float() - eps.float()) * target_mask).pow(2).reshape(b, -1).sum(1)
    n = target_mask.reshape(b, -1).sum(1)
    if weight is not None:
        sq = sq * weight.to(sq)
    if reduction == "mean":
        return sq.sum() / n.sum().clamp(min=1)
    if reduction == "none":
        return sq / n.clamp(min=1)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
