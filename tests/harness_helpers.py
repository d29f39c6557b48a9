"""Tiny deterministic models and helpers shared by the harness tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn as nn

from harness.data import load_tensors

TESTS_DIR = Path(__file__).parent


def centroid_model(num_classes: int = 10) -> nn.Module:
    """A linear classifier from class means of 200 bundled images (~25% accurate, no training)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, 1000)
    x, y = x[800:].flatten(1), y[800:]
    mu = x.mean(0)
    weight = torch.stack([(x[y == c].mean(0) - mu) for c in range(10)])[:num_classes]
    linear = nn.Linear(3072, num_classes)
    with torch.no_grad():
        linear.weight.copy_(weight * 20)
        linear.bias.copy_(-(weight * 20) @ mu)
    return nn.Sequential(nn.Flatten(), linear).eval()


def wrong_classes_model() -> nn.Module:
    """Returns 7 logits for a 10-class dataset."""
    return centroid_model(num_classes=7)


class NaNModel(nn.Module):
    """Returns NaN logits."""

    def forward(self, x):
        return torch.full((x.shape[0], 10), float("nan"))


def nan_model() -> nn.Module:
    return NaNModel()


def run_cli(*args: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``score-harness ARGS`` in a subprocess with tests/ importable."""
    env = {**os.environ, "PYTHONPATH": f"{TESTS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)
