"""training.launch: a launch checks what it can before training, and registers only a finished run."""

from __future__ import annotations

import numpy as np
import pytest

from training.launch import launch
from training_helpers import bundled_images, tiny_config
from zoo import registry
from zoo.errors import ConfigError


def test_a_taken_entry_name_is_refused_before_training(tmp_path):
    with pytest.raises(ConfigError, match="'cifar10-linf' exists already"):
        launch(tiny_config(), tmp_path / "run", register_name="cifar10-linf", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_launch_that_stops_early_reports_its_run_and_registers_nothing(tmp_path):
    x, y = bundled_images()
    np.savez(tmp_path / "cifar10_train.npz", x=x[:96], y=y[:96])
    seen = []
    result = launch(tiny_config(epochs=1, holdout_size=32, data_dir=str(tmp_path / "cifar10_train.npz")),
                    tmp_path / "run", stop_after_steps=1, progress=False, register_name="never-registered",
                    on_trained=seen.append)
    assert seen == [result] and result.run_dir == tmp_path / "run"
    assert not result.finished and result.registration is None
    assert result.released == tmp_path / "run" / "model-best"
    assert "never-registered" not in {e.name for e in registry.list_entries()}
