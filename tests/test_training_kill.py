"""A training process killed with SIGKILL between two checkpoints resumes to the weights of an uninterrupted run."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from training.cli import main
from training.run_state import load_checkpoint
from training_helpers import bundled_images, metrics_records

# 160 images of which 32 held out, batch 32: 5 steps per epoch, 10 in all; checkpoints after global steps
# 3, 5 (epoch end), 6, 9 and 10.
SETTINGS = ["architecture=wrn-10-1-swish", "train_subset=160", "holdout_size=32", "batch_size=32", "epochs=2",
            "attack_steps=2", "eval_attack_steps=2", "eval_batch_size=64", "checkpoint_every=3", "bf16=false",
            "channels_last=false", "test_clean_every=0"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore",
       "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}  # a progress line after every step
REPO = Path(__file__).parents[1]


def _train_args(data: Path, out: Path, *extra: str) -> list[str]:
    args = ["--recipe", "cifar10-linf-tiny", "--data-dir", str(data), "--device", "cpu", "--out", str(out), *extra]
    for setting in SETTINGS:
        args += ["--set", setting]
    return args


def _kill_when(proc: subprocess.Popen, pattern: str) -> threading.Thread:
    """A thread that SIGKILLs ``proc`` as soon as its stderr matches ``pattern`` (and keeps what it read)."""

    def watch():
        text = ""
        while chunk := proc.stderr.read1(4096).decode(errors="replace"):
            text += chunk
            if re.search(pattern, text):
                proc.send_signal(signal.SIGKILL)
                break
        watcher.output = text

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def _in_process(args: list[str]) -> None:
    """score-train in this process, with one thread as in the killed process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = CliRunner().invoke(main, [*args, "--no-progress"])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output


def test_sigkill_between_checkpoints_then_resume_gives_the_uninterrupted_weights(tmp_path):
    x, y = bundled_images()
    data = tmp_path / "cifar10_train.npz"
    np.savez(data, x=x[:160], y=y[:160])
    run = tmp_path / "killed"
    killed = subprocess.Popen([sys.executable, "-m", "training", *_train_args(data, run)], env=ENV, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    # killed once global step 7 (epoch 2, step 2) is done: its last checkpoint is the one after step 6
    watcher = _kill_when(killed, r"epoch 2/2:[^\r\n]*\| 2/5 ")
    _in_process(_train_args(data, tmp_path / "straight"))  # meanwhile, the uninterrupted run
    assert killed.wait(timeout=600) == -signal.SIGKILL, watcher.join(5) or getattr(watcher, "output", "")[-3000:]
    assert load_checkpoint(run / "checkpoint.pt")["global_step"] == 6 and not (run / "model").exists()

    _in_process(_train_args(data, run, "--resume"))
    assert json.loads((run / "run_info.json").read_text())["resumed_from_step"] == 6
    for folder in ("model", "model-best"):
        a = load_file(tmp_path / "straight" / folder / "model.safetensors")
        b = load_file(run / folder / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), folder
    a, b = load_checkpoint(tmp_path / "straight" / "checkpoint.pt"), load_checkpoint(run / "checkpoint.pt")
    assert a["global_step"] == b["global_step"] == 10
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key]), key
    assert metrics_records(tmp_path / "straight" / "metrics.jsonl") == metrics_records(run / "metrics.jsonl")
