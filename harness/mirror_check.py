"""The clean-accuracy check of ``score-zoo mirror --check-clean N``, offered to zoo as a plugin.

zoo does not import harness (imports go zoo <- harness), so pyproject.toml
registers ``check_clean`` under the entry-point group ``score_zoo.mirror_checks``
and ``zoo.robustbench.mirror.clean_check_plugin`` loads it from there.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch.nn as nn

from .clean import clean_accuracy
from .data import BundledSubsetWarning
from .verification import consistent_with


def check_clean(model: nn.Module, dataset: str, n_examples: int, reported_clean_acc: float, data_dir=None,
                device: str | None = None, confidence: float = 0.95) -> dict:
    """Clean accuracy on the first ``n_examples`` test images against a reported one (percent), as ``verify`` judges.

    Consistent means the reported accuracy lies inside the Clopper-Pearson
    interval of the measured one. ``data.source`` says which images were used
    (``bundled-subset`` without ``data_dir``: a JPEG-decoded copy, not the official files).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BundledSubsetWarning)   # the record names its data source instead
        measured = clean_accuracy(model, dataset, data_dir, n_examples, device=device)
    correct = round(measured * n_examples / 100)
    interval, consistent = consistent_with(reported_clean_acc, correct, n_examples, confidence)
    return {"n_examples": n_examples, "correct": correct, "clean_acc": 100.0 * correct / n_examples,
            "interval": list(interval), "confidence": confidence, "method": "Clopper-Pearson",
            "reported_clean_acc": reported_clean_acc, "consistent": consistent,
            "data": {"source": str(Path(data_dir).resolve()) if data_dir else "bundled-subset"}}
