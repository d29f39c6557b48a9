"""Tiny training configurations and data shared by the training tests."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from harness.data import load_arrays
from training import make_config
from training.config import TrainConfig
from training.data import TrainData

# WRN-10-1, 2-step attacks: a step takes a fraction of a second on one CPU core.
TINY = {"architecture": "wrn-10-1-swish", "batch_size": 32, "attack_steps": 2, "attack_step_size": 4 / 255,
        "eval_attack_steps": 2, "eval_batch_size": 64, "lr": 0.1, "checkpoint_every": 0, "epochs": 2,
        "lr_schedule_unit": "step"}


def bundled_images() -> tuple[np.ndarray, np.ndarray]:
    """The bundled 1,000 CIFAR-10 test images (uint8 NHWC) and labels, without the subset warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_arrays("cifar10", "test", None)


def tiny_data(images: tuple[np.ndarray, np.ndarray], n: int = 160, holdout: int = 32, generated: str = "") -> TrainData:
    """The first ``n`` images as a training split whose first ``holdout`` are held out."""
    x, y = images
    return TrainData.from_arrays(x[:n], y[:n], "cifar10", holdout_size=holdout, generated_data=generated)


def tiny_config(**values) -> TrainConfig:
    """TINY with ``values`` on top."""
    return make_config({**TINY, **values})


def metrics_records(path: Path) -> list[dict]:
    """A run's metrics.jsonl without the wall-clock time of each epoch."""
    return [{k: v for k, v in json.loads(line).items() if k != "epoch_seconds"} for line in path.read_text().splitlines()]
