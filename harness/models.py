"""Resolve a MODEL spec into a module plus what is known about it.

A spec is a zoo entry name, a model directory, ``robustbench:NAME`` (needs the
``robustbench`` extra; without it, one error line names it),
``package.module:callable`` or ``untrained:ARCH`` (a zoo architecture with its
initial weights, seed 0: a baseline for pictures and sanity checks); a
``torch.nn.Module`` is accepted as is.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from zoo.errors import ConfigError, UnknownNameError, close_matches_hint
from zoo.fileio import sha256_file, sha256_files
from zoo.checkpoints import read_weights
from zoo.model_dir import CONFIG_NAME, WEIGHTS_NAME, load_state_dict_strict, read_config
from zoo.registry import Entry

_CALLABLE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")
ROBUSTBENCH_PREFIX = "robustbench:"
UNTRAINED_PREFIX = "untrained:"


@dataclass
class ResolvedModel:
    """A model ready to evaluate and its provenance."""

    model: nn.Module
    spec: str
    kind: str                      # zoo | model-dir | robustbench | callable | untrained | module
    weights_sha256: str | None
    entry: Entry | None = None
    architecture: str = ""
    defaults: dict = field(default_factory=dict)   # dataset / threat_model / eps the model was made for


def state_dict_sha256(model: nn.Module) -> str:
    """A sha256 over the model's parameters and buffers (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def architecture_label(arch: str) -> str:
    """RobustBench's spelling of an architecture (``wrn-28-10-swish`` -> ``WideResNet-28-10``)."""
    m = re.match(r"^wrn-(\d+)-(\d+)", arch.lower())
    if m:
        return f"WideResNet-{m.group(1)}-{m.group(2)}"
    return {"preact-resnet-18": "PreActResNet-18"}.get(arch.lower(), arch)


def resolve_model(spec: str | nn.Module, dataset: str | None = None, threat_model: str | None = None,
                  weights: str | None = None, model_dir: str | None = None) -> ResolvedModel:
    """Build the model named by ``spec`` on CPU (see the module docstring for the forms)."""
    if isinstance(spec, nn.Module):
        if weights:
            _load_weights_file(spec, weights)
        return ResolvedModel(spec, type(spec).__name__, "module",
                             sha256_file(weights) if weights else state_dict_sha256(spec),
                             architecture=type(spec).__name__)
    spec = str(spec)
    if weights and not _CALLABLE.match(spec):
        raise ConfigError("--weights only applies to a package.module:callable MODEL")
    if spec.startswith(UNTRAINED_PREFIX):
        return _untrained(spec[len(UNTRAINED_PREFIX):], dataset or "cifar10")
    if spec.startswith(ROBUSTBENCH_PREFIX):
        return _robustbench(spec[len(ROBUSTBENCH_PREFIX):], dataset or "cifar10", threat_model or "Linf",
                            model_dir or "./models")
    path = Path(spec)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise ConfigError(f"{path} is not a model directory: it needs {CONFIG_NAME} and {WEIGHTS_NAME}")
        return _model_dir(path)
    if ":" in spec:
        if not _CALLABLE.match(spec):
            raise ConfigError(f"malformed model spec '{spec}'; write package.module:callable "
                              "(e.g. mypkg.models:build), robustbench:NAME, untrained:ARCH, a zoo entry name or a "
                              "model directory")
        return _callable(spec, weights)
    return _zoo_entry(spec)


def _zoo_entry(name: str) -> ResolvedModel:
    import zoo

    try:
        entry = zoo.get_entry(name)
    except UnknownNameError as e:
        raise UnknownNameError(f"{e} A MODEL may also be a model directory, robustbench:NAME or "
                               "package.module:callable.") from None
    found = zoo.locate(name)
    model = zoo.load_located(found)
    return ResolvedModel(model, name, "zoo", found.sha256 or sha256_file(found.path / WEIGHTS_NAME), entry,
                         architecture_label(entry.architecture),
                         {"dataset": entry.dataset, "threat_model": entry.threat_model, "eps": entry.eps})


def _untrained(arch: str, dataset: str) -> ResolvedModel:
    import zoo

    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = zoo.create_model(arch, dataset=dataset).eval()
    return ResolvedModel(model, f"{UNTRAINED_PREFIX}{arch}", "untrained", state_dict_sha256(model),
                         architecture=architecture_label(arch), defaults={"dataset": dataset})


def _model_dir(path: Path) -> ResolvedModel:
    from zoo.model_dir import load_model_dir

    config = read_config(path)
    model = load_model_dir(path)
    defaults = {k: config[k] for k in ("dataset", "threat_model", "eps") if config.get(k) is not None}
    return ResolvedModel(model, str(path), "model-dir", sha256_file(path / WEIGHTS_NAME),
                         architecture=architecture_label(config["architecture"]), defaults=defaults)


def _callable(spec: str, weights: str | None) -> ResolvedModel:
    module_name, attr = spec.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UnknownNameError(f"cannot import module '{module_name}' for model spec '{spec}' ({e})") from None
    if not hasattr(module, attr):
        public = [n for n in dir(module) if not n.startswith("_")]
        raise UnknownNameError(f"module '{module_name}' has no '{attr}'.{close_matches_hint(attr, public)}")
    factory = getattr(module, attr)
    if callable(factory) and not isinstance(factory, nn.Module):
        try:
            model = factory()
        except Exception as e:  # the user's builder: report its error in one line (--debug shows the traceback)
            raise ConfigError(f"building the model with '{spec}' failed: {type(e).__name__}: {e}") from e
    else:
        model = factory
    if not isinstance(model, nn.Module):
        raise ConfigError(f"'{spec}' returned {type(model).__name__}, not a torch.nn.Module")
    if weights:
        _load_weights_file(model, weights)
    return ResolvedModel(model, spec, "callable", sha256_file(weights) if weights else state_dict_sha256(model),
                         architecture=type(model).__name__)


def _load_weights_file(model: nn.Module, weights: str) -> None:
    """``--weights``: a .safetensors file or a .pt checkpoint, read as ``score-zoo import`` reads it."""
    load_state_dict_strict(model, read_weights(weights), str(weights))


def _robustbench(name: str, dataset: str, threat_model: str, model_dir: str) -> ResolvedModel:
    from zoo.robustbench.loader import robustbench_load

    model, checkpoints = robustbench_load(name, model_dir, dataset, threat_model,
                                          purpose=f"the model spec {ROBUSTBENCH_PREFIX}{name}")
    return ResolvedModel(model, f"{ROBUSTBENCH_PREFIX}{name}", "robustbench", sha256_files(checkpoints),
                         architecture=type(model).__name__,
                         defaults={"dataset": dataset, "threat_model": threat_model})
