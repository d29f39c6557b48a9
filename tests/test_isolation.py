"""The suite's two rules (tests/conftest.py): a developer's settings and home never reach a test, and a test
that leaves torch's global state changed fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import huggingface_hub

from zoo import registry
from zoo.sources import hub, imported

pytest_plugins = ["pytester"]
TESTS_DIR = Path(__file__).parent
POISON = "POISONED: a developer's own entry"


def test_a_test_sees_no_user_settings():
    """What every test sees; run again below in a fresh interpreter started with a poisoned environment."""
    temp = Path(tempfile.gettempdir()).resolve()
    assert registry.user_registry_path().resolve().is_relative_to(temp)
    assert not registry.user_registry_path().exists()
    assert [e for e in registry.list_entries() if not e.builtin] == []
    assert registry.get_entry("cifar10-linf").description != POISON
    settings = hub.hub_settings()
    assert not settings.offline and settings.token is None and huggingface_hub.get_token() is None
    assert settings.endpoint == "https://huggingface.co"
    assert Path(settings.cache_dir).resolve().is_relative_to(temp)
    assert imported.cache_root().resolve().is_relative_to(temp)
    assert "SCORE_ZOO_DATA" not in os.environ and "SCORE_ZOO_ORIGIN_ENDPOINT" not in os.environ


def _poisoned_home(root: Path) -> dict[str, str]:
    """A developer's home after the README walkthrough, plus Hub settings in the shell."""
    base = registry.get_entry("cifar10-linf").to_dict()
    entries = {"entries": [dict(base, description=POISON), dict(base, name="poison-only", description=POISON)]}
    for reg in (root / ".config" / "score-zoo" / "registry.json", root / "elsewhere" / "registry.json"):
        reg.parent.mkdir(parents=True)
        reg.write_text(json.dumps(entries))
    (root / ".cache" / "huggingface").mkdir(parents=True)
    (root / ".cache" / "huggingface" / "token").write_text("hf_poisoned")
    return {"HOME": str(root), "SCORE_ZOO_REGISTRY": str(root / "elsewhere" / "registry.json"),
            "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_poisoned",
            "SCORE_ZOO_DATA": str(root / "data")}


def test_a_poisoned_home_does_not_change_what_a_test_sees(tmp_path, monkeypatch):
    poison = _poisoned_home(tmp_path / "home")
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CONFIG_HOME", "HF_HOME")}
    env.update(poison)
    # a fresh pytest, started from a shell with these settings, runs the test above with the suite's fixtures
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           f"{Path(__file__).name}::test_a_test_sees_no_user_settings"],
                          cwd=TESTS_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout
    # the poison is real: code that reads these settings sees it once they are in the environment
    for name, value in poison.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert registry.get_entry("poison-only").description == POISON
    assert hub.hub_settings().offline and hub.hub_settings().token == "hf_poisoned"
    monkeypatch.delenv("SCORE_ZOO_REGISTRY")
    assert registry.user_registry_path() == tmp_path / "home" / ".config" / "score-zoo" / "registry.json"
    assert registry.get_entry("cifar10-linf").description == POISON


def test_a_test_that_leaves_torch_state_changed_fails(pytester):
    pytester.makeconftest((TESTS_DIR / "conftest.py").read_text())
    pytester.makepyfile(test_leaky="""
        import torch

        def test_deterministic_flag():
            torch.use_deterministic_algorithms(True)

        def test_warn_only():
            torch.use_deterministic_algorithms(False, warn_only=True)

        def test_threads():
            torch.set_num_threads(torch.get_num_threads() + 1)

        def test_default_dtype():
            torch.set_default_dtype(torch.float64)

        def test_grad_mode():
            torch.set_grad_enabled(False)

        def test_cudnn_benchmark():
            torch.backends.cudnn.benchmark = not torch.backends.cudnn.benchmark

        def test_restored():
            torch.set_num_threads(torch.get_num_threads() + 1)
            torch.set_num_threads(torch.get_num_threads() - 1)
            with torch.no_grad():
                pass
    """)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=7, errors=6)
    result.stdout.fnmatch_lines_random([
        "*ERROR at teardown of test_deterministic_flag*", "*ERROR at teardown of test_warn_only*",
        "*changed torch's global state without restoring it: deterministic algorithms False -> True*",
        "*deterministic warn_only False -> True*", "*threads * -> *", "*default dtype torch.float32 -> torch.float64*",
        "*grad mode True -> False*", "*cudnn.benchmark*"])
