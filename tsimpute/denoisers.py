"""Denoiser adapters: one per network family, the only place where a network meets the diffusion.

A network (:mod:`tsimpute.models`) maps its inputs to an output and knows nothing of noise levels, first
guesses or conditioning. An adapter (in the spirit of k-diffusion's ``DiscreteEpsDDPMDenoiser``) owns what
turns it into a denoiser of the diffusion state, for training and for sampling alike:

- ``loss(batch, cond_mask, t, alpha_bar, generator, weight=None, reduction="mean")``: the noise MSE of a
  training batch (METHOD.md §3), used by :func:`~tsimpute.training.train_denoiser` and the step mask;
- an ``eps(x_t, t)`` function for the samplers (:mod:`tsimpute.diffusion.samplers`), built once per batch;
- ``reward_samples(given, chain, n_samples, generator, precision)``: samples of held-out entries, the step
  mask's ``imputation`` reward.

:class:`SeriesDenoiser` wraps the CSDI denoiser of windows ``(N, K, L)`` with its conditioning (observed
values or their interpolation) and parameterization (noise, or a preconditioned residual over a first
guess); :class:`ImageDenoiser` wraps the UNet of images ``(N, C, H, W)``. Training and sampling call the
same adapter, so what the network sees can never differ between the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from itertools import pairwise

import torch
from torch import nn

from .data import WindowSet
from .diffusion.conditioning import CONDITIONINGS, conditional_values
from .diffusion.losses import check_loss_weighting, masked_eps_mse
from .diffusion.parameterization import Parameterization
from .diffusion.samplers import antithetic_noise, get_sampler
from .diffusion.schedules import Chain, add_noise
from .inference import impute_windows
from .learned_guess import guess_from_dict
from .models.cpu_kernels import thread_pool
from .precision import autocast

__all__ = ["ImageDenoiser", "SeriesDenoiser", "model_input", "parallel_forward"]


def model_input(values: torch.Tensor, cond_mask: torch.Tensor, noisy: torch.Tensor,
                conditioning: str = "observed", guess: torch.Tensor | None = None) -> torch.Tensor:
    """The two input channels ``(c(x, M_cond), (1 - M_cond) * noisy)`` of the CSDI network, ``(N, K, L, 2)``.

    ``c`` is ``M_cond * x`` for ``conditioning="observed"`` (CSDI) or the linear interpolation of the given
    values for ``"interpolated"`` (see :mod:`tsimpute.diffusion.conditioning`); ``noisy`` is what the network
    sees of the noisy state. ``noisy`` may hold several samples per window folded in front:
    ``N = n_samples * B``.
    """
    b = values.shape[0]
    n = noisy.shape[0] // b
    cond = conditional_values(values, cond_mask, conditioning, guess).expand(n, *values.shape).reshape(noisy.shape)
    masked = ((1 - cond_mask) * noisy.view(n, *values.shape)).reshape(noisy.shape)
    return torch.stack([cond, masked], dim=-1)


def parallel_forward(net: nn.Module, inp: torch.Tensor, t: torch.Tensor, side: list[torch.Tensor],
                     threads: int) -> torch.Tensor:
    """``net`` on ``inp (n_samples, B, K, L, 2)`` (samples of B windows) → ``(n_samples * B, K, L)``, the batch
    split over ``threads`` workers with one torch thread each.

    On CPU this beats one call with ``threads`` intra-op threads: each worker runs every operation of its
    share of the batch back to back, with no fork/join per operation, and the fused kernels do not compete
    with idle-spinning OpenMP threads (``benchmarks/results/throughput.md``). The batch is split by samples
    where there are enough of them (the side information is shared), else by windows.
    """
    n, b = inp.shape[:2]
    by_samples = n >= threads
    threads = min(threads, n if by_samples else b)
    if threads <= 1:
        return net(inp.view(n * b, *inp.shape[2:]), t, side)
    cuts = list(pairwise((n if by_samples else b) * i // threads for i in range(threads + 1)))
    if by_samples:
        parts = [(inp[i:j].reshape(-1, *inp.shape[2:]), side) for i, j in cuts]
    else:
        parts = [(inp[:, i:j].reshape(-1, *inp.shape[2:]), [s[i:j] for s in side]) for i, j in cuts]

    def run(part):
        with torch.no_grad():
            return net(part[0], t, part[1])

    outs = list(thread_pool(threads, single_threaded_torch=True).map(run, parts))
    if by_samples:
        return torch.cat(outs)
    return torch.cat([o.view(n, -1, *o.shape[1:]) for o in outs], dim=1).view(n * b, *outs[0].shape[1:])


class _WindowEps:
    """``eps(x_t, t)`` for one batch of windows: the conditional channel, side information, first guess and
    residual scales are computed once.

    ``alpha_bar`` maps each kept step to the signal level of the chain's state there (needed by the
    ``"residual"`` parameterization, which reads the state relative to the first guess).
    """

    def __init__(self, net, values: torch.Tensor, cond: torch.Tensor, side: list[torch.Tensor], n_steps: int,
                 threads: int, conditioning: str, parameterization: Parameterization,
                 alpha_bar: dict[int, float] | None = None):
        self.net, self.side, self.cond, self.threads = net, side, cond, threads
        self.param = parameterization
        self.base = self.param.base(values, cond)
        # (B, K, L): channel 0 of every sample
        self.cond_values = conditional_values(values, cond, conditioning, self.base)
        self.free = 1 - cond
        self.scale = self.param.scale(cond)
        if self.base is not None and alpha_bar is None:
            raise ValueError("the residual parameterization needs the signal level of every kept step")
        self.alpha_bar = alpha_bar or {}
        # step indices as tensors, made once: no host-to-device copy per call
        self.steps = torch.arange(n_steps, device=values.device).view(n_steps, 1)

    def __call__(self, x_t: torch.Tensor, t: int) -> torch.Tensor:
        b, k, l = self.cond.shape
        n = x_t.shape[0] // b
        noisy, readout = self.param.precondition(x_t, self.base, self.alpha_bar.get(t), self.scale)
        inp = torch.empty((n, b, k, l, 2), dtype=x_t.dtype, device=x_t.device)
        inp[..., 0] = self.cond_values
        torch.mul(noisy.view(n, b, k, l), self.free, out=inp[..., 1])
        return readout(parallel_forward(self.net, inp, self.steps[t], self.side, self.threads))


@dataclass
class SeriesDenoiser:
    """The CSDI network of windows as a denoiser: conditioning and parameterization around ``net``.

    Parameters
    ----------
    net : CSDIDenoiser
        ``net(x (N, K, L, 2), t, side)`` with ``net.encode_side(cond_mask)``.
    conditioning : {"observed", "interpolated"}, default="observed"
        What the network's first input channel holds (:func:`~tsimpute.diffusion.conditioning.conditional_values`);
        ``"guess"``: the ``"residual"`` parameterization's first guess.
    parameterization : Parameterization, default=Parameterization()
        What its output means (:mod:`tsimpute.diffusion.parameterization`); the default is CSDI's noise.
    """

    net: nn.Module
    conditioning: str = "observed"
    parameterization: Parameterization = field(default_factory=Parameterization)

    def __post_init__(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.conditioning == "guess" and self.parameterization.kind != "residual":
            raise ValueError("conditioning='guess' shows the network the first guess of the 'residual' "
                             f"parameterization; got parameterization={self.parameterization.kind!r}")

    # ------------------------------------------------------------------ settings
    def settings(self) -> dict:
        """The adapter's settings as plain values (stored in checkpoints beside the network's config)."""
        p = self.parameterization
        return {"conditioning": self.conditioning, "parameterization": p.kind, "sigma_data": float(p.sigma_data),
                "sigma_table": None if p.sigma_table is None else [list(row) for row in p.sigma_table],
                "first_guess": None if p.first_guess is None else p.first_guess.to_dict()}

    @classmethod
    def from_settings(cls, net: nn.Module, settings: dict) -> SeriesDenoiser:
        """The adapter around ``net`` described by :meth:`settings`."""
        table, guess = settings.get("sigma_table"), settings.get("first_guess")
        param = Parameterization(
            settings.get("parameterization", "epsilon"), float(settings.get("sigma_data", 1.0)),
            None if table is None else tuple(tuple(float(v) for v in row) for row in table),
            guess_from_dict(guess))
        return cls(net, settings.get("conditioning", "observed"), param)

    def with_net(self, net: nn.Module) -> SeriesDenoiser:
        """The same adapter around another copy of the network (a weight average, a bfloat16 copy)."""
        return replace(self, net=net)

    # ------------------------------------------------------------------ training
    def loss(self, batch: WindowSet, cond_mask: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor,
             generator: torch.Generator | None = None, weight: torch.Tensor | None = None,
             reduction: str = "mean", weighting: str = "noise") -> torch.Tensor:
        """Noise-prediction loss on the target entries ``observed - cond_mask`` of a batch at steps ``t``.

        ``alpha_bar`` (B,) is the signal level used to noise each window: the schedule's ``alpha_bar[t]`` for
        the full chain, or a masked chain's ``alpha_t(m)``. The network's output is read as noise through the
        parameterization. ``weighting``: ``"noise"``, the noise MSE of METHOD.md §3; ``"output"``, the MSE of
        the network's own output (the noise MSE weighted per entry by
        :meth:`~tsimpute.diffusion.parameterization.Parameterization.output_weight`), which trains the
        high noise levels, where the sampler decides the median, as much as the low ones. The two are equal
        for the ``"epsilon"`` parameterization.
        """
        check_loss_weighting(weighting)
        eps = torch.randn(batch.values.shape, generator=generator, device=batch.values.device)
        x_t = add_noise(batch.values, eps, alpha_bar)
        side = self.net.encode_side(cond_mask)
        param = self.parameterization
        base = param.base(batch.values, cond_mask)
        ab = alpha_bar.to(x_t.device).view(-1, *(1,) * (x_t.dim() - 1))
        scale = param.scale(cond_mask)
        noisy, readout = param.precondition(x_t, base, ab, scale)
        eps_pred = readout(self.net(model_input(batch.values, cond_mask, noisy, self.conditioning, base), t, side))
        factor = param.output_weight(ab, scale) if weighting == "output" else None
        if factor is not None:
            eps_pred, eps = eps_pred * factor, eps * factor
        return masked_eps_mse(eps_pred, eps, batch.observed - cond_mask, weight=weight, reduction=reduction)

    # ------------------------------------------------------------------ sampling
    def window_eps(self, net: nn.Module, values: torch.Tensor, cond: torch.Tensor, side: list[torch.Tensor],
                   n_steps: int, threads: int = 1, alpha_bar: dict[int, float] | None = None) -> _WindowEps:
        """``eps(x_t, t)`` for the windows ``values``/``cond`` (B, K, L), calling ``net`` (this adapter's network
        or a copy of it) with the side information ``side`` projected once."""
        return _WindowEps(net, values, cond, side, n_steps, threads, self.conditioning, self.parameterization,
                          alpha_bar)

    def batch_eps(self, values: torch.Tensor, cond: torch.Tensor, alpha_bar: dict[int, float]) -> _WindowEps:
        """``eps(x_t, t)`` of this adapter's network for the windows ``values``/``cond`` (B, K, L), in one call on
        the calling thread, so that gradients flow through it (training a distilled sampler).

        ``alpha_bar`` maps each step it will be called at to the signal level of the state there.
        """
        side = self.net.encode_side(cond)
        n_steps = max(alpha_bar) + 1 if alpha_bar else 1
        return _WindowEps(self.net, values, cond, side, n_steps, 1, self.conditioning, self.parameterization,
                          alpha_bar)

    def reward_samples(self, given: WindowSet, chain: Chain, n_samples: int, generator: torch.Generator,
                       precision: str = "fp32") -> torch.Tensor:
        """Samples ``(n, B, K, L)`` of the entries of ``given`` that are not observed (the step mask's reward)."""
        return impute_windows(self, given, chain, n_samples=n_samples, generator=generator,
                              precision=precision).samples


@dataclass
class ImageDenoiser:
    """The UNet of images as a denoiser: conditional inpainting, generation, or replacement inpainting.

    A conditional ``net`` sees the given pixels and their mask, ``net(x, t, given, mask)``; an unconditional one
    ``net(x, t)``. With ``replace=True`` sampling does not show the network the given pixels: they are put back,
    noised to each step's level, before every call (RePaint-style replacement).
    """

    net: nn.Module
    replace: bool = False

    def with_net(self, net: nn.Module) -> ImageDenoiser:
        return replace(self, net=net)

    def loss(self, batch: WindowSet, cond: torch.Tensor, t: torch.Tensor, alpha_bar: torch.Tensor,
             generator: torch.Generator | None = None, weight: torch.Tensor | None = None,
             reduction: str = "mean", weighting: str = "noise") -> torch.Tensor:
        """Noise MSE on the pixels to denoise (observed, not given) of images ``batch.values`` (N, C, H, W).

        The network predicts the noise, so both ``weighting`` values give this same loss."""
        check_loss_weighting(weighting)
        eps = torch.randn(batch.values.shape, generator=generator, device=batch.values.device)
        x_t = add_noise(batch.values, eps, alpha_bar)
        net = self.net
        pred = net(x_t, t, batch.values * cond, cond[:, :1]) if net.config.conditional else net(x_t, t)
        return masked_eps_mse(pred, eps, batch.observed - cond, weight=weight, reduction=reduction)

    def batch_eps(self, values: torch.Tensor, cond: torch.Tensor, alpha_bar: dict[int, float]):
        """``eps(x_t, t)`` of the conditional network for images ``values`` given where ``cond`` (N, C, H, W) is 1,
        with gradients (training a distilled sampler; ``alpha_bar`` is not needed by noise prediction)."""
        if self.replace or not self.net.config.conditional:
            raise ValueError("only a conditional network that sees the given pixels can be distilled "
                             "(replacement inpainting samples stochastically)")
        given, mask = values * cond, cond[:, :1]
        return lambda x, t: self.net(x, t, given, mask).float()

    @torch.no_grad()
    def sample(self, given: torch.Tensor, mask: torch.Tensor, chain: Chain, n_samples: int,
               generator: torch.Generator | None, *, sampler: str = "ddpm", eta: float = 0.0,
               precision: str = "fp32", antithetic: bool = True) -> torch.Tensor:
        """Samples ``(n_samples, N, C, H, W)`` in [-1, 1] of images whose pixels ``given`` are kept where ``mask``
        (N, 1, H, W) is 1 (an all-zero mask generates), with the reverse ``chain``.

        Samples come in antithetic pairs when ``n_samples > 1`` and ``antithetic`` (else independently); the
        sampler clips its clean-image predictions to [-1, 1].
        """
        model = self.net
        device = given.device
        g = given.repeat(n_samples, 1, 1, 1)
        m = mask.to(given.dtype).repeat(n_samples, 1, 1, 1)
        conditional = not self.replace and bool(m.any())
        level = dict(zip(chain.timesteps.tolist(), chain.alphas_cumprod.tolist(), strict=True))

        def eps_fn(x: torch.Tensor, t: int) -> torch.Tensor:
            with autocast(device, precision):
                if conditional:
                    return model(x, t, g, m).float()
                if m.any():  # the observed pixels at this step's noise level
                    ab = level[t]
                    z = torch.randn(x.shape, generator=generator, device=device)
                    x = m * (math.sqrt(ab) * g + math.sqrt(1 - ab) * z) + (1 - m) * x
                return model(x, t).float()

        if n_samples > 1:
            x = antithetic_noise(g.shape, generator, device=device)
        else:
            x = torch.randn(g.shape, generator=generator, device=device)
        extra = {"eta": eta} if sampler == "ddim" else {}
        x = get_sampler(sampler)(eps_fn, x, chain, generator=generator, clip=(-1.0, 1.0),
                                 antithetic=antithetic and n_samples > 1, **extra)
        x = m * g + (1 - m) * x
        return x.view(n_samples, -1, *x.shape[1:])

    def reward_samples(self, given: WindowSet, chain: Chain, n_samples: int, generator: torch.Generator,
                       precision: str = "fp32") -> torch.Tensor:
        """Independent inpainting samples of held-out pixels (the step mask's reward), conditional, in fp32."""
        return ImageDenoiser(self.net).sample(given.values, given.observed[:, :1], chain, n_samples, generator,
                                              antithetic=False)
