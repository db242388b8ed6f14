"""Multi-process training helpers: process group set-up from torchrun's environment, the
local device, and the few collectives the trainer needs.

    torchrun --standalone --nproc_per_node=2 -m hdml_ext.cli train --dataset digits --out runs/d

torchrun starts one process per rank and sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT; `init_distributed` reads them and joins the group (backend gloo on the CPU, nccl
on CUDA, unless named). Without those variables everything here degrades to one process
(rank 0 of 1) and no collective runs, so the same code trains on one device.

From Python, call `init_distributed(...)` in each process before building a `Trainer` (it picks
the process group up) and `cleanup()` at the end.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import Tensor, nn

BACKENDS = ("auto", "gloo", "nccl")


class DistInfo(NamedTuple):
    """Where this process stands: rank in [0, world_size), local_rank on its node, and the
    device it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def launched_by_torchrun() -> bool:
    """Whether the torchrun variables (RANK and WORLD_SIZE) are in the environment."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name} should be an integer, got {value!r}") from None


def local_device(device: str | torch.device = "auto") -> torch.device:
    """The device this process trains on.

    "auto" is CUDA when available, else the CPU; "auto" and a bare "cuda" mean cuda:LOCAL_RANK
    (LOCAL_RANK from torchrun, 0 without it), so each process of a node takes its own GPU. An
    explicit index ("cuda:1") or "cpu" is kept as given.
    """
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        return torch.device("cuda", _env_int("LOCAL_RANK", 0))
    return torch.device(name)


def resolve_backend(backend: str, device: torch.device) -> str:
    """ "auto" -> nccl for a CUDA device, gloo otherwise; "gloo"/"nccl" as given (nccl needs CUDA)."""
    if backend not in BACKENDS:
        raise ValueError(f"train.dist_backend should be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"train.dist_backend='nccl' needs a CUDA device, the device is {device}; use gloo")
    return backend


def init_distributed(backend: str = "auto", device: str | torch.device = "auto") -> DistInfo:
    """Join the process group that torchrun's environment describes, or stay single-process.

    With RANK and WORLD_SIZE set (torchrun, or set by hand with MASTER_ADDR and MASTER_PORT)
    and no group yet, initialise one (`init_method="env://"`) with `backend` ("auto": nccl on
    CUDA, gloo on the CPU); on CUDA the process's device is made current. Without them, nothing
    is initialised and the answer is rank 0 of 1. Returns this process's `DistInfo`.
    """
    target = local_device(device)
    chosen = resolve_backend(backend, target)
    if launched_by_torchrun() and not dist.is_initialized():
        if target.type == "cuda":
            torch.cuda.set_device(target)
        dist.init_process_group(backend=chosen, init_method="env://")
    return DistInfo(rank(), world_size(), _env_int("LOCAL_RANK", 0), target)


def cleanup() -> None:
    """Leave the process group, if one was joined (safe to call when none was)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """Whether a process group of more than one process is active."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this is rank 0, the process that logs and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if is_distributed():
        dist.barrier()


def _comm_device() -> torch.device:
    """Where collective tensors must live: the current GPU for nccl, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_mean(values: Tensor) -> Tensor:
    """The element-wise mean of `values` (any shape, float) over all ranks, on values' device.
    Returns `values` itself when not distributed."""
    if not is_distributed():
        return values
    buffer = values.detach().to(_comm_device(), torch.float64, copy=True)
    dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
    return (buffer / world_size()).to(values.device, values.dtype)


def broadcast(tensor: Tensor | None, src: int = 0) -> Tensor:
    """Rank `src`'s tensor on every rank (shape, dtype and values), on the CPU.

    Only `src` needs to pass a tensor; the others may pass None. Not distributed: `tensor`.
    """
    if not is_distributed():
        if tensor is None:
            raise ValueError("broadcast: the source rank should pass a tensor, got None")
        return tensor
    device = _comm_device()
    holder: list[object] = [None]
    if rank() == src:
        if tensor is None:
            raise ValueError("broadcast: the source rank should pass a tensor, got None")
        holder = [(tuple(tensor.shape), tensor.dtype)]
    dist.broadcast_object_list(holder, src=src, device=device)
    shape, dtype = holder[0]  # type: ignore[misc]
    if rank() == src:
        buffer = tensor.detach().to(device, copy=True).contiguous()  # type: ignore[union-attr]
    else:
        buffer = torch.empty(shape, dtype=dtype, device=device)
    dist.broadcast(buffer, src=src)
    return buffer.cpu()


def _shard_sizes(total: int) -> list[int]:
    """Rows per rank of `shard_rows`: balanced, the first total % W ranks one row more."""
    base, extra = divmod(total, world_size())
    return [base + (r < extra) for r in range(world_size())]


def shard_rows(total: int) -> Tensor:
    """This rank's contiguous share of the row ids 0..total-1: int64 [floor or ceil(total / W)],
    non-empty when total >= W."""
    sizes = _shard_sizes(total)
    start = sum(sizes[: rank()])
    return torch.arange(start, start + sizes[rank()])


def all_gather_rows(part: Tensor, total: int) -> Tensor:
    """Concatenate every rank's `shard_rows` share [n_r, ...] in rank order into [total, ...]
    on every rank (on part's device). Every share must be non-empty (total >= W), with the same
    trailing shape and dtype. Returns `part` when not distributed.
    """
    if not is_distributed():
        return part
    sizes = _shard_sizes(total)
    device = _comm_device()
    # The collective needs one shape on every rank: pad each share to the largest.
    padded = torch.zeros((max(sizes), *part.shape[1:]), dtype=part.dtype, device=device)
    padded[: part.shape[0]] = part.to(device)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([gathered[:size] for gathered, size in zip(parts, sizes)]).to(part.device)


def broadcast_buffers(module: nn.Module, src: int = 0) -> None:
    """Copy rank `src`'s buffers (BatchNorm running statistics) into every rank's `module`."""
    if not is_distributed():
        return
    device = _comm_device()
    for buffer in module.buffers():
        staged = buffer.detach().to(device, copy=True)
        dist.broadcast(staged, src=src)
        buffer.copy_(staged)
