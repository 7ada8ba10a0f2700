"""torch.distributed plumbing for torchrun: ranks, the process group, and the few collectives training needs.

Training under ``torchrun --nproc-per-node N`` is data parallel (:class:`~torch.nn.parallel.DistributedDataParallel`):
every rank holds the same model and the same training windows, takes its own share of each epoch's shuffled
order, and gradients are averaged across ranks at every step. Decisions that must agree across ranks (the
checkpoint score, time limits) are taken on rank 0 and broadcast. Batch imputation jobs shard files by rank
instead (:mod:`tsimpute.jobs`) and only need a barrier. Outside torchrun every helper here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

__all__ = ["all_mean", "all_mean_tensor", "barrier", "broadcast_from_zero", "broadcast_module_from_zero",
           "distributed_rank", "local_device", "process_group", "world"]


def distributed_rank() -> tuple[int, int]:
    """``(rank, world_size)`` from torchrun's environment (``(0, 1)`` outside it)."""
    try:
        return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise ValueError("RANK and WORLD_SIZE must be integers (set by torchrun)") from None


def world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, ``(0, 1)`` when there is none."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def local_device(device: torch.device) -> torch.device:
    """Under torchrun, a bare ``cuda`` device becomes this process's GPU ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None and distributed_rank()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device


@contextlib.contextmanager
def process_group(world_size: int, device: torch.device | None = None) -> Iterator[None]:
    """Join torchrun's process group for the duration (NCCL for a CUDA ``device``, else gloo).

    Nothing happens for ``world_size == 1`` or when the caller already initialised a group (which it keeps).
    """
    if world_size == 1 or torch.distributed.is_initialized():
        yield
        return
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if device is not None and device.type == "cuda":
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend)
    try:
        yield
    finally:
        torch.distributed.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    if world()[1] > 1:
        torch.distributed.barrier()


def _scalar(value: float) -> torch.Tensor:
    on_gpu = torch.distributed.get_backend() == "nccl"
    return torch.tensor([float(value)], dtype=torch.float64,
                        device=torch.device("cuda", torch.cuda.current_device()) if on_gpu else "cpu")


def all_mean(value: float) -> float:
    """Mean of ``value`` over the ranks (``value`` itself without a process group)."""
    if world()[1] == 1:
        return float(value)
    t = _scalar(value)
    torch.distributed.all_reduce(t)
    return float(t) / world()[1]


def all_mean_tensor(t: torch.Tensor) -> torch.Tensor:
    """Element-wise mean of ``t`` over the ranks, in place and returned (``t`` without a process group)."""
    if world()[1] > 1:
        work = t.to(_scalar(0).device)
        torch.distributed.all_reduce(work)
        t.copy_(work / world()[1])
    return t


def broadcast_from_zero(value: float) -> float:
    """Rank 0's ``value`` on every rank (``value`` itself without a process group)."""
    if world()[1] == 1:
        return float(value)
    t = _scalar(value)
    torch.distributed.broadcast(t, 0)
    return float(t)


def broadcast_module_from_zero(module: torch.nn.Module) -> None:
    """Rank 0's parameters and buffers copied into ``module`` on every rank, in place (nothing without a process
    group)."""
    if world()[1] == 1:
        return
    device = _scalar(0).device
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            work = t.detach().to(device)
            torch.distributed.broadcast(work, 0)
            t.copy_(work)
