"""Processes of one ``torchrun`` job: this process's rank and the world size, the process group, and the
collective operations the training engine and the batch engine of runs written to disk share. Under a single
process every function is a no-op that returns its input."""
from __future__ import annotations

import os

import torch
from torch import nn

__all__ = ["rank_and_world", "init_distributed", "barrier", "wrap_ddp", "all_agree", "mean_over_ranks",
           "broadcast_float"]


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) from ``torchrun``'s environment; (0, 1) outside it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def init_distributed(device: torch.device) -> tuple[int, int]:
    """(rank, world size) of this process; joins the process group when ``torchrun`` started several
    (gloo on CPU, nccl on CUDA)."""
    rank, world = rank_and_world()
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend)
    return rank, world


def barrier(world: int) -> None:
    """Wait for every process (nothing to wait for in one process)."""
    if world > 1:
        torch.distributed.barrier()


def wrap_ddp(model: nn.Module, device: torch.device, world: int) -> nn.Module:
    """``model`` in ``DistributedDataParallel`` when there are several processes, else itself."""
    if world == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    # gradients live in the communication buckets (no copy), a few large buckets (fewer gloo calls)
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=True,
                                               gradient_as_bucket_view=True, bucket_cap_mb=64)


def all_agree(ok: bool, device: torch.device, world: int) -> bool:
    """Whether ``ok`` holds on every process."""
    if world == 1:
        return ok
    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
    return bool(flag.item() > 0)


def mean_over_ranks(value: torch.Tensor, world: int) -> float:
    """The mean of a scalar tensor over the processes."""
    if world > 1:
        value = value.clone()
        torch.distributed.all_reduce(value)
        value /= world
    return float(value)


def broadcast_float(value: float, device: torch.device, world: int, dtype=torch.float32) -> float:
    """Rank 0's ``value`` on every process (values that differ across ranks, such as wall time, would let
    the weights drift apart)."""
    if world == 1:
        return value
    tensor = torch.tensor([value], device=device, dtype=dtype)
    torch.distributed.broadcast(tensor, src=0)
    return float(tensor)
