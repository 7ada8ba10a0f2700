"""What the denoiser's output means: the noise itself (CSDI), or a scaled correction of the interpolation.

Samplers and losses speak of the noise ``eps`` of the state ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``. A
parameterization maps the state to what the network sees and the network's output back to ``eps``:

``"epsilon"``
    CSDI: the network sees ``x_t`` and predicts ``eps``.
``"residual"``
    The diffusion runs on the residual ``x0 - b`` of a first guess ``b``, the linear interpolation of the
    given values along time (:func:`~tsimpute.diffusion.conditioning.interpolate_given`), with Karras et
    al. (2022)'s preconditioning for residuals of scale ``sigma_data``. With ``r_t = x_t - sqrt(abar) b``
    (the residual's own noisy state, with the same ``eps``) and ``v = 1 - abar + abar sigma_data^2`` its
    variance, the network sees ``r_t / sqrt(v)`` and its output ``F`` gives

    ``eps = sqrt(1 - abar) / v * r_t - sigma_data sqrt(abar / v) * F``

    (the v-prediction of Salimans & Ho (2022) when ``sigma_data = 1``). A network that outputs 0 (as the
    CSDI denoiser does at initialisation, its last layer being zero) is then the exact denoiser of
    Gaussian residuals ``N(0, sigma_data^2)``: sampling returns the interpolation plus noise of the
    interpolation's typical error, whose median is the interpolation. Training only has to learn what the
    interpolation misses, so an early, under-trained network already imputes as well as interpolation.

The training objective stays the noise MSE of METHOD.md §3 (written in ``eps``), so step masks, loss
weights and samplers are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .conditioning import interpolate_given

PARAMETERIZATIONS = ("epsilon", "residual")
Readout = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Parameterization:
    """Maps the diffusion state to the network's noisy input and the network's output to the noise.

    ``alpha_bar`` arguments are floats or tensors broadcastable to the state (e.g. ``(N, 1, 1)``); ``base``
    is the first guess ``(B, K, L)`` of the windows, broadcast over samples folded in front of ``x_t``
    (``N = n_samples * B``); it is ``None`` for ``"epsilon"``.
    """

    kind: str = "epsilon"
    sigma_data: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {self.kind!r}")
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {self.sigma_data!r}")

    def base(self, values: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor | None:
        """The first guess of windows ``values (B, K, L)`` given ``cond_mask``: their interpolation, or None."""
        if self.kind == "epsilon":
            return None
        return interpolate_given(values * cond_mask, cond_mask)

    def precondition(self, x_t: torch.Tensor, base: torch.Tensor | None, alpha_bar) -> tuple[torch.Tensor, Readout]:
        """What the network sees of the noisy state, and the map from its output to the predicted noise.

        ``"epsilon"``: ``x_t`` and ``out -> out``. ``"residual"``: ``r_t / sqrt(v)`` and
        ``out -> sqrt(1 - abar) / v * r_t - sigma_data sqrt(abar / v) * out``. The residual is computed once
        for both (the sampler calls this at every step); ``base`` is broadcast over the samples folded in
        front of ``x_t`` without a copy. The noise is float32.
        """
        if self.kind == "epsilon":
            return x_t, lambda out: out.float()
        n = x_t.shape[0] // base.shape[0]
        ab = torch.as_tensor(alpha_bar, dtype=torch.float32, device=x_t.device)
        root = ab.sqrt().reshape(n, -1, *(1,) * (base.dim() - 1)) if ab.dim() else ab.sqrt()
        r = (x_t.float().view(n, *base.shape) - root * base.float()).view(x_t.shape)
        var = 1.0 - ab + ab * self.sigma_data**2
        along_r, along_out = (1.0 - ab).sqrt() / var * r, self.sigma_data * (ab / var).sqrt()
        return (r / var.sqrt()).to(x_t.dtype), lambda out: along_r - along_out * out.float()

    def network_input(self, x_t: torch.Tensor, base: torch.Tensor | None, alpha_bar) -> torch.Tensor:
        """What the network sees of the noisy state (see :meth:`precondition`)."""
        return self.precondition(x_t, base, alpha_bar)[0]

    def eps(self, out: torch.Tensor, x_t: torch.Tensor, base: torch.Tensor | None, alpha_bar) -> torch.Tensor:
        """The predicted noise from the network's output ``out`` (see :meth:`precondition`), in float32."""
        return self.precondition(x_t, base, alpha_bar)[1](out)


def parameterization_of(model: torch.nn.Module) -> Parameterization:
    """The parameterization a denoiser was built for (its ``config``; ``"epsilon"`` if it has none)."""
    cfg = getattr(model, "config", None)
    return Parameterization(getattr(cfg, "parameterization", "epsilon"), float(getattr(cfg, "sigma_data", 1.0)))


@torch.no_grad()
def interpolation_error_scale(values: torch.Tensor, observed: torch.Tensor, cond_mask: torch.Tensor,
                              floor: float = 1e-2) -> float:
    """RMS error of linear interpolation from ``cond_mask`` on the other observed entries of windows.

    ``values``/``observed``/``cond_mask`` are ``(B, K, L)`` in model units, ``cond_mask`` drawn as in
    training (:func:`~tsimpute.diffusion.targets.conditional_mask`). This is ``sigma_data`` of the
    ``"residual"`` parameterization: the typical size of what the network has to correct. At least ``floor``
    (1 when no entry is hidden).
    """
    target = observed - cond_mask
    n = float(target.sum())
    if n == 0:
        return 1.0
    err = (interpolate_given(values * cond_mask, cond_mask) - values) * target
    return max(float(err.pow(2).sum() / n) ** 0.5, floor)
