"""Batched conditional sampling of windows: samples folded into the batch, side information once per window.

Per batch of windows the work outside the network is done once: the side information (projected for every
residual block), the conditional input channel ``M_cond * x`` and, for ``precision="bf16"``, a bfloat16
copy of the network (weights cast once, not at every call as autocast does). Each diffusion step then
costs one network call on ``n_samples * windows`` window-samples and a few element-wise updates.
"""

from __future__ import annotations

import copy
import ctypes
import math
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn
from tqdm.auto import tqdm

from .data import WindowSet
from .diffusion.samplers import NFECounter, antithetic_noise, check_variance, get_sampler
from .diffusion.schedules import Chain
from .precision import resolve_precision

if TYPE_CHECKING:
    from .denoisers import SeriesDenoiser

DEFAULT_BATCH_SIZE = {"cpu": 16, "other": 512}  # window-samples per network call, when batch_size is None
_ALLOCATOR_TUNED = False


def tune_cpu_allocator() -> bool:
    """Keep freed memory in the process between network calls (Linux/glibc; process-wide, applied once).

    The library never calls this by itself: it changes the allocator of the whole process, which is the
    application's choice. The ``tsimpute`` command line and the benchmarks call it; call it once at the start
    of a program that samples on the CPU to get the same speed.

    Every diffusion step allocates and frees the same few-MB tensors. By default glibc returns such blocks
    to the kernel (``munmap``, heap trimming) and the next step faults them back in, page by page: measured
    2,000-10,000 page faults per window-sample-step, a third of the CPU time of sampling on CPU. This sets
    ``M_MMAP_THRESHOLD`` to 32 MiB, ``M_TRIM_THRESHOLD`` to 1 GiB and ``M_TOP_PAD`` to 64 MiB (what
    ``MALLOC_*_`` environment variables would set at start-up); the cost is that the process keeps its peak
    heap. Returns whether the settings were applied (False elsewhere than glibc Linux).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = (libc.mallopt(m_mmap_threshold, 32 << 20) == 1) & (libc.mallopt(m_trim_threshold, 1 << 30) == 1)
        ok &= libc.mallopt(m_top_pad, 64 << 20) == 1
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = bool(ok)
    return _ALLOCATOR_TUNED


class SamplingError(FloatingPointError):
    """Sampling produced non-finite values, or values far outside the data: never returned as an imputation."""


def check_samples(x: torch.Tensor, limit: float | None, settings: str) -> None:
    """Raise :class:`SamplingError` if ``x`` holds a non-finite value or one beyond ``±limit``."""
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        raise SamplingError(
            f"sampling produced {int((~finite).sum())} non-finite values ({settings}); the network is probably "
            "under-trained or diverged: train longer (max_steps), keep sample_clip on, or use "
            "precision='fp32'"
        )
    if limit is not None:
        peak = float(x.abs().max()) if x.numel() else 0.0
        if peak > limit:
            raise SamplingError(
                f"sampling exploded: a value of {peak:.3g} in model units, beyond the limit {limit:.3g} ({settings}); "
                "keep sample_clip on (clips the predicted clean values to the data range), use fewer steps "
                "(step_selection='uniform') or train longer (max_steps)"
            )


@dataclass
class SamplingResult:
    """Samples ``(n_samples, N, K, L)`` (observed entries equal the observations) and the network calls made."""

    samples: torch.Tensor
    nfe: int
    calls_per_batch: int


@dataclass(frozen=True)
class SamplingInfo:
    """What one imputation cost, as returned by ``Imputer.sample(..., return_info=True)``.

    Attributes
    ----------
    nfe : int
        Network calls made (function evaluations): ``steps`` per batch of window-samples.
    steps : int
        Steps of the reverse chain (network calls per window-sample).
    windows : int
        Windows the series were cut into.
    """

    nfe: int
    steps: int
    windows: int


def inference_model(model: nn.Module, precision: str = "fp32") -> nn.Module:
    """The network that sampling calls: ``model`` itself for ``"fp32"``, an eval-mode bfloat16 copy for ``"bf16"``
    (``"auto"``: see :func:`resolve_precision`).

    The copy holds its own weights (cast once), so ``model`` and its fp32 master weights are untouched.
    """
    precision = resolve_precision(precision, next(model.parameters()).device)
    if precision == "fp32":
        return model
    return copy.deepcopy(model).to(torch.bfloat16).eval()


@torch.no_grad()
def impute_windows(
    denoiser: SeriesDenoiser,
    data: WindowSet,
    chain: Chain,
    *,
    n_samples: int,
    sampler: str = "ddpm",
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    precision: str = "fp32",
    verbose: bool = False,
    clip: tuple[torch.Tensor | float, torch.Tensor | float] | None = None,
    limit: float | None = None,
    antithetic: bool = False,
    variance: float = 0.0,
) -> SamplingResult:
    """Draw ``n_samples`` imputations of every window of ``data`` with the reverse ``chain``.

    ``denoiser`` is a :class:`~tsimpute.denoisers.SeriesDenoiser` (a network with its conditioning and
    parameterization; ``SeriesDenoiser(net)`` reads a bare network as CSDI's noise prediction).

    ``batch_size`` bounds the number of window-samples per network call (``None``: 16 on CPU, where
    small calls stay in cache, 512 elsewhere; see ``benchmarks/results/throughput.md``): windows are taken
    ``max(1, batch_size // n_samples)`` at a time with all their samples folded into the batch
    (if ``n_samples`` alone exceeds ``batch_size``, the samples are split into several passes that
    share the window's side information). The denoiser is called exactly ``len(chain)`` times per pass.
    ``precision="bf16"`` runs a bfloat16 copy of the network (fp32 sampler arithmetic and outputs);
    ``"auto"`` picks bf16 where the hardware computes it natively (:func:`resolve_precision`).
    On CPU, each network call is split over ``torch.get_num_threads()`` worker threads
    (:func:`~tsimpute.denoisers.parallel_forward`; the results do not depend on it beyond float rounding) and
    the network uses the fused kernels of :mod:`tsimpute.models.cpu_kernels` where they are available
    (see also :func:`tune_cpu_allocator`). Results are returned on the CPU in float32.

    ``clip=(lo, hi)``: bounds of the predicted clean values at every step (bounds ``(K, 1)`` or scalars; see
    :func:`~tsimpute.diffusion.samplers.sample_ddpm`). Samples with a non-finite value, or with a value beyond
    ``±limit``, raise :class:`SamplingError` naming the settings.

    ``antithetic=True`` draws the samples of each window in antithetic pairs (every noise of one sample is
    the negated noise of another; :func:`~tsimpute.diffusion.samplers.antithetic_noise`): each sample keeps
    its distribution, and their median and quantiles vary less. Passes then hold an even number of samples.

    ``variance`` (DDPM only): the variance of each update between kept steps, log-linear between the posterior
    variance beta-tilde (0, the default) and beta (1) of the chain's step (see
    :func:`~tsimpute.diffusion.samplers.sample_ddpm`); with few kept steps, beta-tilde makes the samples too
    narrow. DDIM's noise is set by ``eta``: with ``sampler="ddim"`` a non-zero ``variance`` raises ValueError.
    """
    model = denoiser.net
    device = data.values.device
    if batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE["cpu" if device.type == "cpu" else "other"]
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    sample_fn = get_sampler(sampler)
    variance = check_variance(variance)
    if sampler != "ddpm" and variance != 0.0:
        raise ValueError(f"variance applies to the 'ddpm' sampler only (got sampler={sampler!r}, "
                         f"variance={variance!r}); DDIM's noise is set by eta")
    extra = {"eta": eta} if sampler == "ddim" else {"variance": variance}
    extra["antithetic"] = antithetic
    if clip is not None:
        extra["clip"] = tuple(torch.as_tensor(c, dtype=torch.float32, device=device) for c in clip)
    settings = (f"sampler={sampler!r}, {len(chain)} steps, precision={resolve_precision(precision, device)!r}, "
                f"clip={'on' if clip is not None else 'off'}" + (f", variance={variance:g}" if variance else ""))
    n_win = len(data)
    per_pass = min(n_samples, batch_size)
    if antithetic and per_pass > 1:
        per_pass -= per_pass % 2
    win_per_batch = max(1, batch_size // n_samples)
    out = torch.empty((n_samples, *data.values.shape), dtype=torch.float32)
    total_nfe = 0
    n_batches = math.ceil(n_win / win_per_batch) * math.ceil(n_samples / per_pass)
    bar = tqdm(total=n_batches, desc="impute", unit="batch", disable=not verbose, leave=False)
    was_training = model.training
    model.eval()
    net = inference_model(model, precision)
    dtype = next(net.parameters()).dtype
    n_steps = int(chain.timesteps.max()) + 1 if len(chain) else 1
    threads = torch.get_num_threads() if device.type == "cpu" else 1
    alpha_bar = dict(zip(chain.timesteps.tolist(), chain.alphas_cumprod.tolist(), strict=True))
    for w0 in range(0, n_win, win_per_batch):
        values = data.values[w0 : w0 + win_per_batch]
        cond = data.observed[w0 : w0 + win_per_batch]
        side = [s.to(dtype) for s in model.encode_side(cond)]  # fp32 projection, cast once
        counter = NFECounter(denoiser.window_eps(net, values, cond, side, n_steps, threads, alpha_bar))
        for s0 in range(0, n_samples, per_pass):
            s = min(per_pass, n_samples - s0)
            shape = (s * len(values), *values.shape[1:])
            x = (antithetic_noise(shape, generator, device=device) if antithetic
                 else torch.randn(shape, generator=generator, device=device))
            x = sample_fn(counter, x, chain, generator=generator, **extra).view(s, *values.shape)
            x = torch.where(cond.bool(), values, x)
            check_samples(x, limit, settings)  # on what is returned (the chain's values at observed entries are not)
            out[s0 : s0 + s, w0 : w0 + len(values)] = x.float().cpu()
            bar.update(1)
        total_nfe += counter.calls
    bar.close()
    model.train(was_training)
    return SamplingResult(out, total_nfe, len(chain))
