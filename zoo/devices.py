"""Where a process computes, for every command: one device parser and torchrun placement.

Every decision is a pure function of (requested device, RANK, LOCAL_RANK,
WORLD_SIZE, visible GPU count), :func:`plan_device`, so it is tested on CPU
for every combination; :func:`placement` feeds it this process's facts.

- ``None`` means ``cuda`` where a GPU is visible, else ``cpu``.
- A bare ``cuda`` is GPU 0 in a single process (whose local workers may use
  every visible GPU) and ``cuda:LOCAL_RANK`` under torchrun.
- ``cuda:K`` under torchrun with more than one process is refused: it would put
  every rank on GPU K. Choose GPUs with ``CUDA_VISIBLE_DEVICES`` instead.
- Anything but ``cpu``, ``cuda`` and ``cuda:K`` (``mps``, ``tpu``, ``cuda:7``
  on a one-GPU machine, CUDA on a machine without it) is one clear error.

The process group of a placement is ``zoo.distributed.joined``.
"""

from __future__ import annotations

import dataclasses
import os
import platform
from typing import Any, Mapping

import torch

from .errors import ConfigError

@dataclasses.dataclass(frozen=True)
class World:
    """This process's place among torchrun's processes (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "World":
        """Read RANK, LOCAL_RANK and WORLD_SIZE as torchrun sets them."""
        env = os.environ if env is None else env
        values = {}
        for key, default in (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)):
            text = env.get(key, "")
            try:
                values[key] = int(text) if text.strip() else default
            except ValueError:
                raise ConfigError(f"environment variable {key}={text!r} is not an integer; "
                                  "start the processes with torchrun") from None
        world = cls(values["RANK"], values["LOCAL_RANK"], values["WORLD_SIZE"])
        if world.world_size < 1 or not 0 <= world.rank < world.world_size or world.local_rank < 0:
            raise ConfigError(f"RANK={world.rank}, LOCAL_RANK={world.local_rank}, WORLD_SIZE={world.world_size} "
                              "do not describe a process group; start the processes with torchrun")
        return world

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where this process computes and which GPUs its local workers may use."""

    device: str                 # "cpu" or "cuda:N"
    worker_gpus: tuple[int, ...]  # GPUs for local worker processes (empty on CPU)
    world: World = World()

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @property
    def index(self) -> int | None:
        """The GPU index of ``device`` (None on CPU)."""
        return int(self.device.split(":")[1]) if self.is_cuda else None

    @property
    def backend(self) -> str | None:
        """The process-group backend: nccl between GPUs, gloo on CPU, None for one process."""
        if not self.world.distributed:
            return None
        return "nccl" if self.is_cuda else "gloo"


def parse_device(text: Any) -> tuple[str, int | None]:
    """``"cpu"`` -> ("cpu", None), ``"cuda"`` -> ("cuda", None), ``"cuda:1"`` -> ("cuda", 1); else ConfigError."""
    raw = str(text).strip()
    try:
        parsed = torch.device(raw)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device '{raw}'; use cpu, cuda or cuda:N") from None
    if parsed.type == "cpu" and parsed.index in (None, 0):
        return "cpu", None
    if parsed.type == "cuda":
        return "cuda", parsed.index
    raise ConfigError(f"device '{raw}' is not supported; use cpu, cuda or cuda:N")


