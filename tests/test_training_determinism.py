"""`deterministic = true` holds for the duration of train() and leaves the process as it found it."""

from __future__ import annotations

import contextlib
import json
import os
import warnings

import pytest
import torch

from training import determinism, train
from training.determinism import CUBLAS_ENV, DeterminismWarning, cublas_action, deterministic_training
from training_helpers import bundled_images, tiny_config, tiny_data
from zoo.errors import DataError


def _flags() -> tuple[bool, bool, bool, bool]:
    cudnn = torch.backends.cudnn
    return (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn.deterministic, cudnn.benchmark)


@contextlib.contextmanager
def process_flags(enabled: bool, warn_only: bool, cudnn_deterministic: bool, cudnn_benchmark: bool):
    """Start from the given process flags; put the previous ones back afterwards."""
    saved = _flags()

    def put(state):
        torch.use_deterministic_algorithms(state[0], warn_only=state[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = state[2], state[3]

    put((enabled, warn_only, cudnn_deterministic, cudnn_benchmark))
    try:
        yield
    finally:
        put(saved)


@contextlib.contextmanager
def flags_seen_by_forward_passes():
    """Record the process flags at every module forward (a global forward pre-hook: what training ran under)."""
    seen: set[tuple[bool, bool, bool, bool]] = set()
    handle = torch.nn.modules.module.register_module_forward_pre_hook(lambda module, args: seen.add(_flags()))
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.parametrize("before", [(False, False, False, False), (True, False, False, True)],
                         ids=["defaults", "strict-and-benchmark"])
def test_train_is_deterministic_while_it_runs_and_restores_the_process_after(tmp_path, before):
    data = tiny_data(bundled_images(), n=48, holdout=16)
    with process_flags(*before), flags_seen_by_forward_passes() as seen:
        run = train(tiny_config(epochs=1, batch_size=16, attack_steps=1, deterministic=True), tmp_path / "run",
                    data=data, progress=False, stop_after_steps=1)
        after = _flags()
    assert after == before
    # a process that already asked for errors (warn_only False) keeps them; otherwise warn_only
    assert seen == {(True, before[1] if before[0] else True, True, False)}
    recorded = json.loads((run / "run_info.json").read_text())["determinism"]
    assert recorded == {"requested": True, "deterministic_algorithms": True, "warn_only": not before[0],
                        "cudnn_deterministic": True, "cudnn_benchmark": False,
                        "cublas_workspace_config": None, "cublas_deterministic": None}


def test_train_restores_the_process_when_it_raises(tmp_path):
    cfg = tiny_config(epochs=1, deterministic=True, data_dir=str(tmp_path / "missing.npz"))
    with process_flags(False, False, False, True):
        with pytest.raises(DataError, match="does not exist"):
            train(cfg, tmp_path / "run", progress=False)
        assert _flags() == (False, False, False, True)


def test_deterministic_false_leaves_the_flags_alone(tmp_path):
    data = tiny_data(bundled_images(), n=48, holdout=16)
    with process_flags(False, False, False, True), flags_seen_by_forward_passes() as seen:
        run = train(tiny_config(epochs=1, batch_size=16, attack_steps=1, deterministic=False), tmp_path / "run",
                    data=data, progress=False, stop_after_steps=1)
    assert seen == {(False, False, False, True)}
    assert json.loads((run / "run_info.json").read_text())["determinism"]["requested"] is False


@pytest.mark.parametrize("value,initialized,action", [
    (None, False, "set"), (None, True, "warn"), (":4096:8", True, "ok"), (":16:8", False, "ok"),
    (":0:0", False, "warn"), (":0:0", True, "warn")])
def test_cublas_workspace_decision(value, initialized, action):
    assert cublas_action(value, initialized) == action


def test_a_cuda_run_sets_the_cublas_workspace_before_cuda_starts(monkeypatch):
    """Checked on a CPU machine: CUDA is not initialised here, so the variable can still be set."""
    assert not torch.cuda.is_initialized()
    monkeypatch.setenv(CUBLAS_ENV, "")  # so that the variable this sets is removed after the test
    monkeypatch.delenv(CUBLAS_ENV)
    with deterministic_training(True, cuda=True) as applied:
        assert os.environ[CUBLAS_ENV] == ":4096:8"
    assert applied["cublas_workspace_config"] == ":4096:8" and applied["cublas_deterministic"] is True
    monkeypatch.setattr(determinism, "_warned_cublas", False)
    monkeypatch.setenv(CUBLAS_ENV, ":0:0")  # a value that leaves cuBLAS non-deterministic: warned about, once
    with pytest.warns(DeterminismWarning, match="cuBLAS determinism is not guaranteed: CUBLAS_WORKSPACE_CONFIG=':0:0'"):
        with deterministic_training(True, cuda=True) as applied:
            pass
    assert applied["cublas_deterministic"] is False and os.environ[CUBLAS_ENV] == ":0:0"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with deterministic_training(True, cuda=True):
            pass
