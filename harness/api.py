"""RobustBench-compatible entry point: ``benchmark`` with RobustBench's arguments."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from zoo import devices
from zoo.datasets_meta import check_dataset
from zoo.errors import ConfigError

from .data import load_tensors
from .evaluation import evaluate
from .models import resolve_model
from .numerics import choose_numerics, placed


def _value(x) -> str:
    return str(getattr(x, "value", x))


def benchmark(model: nn.Module, n_examples: int = 10000, dataset="cifar10", threat_model="Linf",
              to_disk: bool = False, model_name: str | None = None, data_dir: str | None = "./data",
              device=None, batch_size: int = 32, eps: float | None = None, log_path: str | None = None,
              preprocessing=None, aa_state_path: str | os.PathLike | None = None) -> tuple[float, float]:
    """Drop-in for ``robustbench.eval.benchmark``: return ``(clean_acc, robust_acc)`` as fractions.

    With ``to_disk`` the result goes to ``model_info/{dataset}/{threat_model}/{model_name}.json``;
    ``aa_state_path`` is used as the resumable state directory; ``log_path`` gets a summary.
    """
    if preprocessing is not None:
        raise ConfigError("preprocessing is only used by RobustBench for ImageNet; CIFAR-10/100 and SVHN "
                          "models take [0,1] images as they are")
    dataset, threat_model = _value(dataset), _value(threat_model)
    out = None
    if to_disk:
        if not model_name:
            raise ConfigError("to_disk=True needs a model_name (the file name RobustBench uses)")
        out = Path("model_info") / dataset / threat_model / f"{model_name}.json"
    result = evaluate(model, dataset, threat_model, eps, n_examples, batch_size=batch_size,
                      device=str(device) if device is not None else None, data_dir=data_dir, out=out,
                      state_dir=aa_state_path)
    if log_path is not None:
        ev = result.evaluation
        lines = [f"clean accuracy: {ev.clean_accuracy:.2f}%"]
        lines += [f"robust accuracy after {a}: {v:.2f}%" for a, v in ev.robust_accuracy_after.items()]
        lines += [f"warning ({w['source']}, x{w['count']}): {w['message']}" for w in ev.warnings]
        with open(log_path, "a") as f:
            f.write("\n".join(lines) + "\n")
    return result.clean_acc / 100, result.robust_acc / 100


def clean_accuracy(model, dataset: str | None = None, data_dir=None, n_examples: int | None = None,
                   batch_size: int = 500, device: str | None = None, exact: bool = False,
                   channels_last: bool | None = None, tf32: bool | None = None) -> float:
    """Accuracy (percent) without attack on the first ``n_examples`` test images.

    ``model`` is anything ``evaluate`` takes (a spec string or an nn.Module);
    layout and precision are chosen as ``evaluate`` chooses them (``numerics``).
    """
    resolved = resolve_model(model, dataset)
    dataset = check_dataset(dataset or resolved.defaults.get("dataset", "cifar10"))
    x, y = load_tensors(dataset, "test", data_dir, n_examples)
    device = devices.placement(device).device
    numerics = choose_numerics(resolved.model, exact, channels_last, tf32)
    correct = 0
    with placed(resolved.model.eval(), device, numerics) as net, torch.no_grad():
        for lo in range(0, len(x), batch_size):
            correct += (net(x[lo:lo + batch_size].to(device)).argmax(1).cpu() == y[lo:lo + batch_size]).sum().item()
    return 100.0 * correct / len(x)
