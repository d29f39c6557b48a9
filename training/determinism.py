"""Deterministic algorithms for the duration of a training run, and the process as it was afterwards.

``torch.use_deterministic_algorithms`` and the cuDNN flags are process-wide: set
by a run and left on, they would slow down and change whatever the process does
next (the AutoAttack evaluation of ``score-train --register``, a notebook's next
cell). :func:`deterministic_training` sets them on entry and restores the
previous values (flag, ``warn_only``, ``cudnn.deterministic``, ``cudnn.benchmark``)
on exit, also when the run raises.

On CUDA, cuBLAS is deterministic only with ``CUBLAS_WORKSPACE_CONFIG`` set to
``:4096:8`` or ``:16:8`` before CUDA initialises. It is set here when it is not
set and CUDA is not initialised yet (it then stays set: cuBLAS reads it once);
otherwise a warning says, once per process, that cuBLAS results may vary.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
CUBLAS_DETERMINISTIC = (":4096:8", ":16:8")
CUBLAS_DEFAULT = ":4096:8"

_warned_cublas = False


class DeterminismWarning(UserWarning):
    """A deterministic run cannot be made fully deterministic on this device."""


def cublas_action(value: str | None, cuda_initialized: bool) -> str:
    """What a deterministic CUDA run does about cuBLAS: ``ok`` (already deterministic), ``set`` (set the
    variable now) or ``warn`` (too late: CUDA is initialised, or the variable holds another value)."""
    if value in CUBLAS_DETERMINISTIC:
        return "ok"
    return "set" if value is None and not cuda_initialized else "warn"


def _cublas(enabled: bool, cuda: bool) -> dict:
    """Make cuBLAS deterministic if still possible; return what holds (None: not a deterministic CUDA run)."""
    global _warned_cublas
    value = os.environ.get(CUBLAS_ENV)
    if not (enabled and cuda):
        return {"cublas_workspace_config": value, "cublas_deterministic": None}
    action = cublas_action(value, torch.cuda.is_initialized())
    if action == "set":
        os.environ[CUBLAS_ENV] = value = CUBLAS_DEFAULT
    elif action == "warn" and not _warned_cublas:
        _warned_cublas = True
        why = (f"{CUBLAS_ENV}={value!r}" if value is not None
               else f"{CUBLAS_ENV} is not set and CUDA was initialised before training started")
        warnings.warn(f"cuBLAS determinism is not guaranteed: {why}; export {CUBLAS_ENV}={CUBLAS_DEFAULT} "
                      "before starting Python for bit-identical CUDA runs", DeterminismWarning, stacklevel=4)
    return {"cublas_workspace_config": value, "cublas_deterministic": action != "warn"}


def _state() -> tuple[bool, bool, bool, bool]:
    cudnn = torch.backends.cudnn
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn.deterministic, cudnn.benchmark)


def _set(state: tuple[bool, bool, bool, bool]) -> None:
    enabled, warn_only, cudnn_deterministic, cudnn_benchmark = state
    torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
    torch.backends.cudnn.deterministic = cudnn_deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark


@contextlib.contextmanager
def deterministic_training(enabled: bool, cuda: bool) -> Iterator[dict]:
    """Deterministic algorithms while the block runs (when ``enabled``), the previous process state after it;
    yields what is in force, for the run's record (run_info.json).

    ``cuda``: the run will use a GPU. Enter before anything initialises CUDA (device selection included),
    so that cuBLAS can still be made deterministic.
    """
    before = _state()
    try:
        if enabled:
            # warn_only (unless the process already asked for errors): an op without a deterministic
            # implementation warns instead of stopping a long run
            _set((True, before[1] if before[0] else True, True, False))
        names = ("deterministic_algorithms", "warn_only", "cudnn_deterministic", "cudnn_benchmark")
        yield {"requested": enabled, **dict(zip(names, _state())), **_cublas(enabled, cuda)}
    finally:
        _set(before)
