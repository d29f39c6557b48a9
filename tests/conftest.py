"""Shared fixtures, and two rules for every test.

- Isolation: nothing of the developer's environment reaches a test. The user registry
  (``SCORE_ZOO_REGISTRY``, ``~/.config/score-zoo``), the Hugging Face home, cache, token and offline
  switch, and the zoo's source endpoints point into a fresh folder for each test (and into a folder of
  the session for module fixtures and for what is read at import).
- Global torch state: a test that changes the deterministic-algorithms flag, its warn_only, the thread
  count, the default dtype, grad mode or the cuDNN flags without restoring them fails.

Tests marked ``robustbench`` need the robustbench extra; without robustbench installed they are skipped
with the reason (the core install's run), and ``pytest -m robustbench`` runs exactly them (CI's second run,
in a ``pip install -e ".[robustbench,test]"`` environment).
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hub_server import HubServer, use_hub_server

# Settings of the developer's shell that would change what a test sees; each test starts without them.
CLEARED_ENV = ("HF_ENDPOINT", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_HUB_OFFLINE",
               "TRANSFORMERS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_OIDC_RESOURCE",
               "HUGGINGFACE_CO_STAGING", "SCORE_ZOO_ORIGIN_ENDPOINT", "SCORE_ZOO_GDRIVE_ENDPOINT", "SCORE_ZOO_DATA",
               "SCORE_ZOO_MODEL_INFO_URL", "CUBLAS_WORKSPACE_CONFIG")


def isolate(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Point every per-user setting the zoo and huggingface_hub read at ``home`` (a fresh folder)."""
    for name in CLEARED_ENV:
        monkeypatch.delenv(name, raising=False)
    hf_home = home / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("SCORE_ZOO_REGISTRY", str(home / "config" / "score-zoo" / "registry.json"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    if "huggingface_hub.constants" in sys.modules:  # read from the environment once, at import
        constants = sys.modules["huggingface_hub.constants"]
        for name, value in {"ENDPOINT": constants._HF_DEFAULT_ENDPOINT,
                            "HUGGINGFACE_CO_URL_TEMPLATE": constants._HF_DEFAULT_ENDPOINT
                            + "/{repo_id}/resolve/{revision}/{filename}",
                            "HF_HOME": str(hf_home), "HF_HUB_CACHE": str(hf_home / "hub"),
                            "HUGGINGFACE_HUB_CACHE": str(hf_home / "hub"), "HF_ASSETS_CACHE": str(hf_home / "assets"),
                            "HF_TOKEN_PATH": str(hf_home / "token"), "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
                            "HF_HUB_OFFLINE": False}.items():
            monkeypatch.setattr(constants, name, value)


_session = {"monkeypatch": pytest.MonkeyPatch(), "home": None}


def pytest_configure(config):
    """Isolate the whole session before any test module (and huggingface_hub) is imported."""
    _session["home"] = Path(tempfile.mkdtemp(prefix="score-zoo-tests-"))
    isolate(_session["monkeypatch"], _session["home"])


ROBUSTBENCH_MISSING = "needs the robustbench extra, not installed: pip install -e '.[robustbench,test]'"


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked ``robustbench`` when robustbench is not installed (found, not imported)."""
    if importlib.util.find_spec("robustbench") is not None:
        return
    skip = pytest.mark.skip(reason=ROBUSTBENCH_MISSING)
    for item in items:
        if item.get_closest_marker("robustbench") is not None:
            item.add_marker(skip)


def pytest_unconfigure(config):
    _session["monkeypatch"].undo()
    shutil.rmtree(_session["home"], ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch, tmp_path_factory):
    """A fresh user registry, HF home and default Hub settings for each test."""
    isolate(monkeypatch, tmp_path_factory.mktemp("home"))


def torch_global_state() -> dict:
    """The process-wide torch settings a test must leave as it found them."""
    cudnn = torch.backends.cudnn
    return {"deterministic algorithms": torch.are_deterministic_algorithms_enabled(),
            "deterministic warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
            "threads": torch.get_num_threads(), "default dtype": torch.get_default_dtype(),
            "grad mode": torch.is_grad_enabled(), "cudnn.deterministic": cudnn.deterministic,
            "cudnn.benchmark": cudnn.benchmark}


def set_torch_global_state(state: dict) -> None:
    torch.use_deterministic_algorithms(state["deterministic algorithms"], warn_only=state["deterministic warn_only"])
    torch.set_num_threads(state["threads"])
    torch.set_default_dtype(state["default dtype"])
    torch.set_grad_enabled(state["grad mode"])
    torch.backends.cudnn.deterministic = state["cudnn.deterministic"]
    torch.backends.cudnn.benchmark = state["cudnn.benchmark"]


@pytest.fixture(autouse=True)
def torch_state_restored():
    """Fail a test that leaves torch's global state changed (and restore it for the next test)."""
    before = torch_global_state()
    yield
    after = torch_global_state()
    if after != before:
        set_torch_global_state(before)
        changed = ", ".join(f"{k} {before[k]} -> {after[k]}" for k in before if before[k] != after[k])
        pytest.fail(f"the test changed torch's global state without restoring it: {changed}")


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    """A Hub-compatible server on 127.0.0.1 with huggingface_hub and the user registry pointed at it."""
    with HubServer() as server:
        use_hub_server(monkeypatch, server, tmp_path)
        yield server
