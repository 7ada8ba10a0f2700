"""What the denoiser's output means: the noise itself (CSDI), or a scaled correction of the interpolation.

Samplers and losses speak of the noise ``eps`` of the state ``x_t = sqrt(abar) x0 + sqrt(1 - abar) eps``. A
parameterization maps the state to what the network sees and the network's output back to ``eps``:

``"epsilon"``
    CSDI: the network sees ``x_t`` and predicts ``eps``.
``"residual"``
    The diffusion runs on the residual ``x0 - b`` of a first guess ``b``, the linear interpolation of the
    given values along time (:func:`~tsimpute.diffusion.conditioning.interpolate_given`) or a fitted
    correction of it (:class:`~tsimpute.diffusion.first_guess.FirstGuess`, or a network's,
    :class:`~tsimpute.learned_guess.LearnedGuess`), with Karras et
    al. (2022)'s preconditioning for residuals of scale ``sigma_data``. With ``r_t = x_t - sqrt(abar) b``
    (the residual's own noisy state, with the same ``eps``) and ``v = 1 - abar + abar sigma_data^2`` its
    variance, the network sees ``r_t / sqrt(v)`` and its output ``F`` gives

    ``eps = sqrt(1 - abar) / v * r_t - sigma_data sqrt(abar / v) * F``

    (the v-prediction of Salimans & Ho (2022) when ``sigma_data = 1``). A network that outputs 0 (as the
    CSDI denoiser does at initialisation, its last layer being zero) is then the exact denoiser of
    Gaussian residuals ``N(0, sigma_data^2)``: sampling returns the interpolation plus noise of the
    interpolation's typical error, whose median is the interpolation. Training only has to learn what the
    interpolation misses, so an early, under-trained network already imputes as well as interpolation.

    ``sigma_data`` is one number, or (``sigma_table``) a scale per feature and per distance from the given
    entries (:data:`GAP_BINS` of :func:`~tsimpute.diffusion.conditioning.gap_distance`): interpolation's
    error on a single missing hour of a smooth column is many times smaller than in a long gap of a noisy
    one, and every formula above holds entry by entry.

The training objective stays the noise MSE of METHOD.md §3 (written in ``eps``), so step masks, loss
weights and samplers are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .conditioning import gap_distance
from .first_guess import FirstGuess, first_guess_of

PARAMETERIZATIONS = ("epsilon", "residual")
# bins of the gap distance (gap_distance: 1/2 for a single missing entry) for a scale table per feature
GAP_BINS = (0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)
Readout = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Parameterization:
    """Maps the diffusion state to the network's noisy input and the network's output to the noise.

    ``alpha_bar`` arguments are floats or tensors broadcastable to the state (e.g. ``(N, 1, 1)``); ``base``
    is the first guess ``(B, K, L)`` of the windows, broadcast over samples folded in front of ``x_t``
    (``N = n_samples * B``); it is ``None`` for ``"epsilon"``. ``sigma_table`` (K rows of ``len(GAP_BINS) + 1``
    scales), when given, replaces ``sigma_data`` by a scale per entry (:meth:`scale`). ``first_guess``, when
    given, replaces the interpolation as the first guess.
    """

    kind: str = "epsilon"
    sigma_data: float = 1.0
    sigma_table: tuple[tuple[float, ...], ...] | None = None
    first_guess: FirstGuess | Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.kind not in PARAMETERIZATIONS:
            raise ValueError(f"parameterization must be one of {PARAMETERIZATIONS}, got {self.kind!r}")
        if not self.sigma_data > 0:
            raise ValueError(f"sigma_data must be positive, got {self.sigma_data!r}")
        if self.sigma_table is not None:
            table = torch.as_tensor(self.sigma_table, dtype=torch.float32)
            if table.dim() != 2 or table.shape[1] != len(GAP_BINS) + 1 or not bool((table > 0).all()):
                raise ValueError(f"sigma_table must hold positive scales, one row of {len(GAP_BINS) + 1} per feature")

    def base(self, values: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor | None:
        """The first guess of windows ``values (B, K, L)`` given ``cond_mask`` (None for ``"epsilon"``)."""
        if self.kind == "epsilon":
            return None
        return first_guess_of(values, cond_mask, self.first_guess)

    def scale(self, cond_mask: torch.Tensor) -> torch.Tensor | None:
        """The residual scale of every entry of windows ``cond_mask (B, K, L)``, or None (one ``sigma_data``)."""
        if self.kind == "epsilon" or self.sigma_table is None:
            return None
        table = torch.as_tensor(self.sigma_table, dtype=torch.float32, device=cond_mask.device)
        if table.shape[0] != cond_mask.shape[-2]:
            raise ValueError(f"sigma_table has {table.shape[0]} features, the windows {cond_mask.shape[-2]}")
        return table.expand(*cond_mask.shape[:-1], -1).gather(-1, gap_bins(cond_mask))

    def precondition(self, x_t: torch.Tensor, base: torch.Tensor | None, alpha_bar,
                     scale: torch.Tensor | None = None) -> tuple[torch.Tensor, Readout]:
        """What the network sees of the noisy state, and the map from its output to the predicted noise.

        ``"epsilon"``: ``x_t`` and ``out -> out``. ``"residual"``: ``r_t / sqrt(v)`` and
        ``out -> sqrt(1 - abar) / v * r_t - sigma_data sqrt(abar / v) * out``, with ``sigma_data`` replaced
        entry by entry by ``scale`` (``(B, K, L)``, from :meth:`scale`) when given. The residual is computed
        once for both (the sampler calls this at every step); ``base`` and ``scale`` are broadcast over the
        samples folded in front of ``x_t`` without a copy. The noise is float32.
        """
        if self.kind == "epsilon":
            return x_t, lambda out: out.float()
        n = x_t.shape[0] // base.shape[0]
        shape = (n, *base.shape)
        ab = torch.as_tensor(alpha_bar, dtype=torch.float32, device=x_t.device)
        if ab.dim():
            ab = ab.reshape(n, -1, *(1,) * (base.dim() - 1))
        sd = self.sigma_data if scale is None else scale.float()
        r = x_t.float().view(shape) - ab.sqrt() * base.float()
        var = 1.0 - ab + ab * sd**2
        along_r, along_out = (1.0 - ab).sqrt() / var * r, sd * (ab / var).sqrt()
        noisy = (r / var.sqrt()).view(x_t.shape).to(x_t.dtype)
        return noisy, lambda out: (along_r - along_out * out.float().view(shape)).view(x_t.shape)

    def network_input(self, x_t: torch.Tensor, base: torch.Tensor | None, alpha_bar,
                      scale: torch.Tensor | None = None) -> torch.Tensor:
        """What the network sees of the noisy state (see :meth:`precondition`)."""
        return self.precondition(x_t, base, alpha_bar, scale)[0]

    def output_weight(self, alpha_bar, scale: torch.Tensor | None = None) -> torch.Tensor | None:
        """The factor that turns an error in the predicted noise into the error in the network's output.

        ``"residual"``: the readout of :meth:`precondition` moves the noise by ``sigma_data sqrt(abar / v)``
        per unit of output, so an error ``d`` in noise is an error ``d sqrt(v) / (sigma_data sqrt(abar))`` in
        output (entry by entry with ``scale``). The noise MSE weighs high noise levels (small ``abar``) next to
        nothing in output units; multiplying by this factor gives every level the unit weight of Karras et al.
        (2022)'s preconditioned loss. ``"epsilon"``: None (the output is the noise).
        """
        if self.kind == "epsilon":
            return None
        ab = torch.as_tensor(alpha_bar, dtype=torch.float32)
        sd = torch.as_tensor(self.sigma_data, dtype=torch.float32) if scale is None else scale.float()
        ab = ab.to(sd.device)
        var = 1.0 - ab + ab * sd**2
        return var.sqrt() / (sd * ab.sqrt())

    def eps(self, out: torch.Tensor, x_t: torch.Tensor, base: torch.Tensor | None, alpha_bar,
            scale: torch.Tensor | None = None) -> torch.Tensor:
        """The predicted noise from the network's output ``out`` (see :meth:`precondition`), in float32."""
        return self.precondition(x_t, base, alpha_bar, scale)[1](out)