def plan_device(requested: Any, world: World = World(), gpu_count: int = 0, cuda_built: bool = True) -> Placement:
    """Decide where a process computes (pure: see the module docstring for the rules)."""
    if requested is None:
        requested = "cuda" if gpu_count > 0 else "cpu"
    kind, index = parse_device(requested)
    text = str(requested).strip()
    if kind == "cpu":
        return Placement("cpu", (), world)
    if gpu_count < 1:
        why = "no GPU is visible" if cuda_built else "this torch is built without CUDA"
        raise ConfigError(f"--device {text}: CUDA is not available on this machine ({why}); use --device cpu")
    if index is not None and index >= gpu_count:
        raise ConfigError(f"--device {text} does not exist: this machine has {gpu_count} GPU(s), "
                          f"cuda:0 to cuda:{gpu_count - 1}")
    if world.distributed:
        if index is not None:
            raise ConfigError(f"--device {text} under torchrun would put all {world.world_size} processes on GPU "
                              f"{index}; pass --device cuda (each process takes cuda:LOCAL_RANK) and choose the "
                              "GPUs with CUDA_VISIBLE_DEVICES")
        if world.local_rank >= gpu_count:
            raise ConfigError(f"torchrun started local rank {world.local_rank}, but this machine has {gpu_count} "
                              f"GPU(s); use --nproc-per-node {gpu_count} or fewer")
        return Placement(f"cuda:{world.local_rank}", (world.local_rank,), world)
    if index is not None:
        return Placement(f"cuda:{index}", (index,), world)
    return Placement("cuda:0", tuple(range(gpu_count)), world)


def visible_gpus() -> int:
    """How many GPUs this process can use (0 without CUDA)."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def placement(requested: Any, env: Mapping[str, str] | None = None) -> Placement:
    """:func:`plan_device` with this process's torchrun variables and GPUs."""
    return plan_device(requested, World.from_env(env), visible_gpus(), torch.version.cuda is not None)


def resolve_device(requested: Any) -> str:
    """The device a single (non-torchrun) process computes on: ``cpu`` or ``cuda:N``."""
    return plan_device(requested, World(), visible_gpus(), torch.version.cuda is not None).device


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_devices(requested: int | None, where: Placement, n_tasks: int, cores: int) -> list[str]:
    """The device of each local worker process (one entry: work in this process).

    ``requested=None`` means one worker per core on CPU and one per usable GPU
    on CUDA, never more than there are tasks. Under torchrun the process is the
    worker. Workers on GPUs take the placement's GPUs in turn.
    """
    if requested is not None and requested < 1:
        raise ConfigError(f"--workers must be at least 1, got {requested}")
    if where.world.distributed:
        if requested is not None and requested > 1:
            raise ConfigError("--workers cannot be combined with torchrun: torchrun already starts one process per "
                              "--nproc-per-node; drop --workers")
        return [where.device]
    count = max(1, min(requested or (len(where.worker_gpus) if where.is_cuda else cores), n_tasks))
    if where.is_cuda:
        return [f"cuda:{where.worker_gpus[i % len(where.worker_gpus)]}" for i in range(count)]
    return ["cpu"] * count


def use_device(device: str) -> None:
    """Make ``device`` this process's current CUDA device (no-op on CPU)."""
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name and its widest vector extension, e.g. ``AMD EPYC (AVX512-BF16)``."""
    name, flags = "", set()
    try:
        for line in open(cpuinfo, errors="replace"):
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    name = name or platform.processor() or platform.machine()
    for flag, label in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16"), ("avx512f", "AVX-512"),
                        ("avx2", "AVX2")):
        if flag in flags:
            return f"{name} ({label})"
    return name


def describe(devices: list[str], threads: int | None = None) -> str:
    """A readable description of where work ran, GPUs named, for provenance."""
    if devices and devices[0].startswith("cuda"):
        label = ", ".join(sorted({f"{d} ({torch.cuda.get_device_name(torch.device(d))})" for d in devices}))
    else:
        label = f"cpu ({cpu_name()}"
        label += f", {threads if threads else torch.get_num_threads()} thread(s)"
        label += " each)" if len(devices) > 1 else ")"
    return label + (f" x{len(devices)} worker processes" if len(devices) > 1 else "")


def device_kind(device: str) -> str:
    """What a result computed on ``device`` depends on: ``cpu`` or the GPU's model name."""
    if device.startswith("cuda"):
        return f"cuda ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"
