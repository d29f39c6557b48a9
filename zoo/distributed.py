"""The torchrun process group of a placement, for evaluation and training alike.

:func:`joined` joins the group as NCCL needs it (the rank's GPU set first and
passed as ``device_id``), adds a gloo group for collectives of Python objects
(which are CPU data), and leaves the group it created when the block ends;
nested calls share the outer group. For one process every collective is a no-op.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from typing import Any, Iterator

import torch

from .devices import Placement, use_device

# How long a rank waits for the others at a barrier or gather of Python objects: an evaluation rank may
# wait there for the slowest chunk of an attack stage. torchrun ends every rank when one fails.
OBJECT_TIMEOUT = datetime.timedelta(hours=2)


@dataclasses.dataclass
class Group:
    """The process group of this process: collectives that are no-ops for one process."""

    where: Placement
    objects: Any = None   # the gloo group for Python objects (None: the default group is gloo)

    @property
    def rank(self) -> int:
        return self.where.world.rank

    @property
    def world_size(self) -> int:
        return self.where.world.world_size

    @property
    def enabled(self) -> bool:
        return self.where.world.distributed

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (over the CPU group: no GPU memory involved)."""
        if self.enabled:
            torch.distributed.barrier(group=self.objects)

    def all_gather_object(self, obj: Any) -> list:
        """Every process's ``obj``, in rank order (over the CPU group)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj, group=self.objects)
        return out

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a tensor on this process's device over all processes, in place."""
        if self.enabled:
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
        return t

    def broadcast_from_main(self, tensors) -> None:
        """Give every process rank 0's values of ``tensors`` (on this process's device)."""
        if self.enabled:
            for t in tensors:
                torch.distributed.broadcast(t, src=0)


_OBJECT_GROUPS: dict[int, Any] = {}


@contextlib.contextmanager
def joined(where: Placement) -> Iterator[Group]:
    """Join the torchrun process group for the block (a no-op group for one process).

    On CUDA the rank's GPU becomes the current device before NCCL starts, and
    is passed as ``device_id``. A group this call created is destroyed at the
    end; one that existed already (an outer ``joined``) is shared.
    """
    use_device(where.device)
    if not where.world.distributed:
        yield Group(where)
        return
    import torch.distributed as dist

    created = not dist.is_initialized()
    if created:
        kwargs: dict[str, Any] = {"device_id": torch.device(where.device)} if where.is_cuda else {}
        if not where.is_cuda:
            kwargs["timeout"] = OBJECT_TIMEOUT
        dist.init_process_group(where.backend, **kwargs)
    key = id(dist.group.WORLD)
    if where.is_cuda and key not in _OBJECT_GROUPS:
        _OBJECT_GROUPS[key] = dist.new_group(backend="gloo", timeout=OBJECT_TIMEOUT)
    try:
        yield Group(where, _OBJECT_GROUPS.get(key))
    finally:
        if created:
            _OBJECT_GROUPS.pop(key, None)
            dist.destroy_process_group()
