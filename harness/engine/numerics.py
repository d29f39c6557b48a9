"""Layout and precision of an evaluation, chosen per run, applied for its duration and recorded.

What the settings mean, precisely:

- The default equals bare pyautoattack on the same model in the same layout under
  PyTorch's out-of-the-box flags: weights in channels_last for convolutional
  models, TF32 for cuDNN convolutions on CUDA (PyTorch's own default), none for
  matmuls, no cuDNN benchmark. On CPU TF32 does not exist; on a GPU TF32 changes
  the logits in the third decimal, which can flip examples near the decision
  boundary against a plain fp32 run.
- ``exact`` is plain fp32: NCHW weights, TF32 off for convolutions and matmuls,
  deterministic cuDNN without benchmark; it equals bare pyautoattack under those
  flags. The flags of a run are recorded in its result (``numerics``).

The CUDA flags are set through the per-backend ``fp32_precision`` settings
where this torch has them (2.9 and newer: reading the legacy ``allow_tf32``
after the new API was used raises there), else through ``allow_tf32``; every
flag is restored afterwards, and so are the caller's model device and layout.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import torch
import torch.nn as nn

from zoo.errors import ConfigError


def is_convolutional(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


@dataclasses.dataclass(frozen=True)
class Numerics:
    """Layout and precision of an evaluation (the CUDA flags apply on CUDA devices only)."""

    exact: bool
    channels_last: bool        # model weights in channels_last (inputs stay NCHW: AutoAttack .view()s them)
    cudnn_tf32: bool           # TF32 in cuDNN convolutions
    matmul_tf32: bool          # TF32 in cuBLAS matmuls
    cudnn_benchmark: bool      # torch.backends.cudnn.benchmark
    cudnn_deterministic: bool = False  # torch.backends.cudnn.deterministic


def choose_numerics(model: nn.Module, exact: bool = False, channels_last: bool | None = None,
                    tf32: bool | None = None, cudnn_benchmark: bool | None = None) -> Numerics:
    """Resolve the layout/precision options; ``None`` means the default (see the module docstring).

    ``exact`` turns every change off and refuses options that turn one on.
    """
    if exact:
        given = [flag for flag, value in (("--channels-last", channels_last), ("--tf32", tf32),
                                          ("--cudnn-benchmark", cudnn_benchmark)) if value]
        if given:
            raise ConfigError(f"--exact turns every layout and precision change off; it cannot be combined with "
                              f"{', '.join(given)} (drop one of them)")
        return Numerics(True, False, False, False, False, True)
    return Numerics(False, is_convolutional(model) if channels_last is None else bool(channels_last),
                    True if tf32 is None else bool(tf32), False if tf32 is None else bool(tf32),
                    bool(cudnn_benchmark), False)


def numerics_from_record(record: dict) -> dict:
    """The ``choose_numerics`` options that reproduce a recorded ``numerics`` object."""
    if not record:
        return {}
    if record.get("exact"):
        return {"exact": True}
    return {"channels_last": record.get("channels_last"), "tf32": record.get("cudnn_tf32"),
            "cudnn_benchmark": record.get("cudnn_benchmark")}


def _new_api() -> bool:
    return hasattr(torch.backends.cuda.matmul, "fp32_precision") and hasattr(torch.backends.cudnn, "conv")


def _get_flags() -> tuple:
    cudnn = torch.backends.cudnn
    if _new_api():
        tf32 = (cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision)
    else:
        tf32 = (cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    return (*tf32, cudnn.benchmark, cudnn.deterministic)


def _set_flags(flags: tuple) -> None:
    cudnn = torch.backends.cudnn
    conv, matmul, cudnn.benchmark, cudnn.deterministic = flags
    if _new_api():
        cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul
    else:
        cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul


def flags_of(numerics: Numerics) -> tuple:
    """The backend flag values that ``numerics`` asks for, in this torch's API."""
    if _new_api():
        precision = {True: "tf32", False: "ieee"}
        return (precision[numerics.cudnn_tf32], precision[numerics.matmul_tf32], numerics.cudnn_benchmark,
                numerics.cudnn_deterministic)
    return numerics.cudnn_tf32, numerics.matmul_tf32, numerics.cudnn_benchmark, numerics.cudnn_deterministic


@contextlib.contextmanager
def applied(numerics: Numerics) -> Iterator[None]:
    """Set the backend flags of ``numerics`` for the duration of the block, then restore them."""
    saved = _get_flags()
    _set_flags(flags_of(numerics))
    try:
        yield
    finally:
        _set_flags(saved)


def _where(model: nn.Module) -> torch.device | None:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return None


@contextlib.contextmanager
def placed(model: nn.Module, device: str, numerics: Numerics) -> Iterator[nn.Module]:
    """The model on ``device`` in the layout of ``numerics`` with its flags set; device and layout restored after."""
    home = _where(model)
    model = model.to(device)
    converted = numerics.channels_last and any(p.dim() == 4 and p.is_contiguous() for p in model.parameters())
    if converted:
        model.to(memory_format=torch.channels_last)
    try:
        with applied(numerics):
            yield model
    finally:
        if converted:
            model.to(memory_format=torch.contiguous_format)
        if home is not None:
            model.to(home)
