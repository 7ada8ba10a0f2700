"""CSDI's conditional denoiser (Tashiro et al. 2021; METHOD.md §2), laid out channels-last.

Tensors are ``(N, K, L, C)``: N windows (times samples), K features, L time steps, C channels. The side
information (time and feature embeddings and the conditional mask) depends only on the window, so
:meth:`CSDIDenoiser.encode_side` projects it once per window for every residual block, and
:meth:`CSDIDenoiser.forward` reuses it for every diffusion step and every sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_kernels
from .layers import StepEmbedding, TransformerLayer, check_attention, sinusoidal_position_embedding

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


@dataclass
class CSDIConfig:
    """Architecture of :class:`CSDIDenoiser`; defaults are CSDI's. What the inputs and output mean (conditioning,
    parameterization) belongs to the denoiser adapter, :class:`tsimpute.denoisers.SeriesDenoiser`."""

    n_features: int
    n_steps: int = 50
    channels: int = 64
    n_layers: int = 4
    n_heads: int = 8
    ff_dim: int = 64
    step_emb_dim: int = 128
    time_emb_dim: int = 128
    feature_emb_dim: int = 16
    dropout: float = 0.1
    time_kernel: int = 0  # width of a convolution along time in every block (0: none, as CSDI)

    @property
    def side_dim(self) -> int:
        return self.time_emb_dim + self.feature_emb_dim + 1


def gated_activation(y: torch.Tensor) -> torch.Tensor:
    """``sigmoid(gate) * tanh(filter)`` of ``y = [gate, filter]`` (last dim), computed in fp32.

    ``tanh(f) = 2 sigmoid(2f) - 1``: the same function, but ATen's CPU ``tanh`` costs about 5x a ``sigmoid``.
    """
    gate, filt = y.float().chunk(2, dim=-1)
    return (torch.sigmoid(gate) * (2.0 * torch.sigmoid(2.0 * filt) - 1.0)).to(y.dtype)


class ResidualBlock(nn.Module):
    """Step embedding, attention over time then over features, side information, gated activation."""

    def __init__(self, cfg: CSDIConfig):
        super().__init__()
        c = cfg.channels
        self.diffusion_projection = nn.Linear(cfg.step_emb_dim, c)
        self.side_projection = nn.Linear(cfg.side_dim, 2 * c)
        self.mid_projection = nn.Linear(c, 2 * c)
        self.output_projection = nn.Linear(c, 2 * c)
        self.time_layer = TransformerLayer(c, cfg.n_heads, cfg.ff_dim, cfg.dropout)
        self.feature_layer = TransformerLayer(c, cfg.n_heads, cfg.ff_dim, cfg.dropout)
        k = cfg.time_kernel
        self.time_conv = nn.Conv1d(c, c, k, padding=k // 2) if k else None

    def forward(self, x: torch.Tensor, step_emb: torch.Tensor, side: torch.Tensor, skip: torch.Tensor | None = None):
        """``x (N, K, L, C)``, ``step_emb (N or 1, E)``, ``side (B, K, L, 2C)`` with N a multiple of B (from
        :meth:`CSDIDenoiser.encode_side`) and the sum of the previous blocks' skip outputs (None for the first).

        Returns the block's output and the updated skip sum.
        """
        n, k, l, c = x.shape
        y = x + self.diffusion_projection(step_emb)[:, None, None, :]
        fused = (self.time_layer.fused(y, l) and self.feature_layer.fused(y, k) and side.dtype == y.dtype
                 and (skip is None or skip.dtype == y.dtype))
        if self.time_conv is not None:
            y = y + self.time_conv(y.reshape(n * k, l, c).transpose(1, 2)).transpose(1, 2).reshape(n, k, l, c)
        if l > 1:
            y = self.time_layer(y, seq_dim=2)
        if k > 1:
            y = self.feature_layer(y, seq_dim=1)
        # side already holds the bias of mid_projection; it is broadcast over the samples folded in front (no copy)
        y = F.linear(y, self.mid_projection.weight)  # (N, K, L, 2C)
        if fused:
            y = F.linear(cpu_kernels.gated_activation(y.contiguous(), side.contiguous()), self.output_projection.weight)
            return cpu_kernels.residual_skip(x.contiguous(), y, self.output_projection.bias, skip)
        b = side.shape[0]
        y = gated_activation((y.reshape(n // b, b, k, l, 2 * c) + side).view(n, k, l, 2 * c))
        residual, s = self.output_projection(y).chunk(2, dim=-1)
        return (x + residual) * _INV_SQRT2, s if skip is None else skip + s


class CSDIDenoiser(nn.Module):
    """Predicts the noise ``eps`` of the target entries of a window (CSDI's ``diff_CSDI`` plus side info).

    Input per entry: two channels ``(M_cond * x, (1 - M_cond) * x_t)``. The network knows nothing about
    schedules or step masks: it is conditioned on the integer step index only.
    """

    def __init__(self, config: CSDIConfig):
        super().__init__()
        self.config = config
        c = config.channels
        self.feature_embedding = nn.Embedding(config.n_features, config.feature_emb_dim)
        self.step_embedding = StepEmbedding(config.n_steps, config.step_emb_dim)
        self.input_projection = nn.Linear(2, c)
        self.blocks = nn.ModuleList(ResidualBlock(config) for _ in range(config.n_layers))
        self.output_projection1 = nn.Linear(c, c)
        self.output_projection2 = nn.Linear(c, 1)
        nn.init.zeros_(self.output_projection2.weight)
        nn.init.zeros_(self.output_projection2.bias)

    def encode_side(self, cond_mask: torch.Tensor, positions: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Project the side information of windows ``cond_mask (B, K, L)`` once, for every block.

        ``positions (B, L)`` are the time positions (default ``0..L-1``). Returns one ``(B, K, L, 2C)``
        tensor per residual block: its side projection plus the bias of its ``mid_projection`` (the two
        terms that a block adds to its pre-activation whatever the step).
        """
        b, k, l = cond_mask.shape
        cfg = self.config
        if positions is None:
            positions = torch.arange(l, device=cond_mask.device).expand(b, l)
        time_emb = sinusoidal_position_embedding(positions, cfg.time_emb_dim)[:, None].expand(b, k, l, -1)
        feat = self.feature_embedding(torch.arange(k, device=cond_mask.device))
        feat_emb = feat[None, :, None, :].expand(b, k, l, -1)
        side = torch.cat([time_emb, feat_emb.to(time_emb.dtype), cond_mask[..., None].to(time_emb.dtype)], dim=-1)
        side = side.to(self.input_projection.weight.dtype)
        return [blk.side_projection(side) + blk.mid_projection.bias for blk in self.blocks]

    @property
    def attention(self) -> str:
        """Attention kernel of every transformer layer: ``"auto"``, ``"sdpa"``, ``"math"`` or ``"fused"`` (same
        maths; see :mod:`tsimpute.models.layers`)."""
        return self.blocks[0].time_layer.attention

    @attention.setter
    def attention(self, impl: str) -> None:
        check_attention(impl)
        for blk in self.blocks:
            blk.time_layer.attention = impl
            blk.feature_layer.attention = impl

    def forward(self, x: torch.Tensor, t: torch.Tensor | int, side: list[torch.Tensor]) -> torch.Tensor:
        """Predict noise.

        Parameters
        ----------
        x : Tensor (N, K, L, 2)
            Conditional observations and noisy targets, channels-last.
        t : LongTensor (N,) or (1,), or int
            Diffusion step of each element (0-based), or one step for all.
        side : list of Tensor (B, K, L, 2C)
            Output of :meth:`encode_side`; N must be a multiple of B (samples folded in front).

        Returns
        -------
        Tensor (N, K, L) in the dtype of the parameters (a bfloat16 copy of the network computes in bfloat16).
        """
        n = x.shape[0]
        dtype = self.input_projection.weight.dtype
        if isinstance(t, int):
            t = torch.full((1,), t, dtype=torch.long, device=x.device)
        step_emb = self.step_embedding(t)
        h = F.relu(self.input_projection(x.to(dtype)))
        skip = None
        for blk, side_b in zip(self.blocks, side, strict=True):
            h, skip = blk(h, step_emb, side_b.to(dtype), skip)
        h = skip * (1.0 / math.sqrt(len(self.blocks)))
        h = F.relu(self.output_projection1(h))
        return self.output_projection2(h).view(n, *x.shape[1:3])
