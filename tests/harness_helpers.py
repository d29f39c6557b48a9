"""Tiny deterministic models and helpers shared by the harness tests."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from pyautoattack import AutoAttack

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


def failing_builder() -> nn.Module:
    """A builder that raises, as a user's broken one would."""
    raise ValueError("no checkpoint at /nonexistent/model.pt")


class _TupleModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = centroid_model()

    def forward(self, x):
        return self.inner(x), x.flatten(1)


def tuple_model() -> nn.Module:
    """Returns (logits, features) instead of logits."""
    return _TupleModel()


class _RandomShift(nn.Module):
    """The centroid model plus a random constant per example and call: AutoAttack's check sees
    different outputs for the same input (a randomized defense), yet every prediction and every
    gradient is that of the deterministic model."""

    def __init__(self):
        super().__init__()
        self.inner = centroid_model()

    def forward(self, x):
        logits = self.inner(x)
        return logits + torch.rand(len(x), 1) * 5


def randomized_model() -> nn.Module:
    return _RandomShift().eval()


class _Slow(nn.Module):
    def __init__(self, seconds: float):
        super().__init__()
        self.inner = centroid_model()
        self.seconds = seconds

    def forward(self, x):
        time.sleep(self.seconds)
        return self.inner(x)


def slow_centroid_model() -> nn.Module:
    """The centroid model, 4 ms per forward pass: chunks last long enough to interrupt."""
    return _Slow(0.004).eval()


def sleepy_centroid_model() -> nn.Module:
    """The centroid model, 30 ms per forward pass: an APGD-T chunk of 10 iterations takes seconds."""
    return _Slow(0.03).eval()


def unpicklable_model() -> nn.Module:
    """The centroid model holding a lambda: it cannot be sent to another process."""
    model = centroid_model()
    model.scale = lambda t: t
    return model


def run_cli(*args: str, cwd=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``score-harness ARGS`` in a subprocess with tests/ importable."""
    env = {**os.environ, "PYTHONPATH": f"{TESTS_DIR}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def set_iterations_by_hand(aa: AutoAttack, n_iter: int) -> None:
    """``n_iter`` iterations for every attack of ``aa`` (Square: queries), each hyperparameter derived from it by
    pyautoattack's own formulas (``APGDAttack.__init__``: ``n_iter_orig``, ``n_iter_2``, ``n_iter_min``,
    ``size_decr``), written out here so that the reference never runs the harness's code."""
    for apgd in (aa.apgd, aa.apgd_targeted):
        apgd.n_iter = n_iter
        apgd.n_iter_orig = n_iter + 0
        apgd.n_iter_2 = max(int(0.22 * n_iter), 1)
        apgd.n_iter_min = max(int(0.06 * n_iter), 1)
        apgd.size_decr = max(int(0.03 * n_iter), 1)
    aa.fab.n_iter = n_iter
    aa.square.n_queries = n_iter


def bare_autoattack(model, x, y, *, version, batch_size: int, attacks=None, n_iter=None, seed=0, norm="Linf",
                    eps=8 / 255, device="cpu", run=None):
    """One plain pyautoattack call; returns (x_adv, y_adv, robust accuracy % after each attack from its log).

    ``run`` (a prefix of the version's attack list) runs only those attacks, with the version's settings."""
    aa = AutoAttack(model, norm=norm, eps=eps, seed=seed, version=version,
                    attacks=attacks if version == "custom" else None, device=device)
    if n_iter:
        set_iterations_by_hand(aa, n_iter)
    if run is not None:
        assert list(run) == aa.attacks_to_run[:len(run)]
        aa.attacks_to_run = list(run)
    lines: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger, handler = logging.getLogger("auto-attack"), _Keep(level=logging.DEBUG)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        x_adv, y_adv = aa.run_standard_evaluation(x, y, batch_size=batch_size)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
    after = {m.group(1).lower(): float(m.group(2)) for m in
             (re.match(r"robust accuracy after (\S+): ([\d.]+)%", line) for line in lines) if m}
    return x_adv, y_adv, after

class _MeanThreshold(nn.Module):
    """Class 0 when an image's mean pixel is above 0.5, else class 1 (never any other class): an image within
    8/255 of 0.5 is broken by a uniform shift."""

    def forward(self, x):
        margin = (x.flatten(1).mean(1) - 0.5) * 100
        return torch.cat([margin[:, None], -margin[:, None], torch.zeros(len(x), 8)], 1)


def mean_threshold_model() -> nn.Module:
    return _MeanThreshold().eval()


def write_official_cifar10_test(root: Path, n: int = 10_000, n_correct: int = 8, seed: int = 0) -> Path:
    """``root/cifar-10-batches-py/test_batch`` in the official pickle layout: ``n`` flat grey images with a
    mean within 8/255 of 0.5. The first ``n_correct`` are labelled as ``mean_threshold_model`` classifies
    them, the others 9 (which it never predicts), so a standard AutoAttack run of it attacks only
    ``n_correct`` images and breaks them all. Returns ``root``."""
    import pickle

    import numpy as np

    levels = np.random.default_rng(seed).integers(124, 132, n).astype(np.uint8)   # 0.486 .. 0.514
    labels = [(0 if v / 255 > 0.5 else 1) if i < n_correct else 9 for i, v in enumerate(levels.tolist())]
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.repeat(levels[:, None], 3 * 32 * 32, axis=1), b"labels": labels}, f)
    return root


def robustbench_order(folder: Path, threat_model: str) -> list[str]:
    """The order RobustBench's own code gives (ACC_FIELDS + get_key, as its leaderboard template sorts).

    Needs robustbench: the tests that use it are marked ``robustbench``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from robustbench.model_zoo.enums import ThreatModel
        from robustbench.utils import ACC_FIELDS, get_key
    models = [(p.stem, json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]
    models.sort(key=lambda m: get_key(m[1], ACC_FIELDS[ThreatModel(threat_model)]), reverse=True)
    return [name for name, _ in models]