def gap_bins(cond_mask: torch.Tensor, edges: tuple[float, ...] = GAP_BINS) -> torch.Tensor:
    """The bin of ``edges`` (default :data:`GAP_BINS`) of every entry's distance from the given ones
    (``gap_distance``), a LongTensor."""
    edges = torch.as_tensor(edges, dtype=torch.float32, device=cond_mask.device)
    return torch.bucketize(gap_distance(cond_mask), edges)


@torch.no_grad()
def interpolation_error_scale(values: torch.Tensor, observed: torch.Tensor, cond_mask: torch.Tensor,
                              floor: float = 1e-2, guess: FirstGuess | None = None) -> float:
    """RMS error of linear interpolation (or of ``guess``) from ``cond_mask`` on the other observed entries.

    ``values``/``observed``/``cond_mask`` are ``(B, K, L)`` in model units, ``cond_mask`` drawn as in
    training (:func:`~tsimpute.diffusion.targets.conditional_mask`). This is ``sigma_data`` of the
    ``"residual"`` parameterization: the typical size of what the network has to correct. At least ``floor``
    (1 when no entry is hidden).
    """
    target = observed - cond_mask
    n = float(target.sum())
    if n == 0:
        return 1.0
    err = (first_guess_of(values, cond_mask, guess) - values) * target
    return max(float(err.pow(2).sum() / n) ** 0.5, floor)


