"""Building blocks shared by the denoisers: sinusoidal embeddings and a transformer layer with fused attention.

Attention in CSDI is many short sequences (48 time steps, 35 features) with a tiny head dimension (8).
Three implementations give the same maths (tested against ``nn.TransformerEncoderLayer``):

- ``"sdpa"``: :func:`torch.nn.functional.scaled_dot_product_attention` (flash kernel on CPU and CUDA);
- ``"math"``: two batched matmuls around a softmax, with the second product taken as ``V^T P^T`` so that
  the GEMM writes rows of length S rather than d (on CPU, 1.3-2x faster than the flash kernel at these
  sizes; see ``benchmarks/results/throughput.md``);
- ``"fused"``: CPU inference only, the kernels of :mod:`.cpu_kernels` (attention in registers, read in
  place along any axis; residual + layer norm in one pass); training and other devices use ``"math"``
  (CPU) or ``"sdpa"``.

``"auto"`` is ``"fused"`` on CPU where the kernels are available, else ``"math"``, and ``"sdpa"`` elsewhere.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import cpu_kernels

ATTENTION_IMPLS = ("auto", "sdpa", "math", "fused")
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


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def check_attention(impl: str) -> str:
    """``impl`` if it names an attention implementation, else a ValueError."""
    if impl not in ATTENTION_IMPLS:
        raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {impl!r}")
    return impl


def resolve_attention(impl: str, device: torch.device | str) -> str:
    """The attention implementation ``impl`` stands for on ``device``.

    ``"auto"``: ``"fused"`` on CPU where :mod:`.cpu_kernels` are available, else ``"math"``; ``"sdpa"`` on
    other devices. ``"fused"`` is CPU-only: elsewhere it stands for ``"sdpa"``.
    """
    check_attention(impl)
    cpu = torch.device(device).type == "cpu"
    if impl == "auto":
        return "math" if cpu and not cpu_kernels.available() else ("fused" if cpu else "sdpa")
    if impl == "fused" and not cpu:
        return "sdpa"
    return impl


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
    """Post-norm transformer encoder layer (as ``nn.TransformerEncoderLayer`` with GELU) over sequences along
    one leading dimension of ``(..., C)``.

    Parameter names and shapes match PyTorch's layer (``in_proj`` holds its ``self_attn.in_proj_*``,
    ``out_proj`` its ``self_attn.out_proj``). ``attention`` picks the attention kernel (see
    :func:`resolve_attention`); it can be changed after construction.
    """

    def __init__(self, channels: int, n_heads: int, ff_dim: int, dropout: float = 0.1, attention: str = "auto"):
        super().__init__()
        if channels % n_heads:
            raise ValueError(f"channels ({channels}) must be divisible by n_heads ({n_heads})")
        check_attention(attention)
        self.n_heads = n_heads
        self.dropout = dropout
        self.attention = attention
        self.in_proj = nn.Linear(channels, 3 * channels)
        self.out_proj = nn.Linear(channels, channels)
        self.linear1 = nn.Linear(channels, ff_dim)
        self.linear2 = nn.Linear(ff_dim, channels)
        self.norm1 = nn.LayerNorm(channels)
        self.norm2 = nn.LayerNorm(channels)

    def fused(self, x: torch.Tensor, seq_len: int) -> bool:
        """Whether :meth:`forward` on ``x`` runs the fused CPU kernels (inference on CPU, supported shapes)."""
        if self.training or resolve_attention(self.attention, x.device) != "fused":
            return False
        if x.dtype != self.in_proj.weight.dtype or _autocast_enabled(x.device.type):
            return False
        if torch.is_grad_enabled() and (x.requires_grad or self.in_proj.weight.requires_grad):
            return False  # the kernels are forward-only: autograd needs the ATen path
        c = x.shape[-1]
        return cpu_kernels.supports(x) and cpu_kernels.attention_supported(seq_len, c, self.n_heads)

    def forward(self, x: torch.Tensor, seq_dim: int = -2) -> torch.Tensor:
        """Encode ``x (..., C)`` along its dimension ``seq_dim`` (the other leading dimensions index sequences)."""
        seq_dim = seq_dim % x.dim()
        if seq_dim == x.dim() - 1:
            raise ValueError("seq_dim must name a leading dimension of x, not its channels")
        if self.fused(x, x.shape[seq_dim]):  # GEMMs without bias; the biases are added by the fused kernels
            x = x.contiguous()
            a = cpu_kernels.attention(F.linear(x, self.in_proj.weight), self.n_heads, seq_dim, self.in_proj.bias)
            x = cpu_kernels.add_layer_norm(x, F.linear(a, self.out_proj.weight), self.norm1, self.out_proj.bias)
            f = cpu_kernels.bias_gelu(F.linear(x, self.linear1.weight), self.linear1.bias)
            return cpu_kernels.add_layer_norm(x, F.linear(f, self.linear2.weight), self.norm2, self.linear2.bias)
        if seq_dim != x.dim() - 2:  # sequences along another axis: encode a transposed copy
            y = x.movedim(seq_dim, -2)
            return self._forward(y.reshape(-1, *y.shape[-2:])).view(y.shape).movedim(-2, seq_dim)
        return self._forward(x.reshape(-1, *x.shape[-2:])).view(x.shape)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        impl = resolve_attention(self.attention, x.device)
        impl = "math" if impl == "fused" else impl
        a = multi_head_attention(self.in_proj(x), self.n_heads, p, impl)
        x = self.norm1(x + F.dropout(self.out_proj(a), p, self.training))
        f = self.linear2(F.dropout(F.gelu(self.linear1(x)), p, self.training))
        return self.norm2(x + F.dropout(f, p, self.training))
