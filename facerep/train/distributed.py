"""Multi-process training under `torchrun`: process group setup and the few collectives we use.

`torchrun --nproc_per_node=N -m facerep pretrain ...` sets RANK, WORLD_SIZE and LOCAL_RANK; the
trainer then wraps the model in DistributedDataParallel (gloo on CPU, nccl on GPU). Without those
variables everything here is a no-op and the same code runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1

    @property
    def rows(self) -> slice:
        """This process's rows of a global batch: its `DistributedSampler` shard interleaves."""
        return slice(self.rank, None, self.size)

    @property
    def is_main(self) -> bool:
        """Only the main process writes checkpoints, logs and figures."""
        return self.rank == 0


def init_distributed(device: torch.device) -> World:
    """Join the process group torchrun describes in the environment, or run alone."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return World(dist.get_rank(), dist.get_world_size())


def training_device() -> torch.device:
    """CUDA (this process's GPU under torchrun: LOCAL_RANK) when present, else the CPU."""
    if torch.cuda.is_available():
        index = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def data_parallel(model: nn.Module, world: World) -> nn.Module:
    """`model` under DistributedDataParallel on a process group of its own (alone: `model`).

    DDP never lets go of its group, even after `destroy_process_group`, so that group's gloo
    threads live on into interpreter shutdown, where releasing a finished collective's
    Python-owned tensors aborts the process ("terminate called without an active exception").
    DDP's bucket tensors are C++-only; the trainer's own collectives use the default group,
    which `shutdown` really tears down (its threads joined) before the process exits. Keep it
    so: no Python comm hooks or other Python tensors on DDP's group.
    """
    if world.size == 1:
        return model
    return DistributedDataParallel(model, process_group=dist.new_group())


def mean_across(value: torch.Tensor, world: World) -> torch.Tensor:
    """The mean of a scalar over all processes (the loss every process logs and checks)."""
    if world.size == 1:
        return value.detach()
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / world.size


def gather_interleaved(rows: torch.Tensor, world: World) -> torch.Tensor:
    """Rebuild the global batch from every process's rows, in global order.

    Process r holds the global rows r, r + W, r + 2W, ... (its `DistributedSampler` shard), so
    the gathered `[W, B, ...]` is interleaved back to `[W * B, ...]`.
    """
    if world.size == 1:
        return rows
    parts = [torch.empty_like(rows) for _ in range(world.size)]
    dist.all_gather(parts, rows.contiguous())
    return torch.stack(parts, dim=1).reshape(-1, *rows.shape[1:])


def max_parameter_spread(model: torch.nn.Module, world: World) -> float:
    """Largest difference of any parameter between processes (0.0 when they agree)."""
    if world.size == 1:
        return 0.0
    flat = torch.cat([p.detach().float().reshape(-1) for p in model.parameters()])
    high, low = flat.clone(), flat.clone()
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    return float((high - low).abs().max())


def barrier(world: World) -> None:
    """Wait until every process gets here."""
    if world.size > 1:
        dist.barrier()


def shutdown(world: World) -> None:
    """Leave the process group."""
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()
