"""A file that cannot be written (unwritable path, read-only file system, full disk) is one error line in every
command, and nothing is half-written."""

from __future__ import annotations

import importlib.util

import errno
import io
import warnings

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import zoo
import zoo.fileio
from harness.cli import main as harness_main
from harness.evaluation import evaluate
from training.cli import main as train_main
from training_helpers import bundled_images
from zoo.cli import main as zoo_main

MODEL = "harness_helpers:centroid_model"
QUICK = dict(n_examples=16, batch_size=8, eps="2/255", version="custom", attacks=["apgd-ce"], n_iter=1,
             progress=False, workers=1, device="cpu")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """What the commands read: a result with its adversarial examples, two shards, a checkpoint, training data."""
    tmp = tmp_path_factory.mktemp("inputs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(MODEL, out=tmp / "r.json", save_adversarial=tmp / "r.adv.safetensors", **QUICK)
        for k in (0, 1):
            evaluate(MODEL, out=tmp / f"s{k}.json", shard=f"{k}/2", **QUICK)
    torch.save(zoo.create_model("wrn-10-1-swish").state_dict(), tmp / "ckpt.pt")
    x, y = bundled_images()
    np.savez(tmp / "train.npz", x=x[:96], y=y[:96])
    return tmp


def _commands(inputs, out):
    """(CLI, arguments) of each command that writes, writing under the folder ``out``."""
    train = ["--recipe", "cifar10-linf-tiny", "--data-dir", str(inputs / "train.npz"), "--set", "train_subset=96",
             "--set", "holdout_size=32", "--set", "batch_size=32", "--set", "epochs=1", "--device", "cpu",
             "--no-progress"]
    return {
        "show": (harness_main, ["show", str(inputs / "r.json"), "--out", str(out / "x.png")]),
        "export-external": (harness_main, ["export-external", str(inputs / "r.json"), "--out", str(out / "adv.pt")]),
        "leaderboard": (harness_main, ["leaderboard", "--zoo", "--out", str(out / "lb.md")]),
        "merge": (harness_main, ["merge", str(inputs / "s0.json"), str(inputs / "s1.json"), "--out", str(out / "m.json")]),
        "gradients": (harness_main, ["gradients", "cifar10-linf-tiny", "--n-images", "1", "--out", str(out / "g.png")]),
        "save-adversarial": (harness_main, ["evaluate", MODEL, "--n-examples", "16", "--batch-size", "8", "--eps",
                                            "2/255", "--version", "custom", "--attacks", "apgd-ce", "--n-iter", "1",
                                            "--workers", "1", "--device", "cpu",
                                            "--save-adversarial", str(out / "a.safetensors")]),
        "card": (zoo_main, ["card", "cifar10-linf-tiny", "--out-dir", str(out / "cards")]),
        "import": (zoo_main, ["import", str(inputs / "ckpt.pt"), "--arch", "wrn-10-1-swish", "--out", str(out / "m")]),
        "study": (zoo_main, ["study", str(out / "s.json"), "--entry", "cifar10-linf-tiny"]),
        "study-evaluations": (zoo_main, ["study", str(inputs / "never.json"), "--entry", "cifar10-linf-tiny",
                                         "--evaluations-dir", str(out / "evaluations")]),
        "train": (train_main, [*train, "--out", str(out / "run")]),
        "toy": (train_main, ["toy", "--out", str(out / "toy"), "--iterations", "2", "--samples", "100,20",
                             "--objectives", "Standard", "--workers", "1", "--no-progress"]),
    }


COMMANDS = ["show", "export-external", "leaderboard", "merge", "gradients", "save-adversarial", "card", "import",
            "study", "study-evaluations", "train", "toy"]


def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unwritable_path_is_one_line(inputs, tmp_path, name):
    blocker = tmp_path / "file"  # a path under a regular file: not writable, even for root
    blocker.write_text("x")
    cli, args = _commands(inputs, blocker / "sub")[name]
    line = _one_error_line(CliRunner().invoke(cli, args))
    assert str(blocker / "sub") in line and "not a directory" in line.lower(), line
    assert blocker.read_text() == "x"


class _FullDisk(io.FileIO):
    """A file on a full disk: every write fails as the kernel says (ENOSPC)."""

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")


def _read_only(path, mode):
    raise OSError(errno.EROFS, "Read-only file system", str(path))


def _failing(monkeypatch, failure, only: str = "") -> None:
    """Every file the zoo writes (those whose name holds ``only``) fails: at its writes or when it is opened."""
    fake = _FullDisk if failure == "full disk" else _read_only
    monkeypatch.setattr(zoo.fileio, "open", lambda path, mode: (fake if "w" in mode and only in str(path) else open)(path, mode),
                        raising=False)


@pytest.mark.parametrize("failure, message", [("full disk", "no space left on device; free some space and run it again"),
                                              ("read-only", "read-only file system; choose a writable location")])
@pytest.mark.parametrize("name", COMMANDS)
def test_a_failing_file_system_is_one_line_and_leaves_nothing(inputs, tmp_path, monkeypatch, name, failure, message):
    _failing(monkeypatch, failure)
    out = tmp_path / "out"
    out.mkdir()
    cli, args = _commands(inputs, out)[name]
    line = _one_error_line(CliRunner().invoke(cli, args))
    assert f"cannot write {out}" in line and message in line, line
    left = [p for p in out.rglob("*") if p.is_file() and p.stat().st_size and not p.name.endswith(".lock")]
    assert not left, left


def test_a_full_disk_at_a_training_checkpoint_is_one_line_and_keeps_the_run(inputs, tmp_path, monkeypatch):
    _failing(monkeypatch, "full disk", only="checkpoint.pt")  # torch.save to a path would say "unexpected pos"
    cli, args = _commands(inputs, tmp_path)["train"]
    line = _one_error_line(CliRunner().invoke(cli, args))
    assert f"cannot write {tmp_path / 'run' / 'checkpoint.pt'}: no space left on device" in line, line
    logged = ["tensorboard"] if importlib.util.find_spec("tensorboard") else []   # on by default where installed
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        ["config.json", "curves.png", "metrics.jsonl", "model-best", "run_info.json", *logged])


def test_an_unwritable_hf_home_is_one_line(tmp_path, monkeypatch):
    """cifar10-linf is not bundled: loading it writes into the cache under HF_HOME."""
    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "file" / "hf"))
    line = _one_error_line(CliRunner().invoke(zoo_main, ["load", "cifar10-linf"]))
    assert str(tmp_path / "file" / "hf") in line and "not a directory" in line.lower(), line
