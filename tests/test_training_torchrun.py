"""score-train --register under torchrun: the ranks share the evaluation, rank 0 alone writes, nothing hangs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.data import BUNDLED_SUBSET

SMALL = ["--set", "architecture=wrn-10-1-swish", "--set", "train_subset=96", "--set", "holdout_size=32",
         "--set", "batch_size=32", "--set", "epochs=1", "--set", "attack_steps=1", "--set", "eval_attack_steps=1",
         "--set", "test_clean_every=0"]


def test_register_under_torchrun_writes_once(tmp_path):
    registry = tmp_path / "registry.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "SCORE_ZOO_REGISTRY": str(registry)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "training",
           "--recipe", "cifar10-linf-tiny", "--data-dir", str(BUNDLED_SUBSET), *SMALL, "--no-progress", "--device",
           "cpu", "--out", str(tmp_path / "run"), "--register", "ddp-tiny"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("registered 'ddp-tiny'") == 1  # rank 0 reports, the other rank stays quiet
    entries = json.loads(registry.read_text())["entries"]
    assert [e["name"] for e in entries] == ["ddp-tiny"]
    result = json.loads((registry.parent / "models" / "ddp-tiny.evaluation.json").read_text())["evaluation"]
    assert "x2 processes" in result["device"] and result["n_examples"] == 1000
    assert not list(tmp_path.glob("**/*.tmp")) and not list(tmp_path.glob("**/.*.tmp"))
