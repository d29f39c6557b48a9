"""Where an evaluation runs and with which numerics: device, local workers, layout and precision.

The numerics are chosen per evaluation and recorded in its provenance. The
default keeps per-example results identical to plain fp32 AutoAttack in the
tests (channels_last weights for convolutional models); ``exact`` turns every
layout or precision change off. On CUDA the harness sets cuDNN's TF32 and
benchmark flags explicitly instead of inheriting whatever the process had.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
from typing import Iterator

import torch
import torch.nn as nn

from zoo.errors import ConfigError


def resolve_device(device: str | None) -> str:
    """Check a device string (``cpu``, ``cuda``, ``cuda:N``); ``None`` means cuda when available, else cpu."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    text = str(device).strip()
    try:
        parsed = torch.device(text)
    except RuntimeError:
        raise ConfigError(f"unknown device '{text}'; use cpu, cuda or cuda:N") from None
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type != "cuda":
        raise ConfigError(f"device '{text}' is not supported by the harness; use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        why = "no GPU was found" if torch.version.cuda else f"torch {torch.__version__} is built without CUDA"
        raise ConfigError(f"--device {text}: CUDA is not available on this machine ({why}); use --device cpu")
    count = torch.cuda.device_count()
    if parsed.index is not None and parsed.index >= count:
        raise ConfigError(f"--device {text} does not exist: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    return str(parsed)


def cpu_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_devices(requested: int | None, device: str, n_batches: int, batch_size: int, n_examples: int,
                   under_torchrun: bool) -> list[str]:
    """The device of each local worker process (one entry: evaluate in this process).

    ``requested=None`` means one worker per core on CPU and one per GPU on
    ``cuda``, never more than there are batches.
    """
    if requested is not None and requested < 1:
        raise ConfigError(f"--workers must be at least 1, got {requested}")
    if under_torchrun:
        if requested is not None and requested > 1:
            raise ConfigError("--workers cannot be combined with torchrun: torchrun already starts one process per "
                              "--nproc-per-node; drop --workers")
        return [device]
    if requested is not None and requested > n_batches:
        raise ConfigError(f"--workers {requested} is more than the {n_batches} batch(es) to evaluate ({n_examples} "
                          f"examples, --batch-size {batch_size}); use at most {n_batches} workers or a smaller --batch-size")
    if device.startswith("cuda"):
        gpus = [device] if ":" in device else [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        count = requested or len(gpus)
        return [gpus[i % len(gpus)] for i in range(min(count, n_batches))]
    return [device] * min(requested or cpu_cores(), n_batches)


def threads_per_worker(workers: int) -> int | None:
    """Threads of each worker process (None: a single in-process run keeps torch's default)."""
    return max(1, cpu_cores() // workers) if workers > 1 else None


def is_convolutional(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


@dataclasses.dataclass(frozen=True)
class Numerics:
    """Layout and precision of an evaluation (the CUDA flags apply on CUDA devices only)."""

    exact: bool
    channels_last: bool      # model weights in channels_last (inputs stay NCHW: AutoAttack .view()s them)
    cudnn_tf32: bool         # torch.backends.cudnn.allow_tf32
    matmul_tf32: bool        # torch.backends.cuda.matmul.allow_tf32
    cudnn_benchmark: bool    # torch.backends.cudnn.benchmark


def choose_numerics(model: nn.Module, exact: bool = False, channels_last: bool | None = None,
                    tf32: bool | None = None, cudnn_benchmark: bool | None = None) -> Numerics:
    """Resolve the layout/precision options; ``None`` means the default.

    Defaults: channels_last for convolutional models; TF32 as PyTorch sets it
    out of the box (cuDNN convolutions on, matmuls off), now explicit; no
    cuDNN benchmark (its timing-based algorithm choice makes runs differ).
    ``exact`` turns all of them off and refuses options that turn one on.
    """
    if exact:
        given = [flag for flag, value in (("--channels-last", channels_last), ("--tf32", tf32),
                                          ("--cudnn-benchmark", cudnn_benchmark)) if value]
        if given:
            raise ConfigError(f"--exact turns every layout and precision change off; it cannot be combined with "
                              f"{', '.join(given)} (drop one of them)")
        return Numerics(True, False, False, False, False)
    return Numerics(False, is_convolutional(model) if channels_last is None else bool(channels_last),
                    True if tf32 is None else bool(tf32), False if tf32 is None else bool(tf32),
                    bool(cudnn_benchmark))


@contextlib.contextmanager
def applied(numerics: Numerics) -> Iterator[None]:
    """Set the backend flags of ``numerics`` for the duration of the block, then restore them."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark)
    cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = (numerics.cudnn_tf32, numerics.matmul_tf32,
                                                            numerics.cudnn_benchmark)
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark = saved


@contextlib.contextmanager
def placed(model: nn.Module, device: str, numerics: Numerics) -> Iterator[nn.Module]:
    """The model on ``device`` in the layout of ``numerics``, with its flags set; the layout is restored after."""
    model = model.to(device)
    converted = numerics.channels_last and any(
        p.dim() == 4 and p.is_contiguous() for p in model.parameters())
    if converted:
        model.to(memory_format=torch.channels_last)
    try:
        with applied(numerics):
            yield model
    finally:
        if converted:
            model.to(memory_format=torch.contiguous_format)


def device_label(device: str, workers: list[str], threads: int | None) -> str:
    """A readable description of where the evaluation ran, for the provenance."""
    if device.startswith("cuda"):
        names = sorted({f"{d} ({torch.cuda.get_device_name(torch.device(d))})" for d in workers})
        label = ", ".join(names)
    else:
        label = f"cpu ({platform.processor() or platform.machine()}"
        label += f", {threads if threads else torch.get_num_threads()} thread(s)"
        label += " each)" if len(workers) > 1 else ")"
    return label + (f" x{len(workers)} worker processes" if len(workers) > 1 else "")
