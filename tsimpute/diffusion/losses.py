"""The denoising objective: noise MSE on target entries only (METHOD.md §3), and the steps it is drawn at."""

from __future__ import annotations

import torch

NOISE_LEVELS = ("uniform", "low")
# what the training loss measures the error in (SeriesDenoiser.loss)
LOSS_WEIGHTINGS = ("noise", "output")


def check_loss_weighting(weighting: str) -> None:
    """Raise a ValueError unless ``weighting`` is one of :data:`LOSS_WEIGHTINGS`."""
    if weighting not in LOSS_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {LOSS_WEIGHTINGS}, got {weighting!r}")


def draw_training_steps(n_steps: int, size: int, levels: str = "uniform", generator: torch.Generator | None = None,
                        device: torch.device | str | None = None) -> torch.Tensor:
    """Steps ``t`` in ``0..n_steps-1`` at which to noise ``size`` training windows.

    ``"uniform"``: every step equally likely (CSDI, METHOD.md §3). ``"low"``: ``t = floor(T u^2)`` with ``u``
    uniform, so that ``P(t < k) = sqrt(k / T)``: half the draws fall in the lowest quarter of the steps, the
    low noise levels where a residual of interpolation's size is not yet drowned
    (``benchmarks/results/gap_scale.md``). Every step keeps a positive probability.
    """
    if levels == "uniform":
        return torch.randint(n_steps, (size,), generator=generator, device=device)
    if levels == "low":
        u = torch.rand(size, generator=generator, device=device)
        return (n_steps * u.square()).long().clamp(max=n_steps - 1)
    raise ValueError(f"noise_levels must be one of {NOISE_LEVELS}, got {levels!r}")


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