@torch.no_grad()
def interpolation_error_table(values: torch.Tensor, observed: torch.Tensor, cond_mask: torch.Tensor,
                              floor: float = 1e-2, prior: float = 30.0,
                              guess: FirstGuess | None = None) -> list[list[float]]:
    """RMS error of linear interpolation (or of ``guess``) per feature and per bin of distance from the given entries.

    Same inputs as :func:`interpolation_error_scale`; returns K rows of ``len(GAP_BINS) + 1`` scales (the
    ``sigma_table`` of the ``"residual"`` parameterization). Each bin's mean squared error is shrunk, with
    the weight of ``prior`` entries, towards a straight line in the gap distance fitted to all the bins of
    its feature (weighted by their entries; the error variance of interpolating a random walk grows
    linearly in :func:`~tsimpute.diffusion.conditioning.gap_distance`), so that a bin with few or no hidden
    entries follows its neighbours rather than the long gaps that dominate a pooled value. At least
    ``floor``; 1 for a feature with no hidden entry.
    """
    target = (observed - cond_mask).clamp(min=0)
    k = values.shape[-2]
    sq = (first_guess_of(values, cond_mask, guess) - values).double().pow(2) * target
    n_bins = len(GAP_BINS) + 1

    def flat(x: torch.Tensor) -> torch.Tensor:  # (K, every other entry)
        return x.transpose(0, -2).reshape(k, -1)

    def per_bin(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(k, n_bins, dtype=torch.float64, device=values.device).scatter_add_(1, index, flat(x))

    distance = gap_distance(cond_mask).double()
    index = flat(gap_bins(cond_mask))
    sums, counts = per_bin(sq), per_bin(target.double())
    # each bin's mean distance (its edges' middle when it is empty), and a weighted line through the bins
    edges = (0.0, *GAP_BINS, 2 * GAP_BINS[-1])
    middle = torch.tensor([(a + b) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)], dtype=torch.float64,
                          device=values.device)
    d = torch.where(counts > 0, per_bin(distance * target) / counts.clamp(min=1), middle)
    mse = sums / counts.clamp(min=1)
    w = counts / counts.sum(1, keepdim=True).clamp(min=1)
    d_mean, m_mean = (w * d).sum(1, keepdim=True), (w * mse).sum(1, keepdim=True)
    slope = ((w * (d - d_mean) * (mse - m_mean)).sum(1, keepdim=True)
             / (w * (d - d_mean) ** 2).sum(1, keepdim=True).clamp(min=1e-12)).clamp(min=0)
    line = (m_mean + slope * (d - d_mean)).clamp(min=floor**2)
    line = torch.where(counts.sum(1, keepdim=True) > 0, line, torch.ones_like(line))
    table = ((sums + prior * line) / (counts + prior)).sqrt().clamp(min=floor).float()
    return table.cpu().tolist()
