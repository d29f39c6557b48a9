"""RobustBench's ``benchmark()``, drop-in (``harness.benchmark``): the same arguments, evaluated by the harness.

Its ``load_model`` drop-in, ``harness.load_model``, is ``zoo.robustbench.loader.load_model``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch.nn as nn

from zoo.errors import ConfigError

from .evaluation import evaluate


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

