"""score-train from the command line: recipes, one-line errors, and 2-process DDP training under torchrun."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from click.testing import CliRunner

import zoo
from harness.data import BUNDLED_SUBSET
from training.cli import main
from training.run_state import load_checkpoint

SMALL = ["--set", "architecture=wrn-10-1-swish", "--set", "train_subset=160", "--set", "holdout_size=32",
         "--set", "batch_size=32", "--set", "epochs=1", "--set", "attack_steps=1", "--set", "eval_attack_steps=1"]


def test_recipes_command_lists_every_recipe():
    result = CliRunner().invoke(main, ["recipes"])
    assert result.exit_code == 0
    for name in ("cifar10-linf-tiny", "cifar10-linf-tiny-trades", "cifar10-linf-wrn28-10", "cifar10-linf-wrn70-16",
                 "cifar100-linf-wrn28-10", "cifar100-linf-wrn70-16", "cifar10-l2-wrn28-10", "svhn-linf-wrn28-10"):
        assert name in result.output
    as_json = json.loads(CliRunner().invoke(main, ["recipes", "--json"]).output)
    assert as_json["cifar10-linf-tiny"]["config"]["objective"] == "score"


def test_user_errors_are_one_line_with_exit_1(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["--recipe", "cifar10-linf-tiny", "--set", "bta=3", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unknown key(s) bta" in lines[0] and "Did you mean: beta" in lines[0]
    result = runner.invoke(main, ["--recipe", "cifar10-linf-tiny", "--set", "distance=RKLsqrt", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1
    assert "RKLsqrt to a one-hot label is infinite" in result.output and not (tmp_path / "r").exists()
    result = runner.invoke(main, ["--recipe", "no-such-recipe", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "unknown recipe 'no-such-recipe'" in result.output
    result = runner.invoke(main, ["--recipe", "cifar10-linf-wrn28-10", "--data-dir", str(BUNDLED_SUBSET),
                                  "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "--set generated_data=PATH" in result.output


def test_torchrun_two_processes_trains_with_ddp(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "training", "--recipe", "cifar10-linf-tiny", "--data-dir", str(BUNDLED_SUBSET), *SMALL,
           "--no-progress", "--device", "cpu", "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads((out / "run_info.json").read_text())
    assert info["world_size"] == 2
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["global_step"] == 5 and len(ckpt["rng"]) == 2  # ceil(160 images / global batch 32)
    model = zoo.load_model(out / "model")
    assert torch.isfinite(model(torch.rand(1, 3, 32, 32))).all()
    assert not list(tmp_path.glob("**/*.tmp"))
