"""``fit`` under ``torchrun``: which process am I, and how the ranks agree.

``torchrun --nproc_per_node=N -m musicvae_course.train ...`` starts N copies
of the same command and sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a
plain ``python -m`` run sets none and is world size 1. The backend is NCCL
on CUDA and gloo otherwise (CPU, e.g. the two-process test).

Sharding: each epoch has one permutation of the training set, derived from
(seed, epoch); rank ``r`` takes every ``world_size``-th index starting at ``r``,
cut to the same length on every rank so all ranks run the same number of
steps (DDP needs that). ``batch_size`` stays the *global* batch: each rank
uses ``batch_size // world_size`` segments per step and DDP averages the
gradients.

BatchNorm: the encoder's and decoder's BatchNorm layers normalise with each
rank's own batch statistics (no SyncBatchNorm: at the card's batch of 256
and a handful of GPUs each rank still sees 32 or more segments, and
SyncBatchNorm adds a collective to every layer). DDP broadcasts rank 0's
running statistics at every forward pass, but each rank's last steps update
its own copy; so at the end of every epoch ``average_buffers`` averages the
running statistics over ranks: validation, checkpoints and the returned model
then agree on every rank, and the estimates use every rank's data. Not taught in the notebooks (a note in
``notebooks/03_fine_tuning_on_a_subset.ipynb`` points here).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """This process's place among the training processes (world size 1 without torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) writes files and shows progress."""
        return self.rank == 0


def context_from_env() -> DistributedContext:
    """Read ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` as set by ``torchrun``."""
    try:
        return DistributedContext(
            rank=int(os.environ.get("RANK", 0)),
            world_size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
        )
    except ValueError as err:
        raise ValueError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers: {err}") from None


def start(context: DistributedContext, device: torch.device) -> bool:
    """Join the process group if running under torchrun and not joined yet.

    Returns True if this call created the group (so the caller should end it).
    """
    if not context.enabled or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, rank=context.rank, world_size=context.world_size)
    return True


def stop(created: bool) -> None:
    """Leave the process group if ``start`` created it."""
    if created and dist.is_initialized():
        dist.destroy_process_group()


def shard(indices: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """This rank's equal share of ``indices`` (a 1-D tensor): every world_size-th item."""
    per_rank = len(indices) // context.world_size
    if context.enabled and per_rank == 0:
        raise ValueError(f"{len(indices)} segments cannot be shared among {context.world_size} processes")
    return indices[context.rank :: context.world_size][:per_rank]


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum ``tensor`` over ranks, in place; a no-op in a single process."""
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any rank (e.g. a time budget ran out)."""
    if not context.enabled:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def wrap(module: torch.nn.Module, context: DistributedContext, device: torch.device):
    """``module`` wrapped in DistributedDataParallel under torchrun, else unchanged."""
    if not context.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=device_ids)  # buffers synced each forward


def average_buffers(module: torch.nn.Module, context: DistributedContext) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, in place."""
    if not context.enabled:
        return
    for buffer in module.buffers():
        if buffer.is_floating_point():
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
            buffer /= context.world_size
