"""Numerics of a training run: bf16 autocast and the channels_last layout, on CPU as on CUDA.

bf16 autocast covers the forward passes (attack and loss); losses and
softmax are computed in fp32 from the logits, and the weights, EMA and
optimizer state stay fp32. A CPU without native bf16 instructions
(AVX512-BF16 or AMX-BF16) would emulate it about 10x slower than fp32, so
there the run falls back to fp32 with one warning unless ``bf16_emulate``
asks for the emulation (to check bf16 numerics on such a machine).
"""

from __future__ import annotations

import contextlib
import platform
import warnings
from pathlib import Path

import torch

_NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bf16 instructions (``avx512_bf16`` or ``amx_bf16`` among its flags)."""
    path = Path(cpuinfo)
    if platform.system() == "Linux" and path.is_file():
        flags = set()
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags.update(line.partition(":")[2].split())
        return any(f in flags for f in _NATIVE_BF16_FLAGS)
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cuda_native_bf16(capability: tuple[int, int]) -> bool:
    """Whether a GPU of this compute capability has bf16 tensor cores (8.0, Ampere, and newer).

    ``torch.cuda.is_bf16_supported()`` also counts emulated bf16 (a T4 or V100
    says yes), and asks about the current device rather than the run's.
    """
    return tuple(capability) >= (8, 0)


def use_bf16(requested: bool, device: torch.device, cpuinfo: str | Path = "/proc/cpuinfo",
             emulate: bool = False) -> bool:
    """Resolve a recipe's ``bf16``: True where the run's device computes bf16 natively; else False with one warning.

    ``emulate`` keeps bf16 on a CPU without native support (slow, same numerics: for checking bf16 runs
    on such a machine).
    """
    if not requested:
        return False
    if emulate and device.type == "cpu":
        return True
    if device.type == "cuda":
        native = cuda_native_bf16(torch.cuda.get_device_capability(device))
    else:
        native = cpu_has_native_bf16(cpuinfo)
    if not native:
        warnings.warn(f"bf16 requested but {device.type} has no native bf16 support; training in fp32", stacklevel=2)
    return native


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """A bf16 autocast context on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def memory_format(channels_last: bool) -> torch.memory_format:
    """The layout of the model and its input batches."""
    return torch.channels_last if channels_last else torch.contiguous_format
