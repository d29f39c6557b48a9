"""BPDA (Athalye et al., 2018): attack through non-differentiable modules with a substitute backward.

``with bpda_modules(model, ["Quantize", "features.3"]):`` replaces, for every
module named (by its module path, as ``named_modules`` spells it, or by its class
name), the backward pass by the identity (straight-through: the gradient reaches
the module's input as if the module were not there; input and output shapes
must match) or, given ``{"Quantize": approx}``, by the gradient of a
differentiable approximation: ``approx(module)`` returns a function of the
module's input used for the backward only. The forward value is always the
module's exact output, so accuracies measured inside the context are exact;
only gradients change. Forward hooks do it, so any ``nn.Module`` works without
edits; they are removed on exit. Under ``torch.no_grad()`` the hooks do nothing.
The harness enters the context around the attacks only (clean passes and checks
stay outside it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn as nn

from zoo.errors import ConfigError, close_matches_hint

Approximation = Callable[[nn.Module], Callable[[torch.Tensor], torch.Tensor]]
BPDA_FOOTNOTE = "robust accuracy is due to APGD with BPDA"


class _Substitute(torch.autograd.Function):
    """Forward: ``exact`` (bit for bit); backward: the gradient goes to ``surrogate``."""

    @staticmethod
    def forward(ctx, surrogate, exact):
        return exact.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _listing(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def find_modules(model: nn.Module, names: Iterable[str]) -> dict[str, list[tuple[str, nn.Module]]]:
    """Per name, the (path, module) pairs it matches: its module path, or every module of that class name."""
    named = [(path, module) for path, module in model.named_modules() if path]
    found = {}
    for name in names:
        hits = [(p, m) for p, m in named if p == name or type(m).__name__ == name]
        if not hits:
            classes = sorted({type(m).__name__ for _, m in named})
            paths = [p for p, _ in named]
            raise ConfigError(f"BPDA: '{name}' matches no module of the model (--bpda takes a module path or a "
                              f"class name).{close_matches_hint(name, classes + paths)} Class names: {_listing(classes)}; module paths: {_listing(paths)}")
        found[name] = hits
    return found


def _hook(path: str, approx: Callable[[torch.Tensor], torch.Tensor] | None):
    def hook(module, args, output):
        if not torch.is_grad_enabled():
            return None
        if not args or not isinstance(args[0], torch.Tensor) or not isinstance(output, torch.Tensor):
            raise ConfigError(f"BPDA needs module '{path}' ({type(module).__name__}) to take a tensor as its first "
                              "argument and return a tensor")
        x = args[0]
        surrogate = approx(x) if approx is not None else x
        if surrogate.shape != output.shape:
            what = "its approximation returns" if approx is not None else "it takes"
            raise ConfigError(f"BPDA cannot stand in for module '{path}' ({type(module).__name__}): it returns shape "
                              f"{tuple(output.shape)} but {what} {tuple(surrogate.shape)}; the identity needs equal "
                              "shapes, so give a differentiable approximation (Python API) or name another module")
        return _Substitute.apply(surrogate, output.detach())
    return hook


@contextlib.contextmanager
def bpda_modules(model: nn.Module, names: Iterable[str] | Mapping[str, Approximation | None]):
    """Context: BPDA on the modules ``names`` matches (see the module docstring); yields the matched paths.

    ``names`` is a list of module paths or class names (identity backward), or a
    mapping from such names to an approximation factory ``module -> function``
    (None: identity). A name that matches nothing is a ConfigError listing what exists.
    """
    if isinstance(names, str):
        names = [names]
    plan = dict(names) if isinstance(names, Mapping) else {n: None for n in names}
    handles, paths = [], []
    try:
        for name, hits in find_modules(model, plan).items():
            for path, module in hits:
                approx = plan[name](module) if plan[name] is not None else None
                handles.append(module.register_forward_hook(_hook(path, approx)))
                paths.append(path)
        yield paths
    finally:
        for handle in handles:
            handle.remove()
