"""`score-train register` takes model-best/ unless told otherwise, and a local entry whose weights were
changed after registration is refused by every loader."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

import harness
import zoo
from harness.cli import main as harness_main
from training.cli import main as train_main
from training.trainer import final_model_config
from training_helpers import tiny_config
from zoo import registry
from zoo.cli import main as zoo_main
from zoo.errors import ConfigError, IntegrityError, WriteError
from zoo.fileio import sha256_file
from zoo.model_dir import WEIGHTS_NAME, save_model_dir

QUICK = ["--n-examples", "8", "--batch-size", "8", "--version", "custom", "--attacks", "apgd-ce", "--n-iter", "2",
         "--no-progress"]


@pytest.fixture()
def run_dir(tmp_path):
    """A finished run whose released model (model-best/, epoch 0) and last model (model/) differ."""
    cfg = tiny_config()
    run = tmp_path / "run"
    best = {"holdout_robust_acc": 12.5, "holdout_clean_acc": 30.0, "epoch": 0}
    for seed, folder, extra in [(1, "model-best", {"selected": "best", **best}),
                                (2, "model", {"selected": "last", "best": best})]:
        torch.manual_seed(seed)
        save_model_dir(zoo.create_model(cfg.architecture, dataset=cfg.dataset), run / folder,
                       final_model_config(cfg, **extra))
    assert sha256_file(run / "model-best" / WEIGHTS_NAME) != sha256_file(run / "model" / WEIGHTS_NAME)
    return run


def _register(run, name, *extra):
    result = CliRunner().invoke(train_main, ["register", str(run), "--name", name, *QUICK, *extra])
    assert result.exit_code == 0, result.output
    return registry.get_entry(name)


def _logits(model, x):
    with torch.no_grad():
        return model(x)


def test_register_takes_model_best_by_default_and_the_last_model_on_request(run_dir):
    x = torch.rand(4, 3, 32, 32)
    for name, which, extra in [("picked-best", "model-best", ()), ("picked-last", "model", ("--which", "model"))]:
        entry = _register(run_dir, name, *extra)
        expected = sha256_file(run_dir / which / WEIGHTS_NAME)
        assert entry.sha256 == expected, which
        assert sha256_file(registry.user_models_dir() / name / WEIGHTS_NAME) == expected
        result = json.loads((registry.user_models_dir() / f"{name}.evaluation.json").read_text())
        assert result["evaluation"]["weights_sha256"] == expected  # the evaluated model is the registered one
        assert torch.equal(_logits(zoo.load_model(name), x), _logits(zoo.load_model(run_dir / which), x))


def _tamper(weights):
    """Change the last byte of the tensor data: still a valid safetensors file, other weights."""
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01
    weights.write_bytes(bytes(data))


def _refused_everywhere(name):
    result = CliRunner().invoke(zoo_main, ["load", name])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and "has sha256" in lines[0] and "expected" in lines[0]
    with pytest.raises(IntegrityError, match="has sha256"):
        zoo.load_model(name)
    with pytest.raises(IntegrityError, match="has sha256"):
        harness.evaluate(name, n_examples=8, batch_size=8, version="custom", attacks=["apgd-ce"], n_iter=2,
                         progress=False, workers=1)
    result = CliRunner().invoke(harness_main, ["evaluate", name, *QUICK[:-1], "--workers", "1"])
    assert result.exit_code == 1 and "has sha256" in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("source", ["trained", "bundled"])
def test_a_local_entry_whose_weights_changed_is_refused(run_dir, tmp_path, source):
    """A user entry with local_dir (a trained model, or a copy of the bundled one), sha256 pinned."""
    tiny = registry.get_entry("cifar10-linf-tiny")
    local = tmp_path / "local"
    shutil.copytree(run_dir / "model-best" if source == "trained" else tiny.local_path(), local)
    registry.add_user_entry(registry.entry_from_dict(
        dict(tiny.to_dict(), name="local-copy", local_dir=str(local), sha256=sha256_file(local / WEIGHTS_NAME)),
        "test", builtin=False))
    assert CliRunner().invoke(zoo_main, ["load", "local-copy"]).exit_code == 0
    _tamper(local / WEIGHTS_NAME)
    zoo.load_model_dir(local)  # still a loadable model: only the hash tells
    _refused_everywhere("local-copy")


def _refused(run, name, *extra) -> str:
    result = CliRunner().invoke(train_main, ["register", str(run), "--name", name, *QUICK, *extra])
    assert result.exit_code == 1 and result.output.startswith("Error: ") and result.output.count("\n") == 1, \
        result.output
    return result.output


def _nothing_registered(name):
    assert name not in {e.name for e in registry.list_entries()}
    assert not (registry.user_models_dir() / name).exists()
    assert not (registry.user_models_dir() / f"{name}.md").exists()


@pytest.mark.parametrize("name", ["", "a/b", "../up", "-x", "x-", "a--b", "a b", "x" * 97])
def test_register_refuses_a_name_outside_the_entry_name_rule(run_dir, name):
    assert "is not a valid entry name" in _refused(run_dir, name)
    _nothing_registered(name)
    assert not registry.user_models_dir().exists()  # refused before the evaluation


def test_every_builtin_name_follows_the_rule_that_user_names_follow():
    for entry in registry.builtin_entries():
        assert registry.check_name(entry.name) == entry.name
    with pytest.raises(ConfigError, match="'a/b' is not a valid entry name"):
        registry.save_entry(registry.Entry(**{**registry.get_entry("cifar10-linf-tiny").to_dict(), "name": "a/b",
                                              "builtin": False}))


def _study(path, entry):
    """A study file of two seeds of one objective (the card shows its table)."""
    row = {"objective": "score", "clean_acc": 60.0, "clean_n_examples": 8, "autoattack_acc": 20.0, "n_examples": 8,
           "holdout_robust_acc": 12.5}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"description": "two seeds", "data": "bundled",
                                "runs": [{**row, "entry": f"{entry}-s{s}", "seed": s} for s in (0, 1)]}))


def test_a_relative_study_is_read_from_the_working_directory(run_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "study" in _refused(run_dir, "no-study", "--study", "studies/missing.json")
    _nothing_registered("no-study")
    assert not registry.user_models_dir().exists()  # refused before the evaluation
    _study(tmp_path / "studies" / "mine.json", "mine")
    entry = _register(run_dir, "mine", "--study", "studies/mine.json")
    assert entry.studies == [str(tmp_path / "studies" / "mine.json")]
    assert "| score | 1 | 60.00 | 20.00 | 12.50 |" in (registry.user_models_dir() / "mine.md").read_text()


def test_a_failed_registration_leaves_nothing_and_can_be_run_again(run_dir, monkeypatch):
    def full_disk(entry):
        raise WriteError(f"cannot write {registry.user_registry_path()}: no space left on device")

    with monkeypatch.context() as m:
        m.setattr(registry, "add_user_entry", full_disk)
        assert "no space left on device" in _refused(run_dir, "mine")
    _nothing_registered("mine")
    assert _register(run_dir, "mine").sha256 == sha256_file(run_dir / "model-best" / WEIGHTS_NAME)
    assert (registry.user_models_dir() / "mine.md").is_file()
