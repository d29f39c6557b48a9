"""SCORE Zoo evaluation harness: AutoAttack under standardized threat models.

>>> import harness
>>> result = harness.evaluate("cifar10-linf", n_examples=1000)
>>> clean, robust = harness.benchmark(model, n_examples=1000, dataset="cifar10", threat_model="Linf")
>>> model = harness.load_model("Pang2022Robustness_WRN28_10", dataset="cifar10", threat_model="Linf")
"""

from __future__ import annotations

_LAZY = {"evaluate": "harness.evaluation", "benchmark": "harness.robustbench_dropins", "clean_accuracy": "harness.clean", "verify": "harness.verification",
         "load_model": "zoo.robustbench.loader",
         "merge_files": "harness.merge", "EvaluationResult": "zoo.results"}


def __getattr__(name: str):
    """Import the public API on first use (keeps ``import harness.data`` light)."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'harness' has no attribute '{name}'")


__all__ = list(_LAZY)
