"""Image passes counted at a model's forward: the unit of an evaluation's cost.

:func:`counting_passes` hooks a module's forward for the duration of a block.
Every call adds its batch size (images, not calls) to ``forward`` when gradients
are off or ``forward_grad`` when they are on; when the output requires grad, a
hook on it adds the same number to ``backward`` each time a backward pass
reaches it (so FAB's one backward per class counts once per class). What runs
inside ``meter.part(name)`` is counted, and timed, under ``name``; the rest
under the meter's default part.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

import torch
import torch.nn as nn

from zoo.errors import ConfigError

KINDS = ("forward", "forward_grad", "backward")


def no_passes() -> dict:
    """Zero passes and seconds: the identity of :func:`add_passes`."""
    return {**dict.fromkeys(KINDS, 0), "seconds": 0.0}


def add_passes(a: dict, b: dict) -> dict:
    """Two counts (passes and seconds) added."""
    return {**{k: a[k] + b[k] for k in KINDS}, "seconds": round(a["seconds"] + b["seconds"], 3)}


def _images(args: tuple, output) -> int:
    """The batch size of one forward call: its first tensor argument's, else its output's."""
    first = next((a for a in args if isinstance(a, torch.Tensor)), output)
    return int(first.shape[0]) if isinstance(first, torch.Tensor) and first.ndim else 1


class Meter:
    """Image passes and seconds per part of the work (see the module docstring)."""

    def __init__(self, default: str):
        self.current = default
        self.default = default
        self.started = time.perf_counter()
        self.stopped: float | None = None
        self.counts: dict[str, dict] = {default: no_passes()}

    def _add(self, part: str, kind: str, n: float) -> None:
        self.counts.setdefault(part, no_passes())[kind] += n

    def hook(self, module: nn.Module, args: tuple, output) -> None:
        """The forward hook: count the call's images, and its backward when one reaches the output."""
        n, part = _images(args, output), self.current
        self._add(part, "forward_grad" if torch.is_grad_enabled() else "forward", n)
        if isinstance(output, torch.Tensor) and output.requires_grad:
            output.register_hook(lambda grad: self._add(part, "backward", n))

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Count and time what runs inside under ``name`` (parts do not nest)."""
        outer, self.current = self.current, name
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.current = outer
            self._add(name, "seconds", time.perf_counter() - t0)

    def parts(self) -> dict[str, dict]:
        """{part: passes and seconds}; the default part's seconds are the meter's time less the other parts'."""
        out = {name: {**c, "seconds": round(c["seconds"], 3)} for name, c in self.counts.items()}
        others = sum(c["seconds"] for name, c in self.counts.items() if name != self.default)
        elapsed = (self.stopped or time.perf_counter()) - self.started
        out[self.default]["seconds"] = round(elapsed - others, 3)
        return out


@contextlib.contextmanager
def counting_passes(model: nn.Module, default: str = "passes") -> Iterator[Meter]:
    """Count the image passes of ``model`` inside the block (see the module docstring)."""
    if isinstance(model, torch.jit.ScriptModule):
        raise ConfigError("the harness counts image passes at the model's forward, which a TorchScript module does "
                          "not let it hook; wrap it in an nn.Module whose forward calls it")
    meter = Meter(default)
    handle = model.register_forward_hook(meter.hook)
    try:
        yield meter
    finally:
        handle.remove()
        meter.stopped = time.perf_counter()
