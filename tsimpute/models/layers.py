"""Building blocks shared by the denoisers: sinusoidal embeddings and a transformer layer with fused attention.

Attention in CSDI is many short sequences (48 time steps, 35 features) with a tiny head dimension (8).
Two implementations give the same maths (tested against ``nn.TransformerEncoderLayer``):

- ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention` (flash kernel on CPU and CUDA);
- ``"math"``: two batched matmuls around a softmax, with the second product taken as ``V^T P^T`` so that
  the GEMM writes rows of length S rather than d (on CPU, 1.3-2x faster than the flash kernel at these
  sizes; see ``benchmarks/results/throughput.md``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ATTENTION_IMPLS = ("auto", "sdpa", "math")
_SCORE_BYTES = 2 << 20  # scores per chunk of the "math" attention at inference (fits two L2 caches)


def diffusion_step_table(n_steps: int, dim: int = 128) -> torch.Tensor:
    """CSDI's step embedding table ``(T, dim)``: ``[sin(t f_j), cos(t f_j)]`` with ``f_j = 10^(4 j / (dim/2 - 1))``."""
    half = dim // 2
    steps = torch.arange(n_steps, dtype=torch.float32)[:, None]
    freqs = 10.0 ** (torch.arange(half, dtype=torch.float32) / (half - 1) * 4.0)[None, :]
    table = steps * freqs
    return torch.cat([torch.sin(table), torch.cos(table)], dim=1)


def sinusoidal_position_embedding(positions: torch.Tensor, dim: int = 128) -> torch.Tensor:
    """Transformer position embedding of real-valued ``positions (..., L)`` → ``(..., L, dim)``."""
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) * (-math.log(10000.0) / dim))
    angles = positions.to(torch.float32)[..., None] * div
    pe = torch.zeros(*positions.shape, dim, device=positions.device)
    pe[..., 0::2] = torch.sin(angles)
    pe[..., 1::2] = torch.cos(angles)
    return pe


class StepEmbedding(nn.Module):
    """Diffusion-step embedding: fixed sinusoidal table, then two Linear + SiLU layers."""

    def __init__(self, n_steps: int, dim: int = 128, out_dim: int | None = None):
        super().__init__()
        out_dim = out_dim or dim
        self.register_buffer("table", diffusion_step_table(n_steps, dim), persistent=False)
        self.projection1 = nn.Linear(dim, out_dim)
        self.projection2 = nn.Linear(out_dim, out_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.projection1(self.table[t].to(self.projection1.weight.dtype)))
        return F.silu(self.projection2(x))


def resolve_attention(impl: str, device: torch.device | str) -> str:
    """The attention implementation ``"auto"`` stands for on ``device``: ``"math"`` on CPU, ``"sdpa"`` elsewhere."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {impl!r}")
    if impl != "auto":
        return impl
    return "math" if torch.device(device).type == "cpu" else "sdpa"


def multi_head_attention(
    qkv: torch.Tensor, n_heads: int, dropout_p: float = 0.0, impl: str = "sdpa"
) -> torch.Tensor:
    """Softmax attention of packed projections ``qkv (N, S, 3C)`` → ``(N, S, C)`` (heads concatenated).

    ``impl`` is ``"sdpa"`` or ``"math"`` (same result up to rounding); see the module docstring.
    """
    n, s, c3 = qkv.shape
    c = c3 // 3
    d = c // n_heads
    if impl == "sdpa":
        q, k, v = qkv.view(n, s, 3, n_heads, d).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        return a.transpose(1, 2).reshape(n, s, c)
    if torch.is_grad_enabled() and qkv.requires_grad:  # training: one pass, autograd keeps the scores
        return _math_attention(qkv, n_heads, dropout_p)
    # Inference: sequences in chunks whose (h, S, S) scores stay in cache rather than going through memory.
    out = torch.empty((n, s, c), dtype=qkv.dtype, device=qkv.device)
    step = max(1, _SCORE_BYTES // (4 * n_heads * s * s))
    for i in range(0, n, step):
        out[i : i + step] = _math_attention(qkv[i : i + step], n_heads, dropout_p)
    return out


def _math_attention(qkv: torch.Tensor, n_heads: int, dropout_p: float) -> torch.Tensor:
    """Attention with two batched matmuls: ``(N, S, 3C)`` → ``(N, S, C)``, a non-contiguous view."""
    n, s, c3 = qkv.shape
    c = c3 // 3
    d = c // n_heads
    # On CPU the scores and softmax are fp32 whatever the input dtype: ATen's bf16 softmax is several times
    # slower than its fp32 one.
    work = torch.float32 if qkv.device.type == "cpu" else qkv.dtype
    q, k, v = _split_heads(qkv, n_heads).to(work).view(3, n * n_heads, s, d)
    p = torch.softmax(torch.bmm(q * (1.0 / math.sqrt(d)), k.transpose(1, 2)), dim=-1)
    if dropout_p > 0:
        p = F.dropout(p, dropout_p)
    # out^T = V^T P^T: the GEMM writes rows of length S rather than d (about 3x faster on CPU)
    out_t = torch.bmm(v.transpose(1, 2), p.transpose(1, 2))  # (N*h, d, S)
    return out_t.view(n, c, s).transpose(1, 2).to(qkv.dtype)


def _split_heads(qkv: torch.Tensor, n_heads: int) -> torch.Tensor:
    """``(N, S, 3C)`` → contiguous ``(3, N, h, S, d)``: q, k, v with every head's sequence contiguous.

    The permutation moves whole head vectors of d values, but ATen copies element by element; when a head
    vector is a multiple of 16 bytes and autograd is not involved, it is moved as complex128 units (the
    bits are untouched), 2-7x faster on CPU.
    """
    n, s, c3 = qkv.shape
    d = c3 // (3 * n_heads)
    ratio = 16 // qkv.element_size()
    if (not qkv.requires_grad and qkv.is_contiguous() and d % ratio == 0 and qkv.storage_offset() % ratio == 0):
        units = qkv.view(torch.complex128).view(n, s, 3, n_heads, d // ratio)
        return units.permute(2, 0, 3, 1, 4).contiguous().view(qkv.dtype)
    return qkv.view(n, s, 3, n_heads, d).permute(2, 0, 3, 1, 4).contiguous()


class TransformerLayer(nn.Module):
    """Post-norm transformer encoder layer (as ``nn.TransformerEncoderLayer`` with GELU) on ``(N, S, C)``.

    Parameter names and shapes match PyTorch's layer (``in_proj`` holds its ``self_attn.in_proj_*``,
    ``out_proj`` its ``self_attn.out_proj``). ``attention`` picks the attention kernel (``"auto"``:
    ``"math"`` on CPU, ``"sdpa"`` on other devices); it can be changed after construction.
    """

    def __init__(self, channels: int, n_heads: int, ff_dim: int, dropout: float = 0.1, attention: str = "auto"):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        resolve_attention(attention, "cpu")  # validate early
        self.n_heads = n_heads
        self.dropout = dropout
        self.attention = attention
        self.in_proj = nn.Linear(channels, 3 * channels)
        self.out_proj = nn.Linear(channels, channels)
        self.linear1 = nn.Linear(channels, ff_dim)
        self.linear2 = nn.Linear(ff_dim, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        impl = resolve_attention(self.attention, x.device)
        a = multi_head_attention(self.in_proj(x), self.n_heads, p, impl)
        x = self.norm1(x + F.dropout(self.out_proj(a), p, self.training))
        f = self.linear2(F.dropout(F.gelu(self.linear1(x)), p, self.training))
        return self.norm2(x + F.dropout(f, p, self.training))
