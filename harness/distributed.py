"""Splitting work across processes: --shard K/N and torchrun ranks."""

from __future__ import annotations

import os
import re

import torch

from zoo.errors import ConfigError


def parse_shard(shard: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """Parse ``"K/N"`` (K counted from 0) into ``(K, N)``."""
    if shard is None:
        return None
    if isinstance(shard, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", shard)
        if not m:
            raise ConfigError(f"cannot parse --shard '{shard}'; write K/N with 0 <= K < N, e.g. 0/4")
        shard = (int(m.group(1)), int(m.group(2)))
    k, n = shard
    if n < 1 or not 0 <= k < n:
        raise ConfigError(f"--shard {k}/{n} is out of range; K counts from 0 to N-1")
    return k, n


def shard_batches(n_batches: int, shard: tuple[int, int] | None) -> range:
    """The contiguous, deterministic run of batch indices that shard K of N evaluates."""
    if shard is None:
        return range(n_batches)
    k, n = shard
    return range(k * n_batches // n, (k + 1) * n_batches // n)


def torchrun_world() -> tuple[int, int] | None:
    """``(rank, world_size)`` when launched by torchrun with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0")), world


def init_process_group(device: str) -> None:
    """Join the torchrun process group (nccl on GPUs, gloo on CPU)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")


def rank_device(device: str) -> str:
    """On GPUs each rank takes the device of its LOCAL_RANK."""
    if str(device) == "cuda" and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return str(device)


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def all_gather(obj) -> list:
    """Every rank's ``obj``, in rank order."""
    import torch.distributed as dist

    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
