"""Numerical precision of the network: ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 where the hardware has it)."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision ``"auto"`` stands for: ``"bf16"`` where the hardware computes bfloat16 natively.

    That is a CUDA device with bf16 support, or a CPU with AVX512-BF16 or AMX-BF16 (elsewhere oneDNN
    emulates bf16 and fp32 is faster); else ``"fp32"``. Other values are returned unchanged.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type != "cpu":
        return "fp32"
    try:
        caps = torch._C._cpu._get_cpu_capability()
        native = bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))
    except (AttributeError, RuntimeError):
        native = False
    return "bf16" if native else "fp32"


def autocast(device: torch.device, precision: str):
    """Autocast context for ``precision`` in {"fp32", "bf16", "auto"} (fp32 master weights either way; "auto":
    see :func:`resolve_precision`)."""
    precision = resolve_precision(precision, device)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
