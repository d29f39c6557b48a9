"""`score-train toy` end to end on few points and iterations: its files, its JSON, its pictures, its errors."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from training.cli import main
from training.run_state import load_checkpoint
from training.toy.figures import TRUTH_COLOR

SMALL = ["--samples", "250,50", "--iterations", "3", "--seed", "4"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    result = CliRunner().invoke(main, ["toy", "--out", str(out), "--workers", "1", *SMALL])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_writes_the_json_with_final_figures_and_curves(run):
    out, output = run
    summary = json.loads((out / "toy.json").read_text())
    assert summary["format"] == "score-train-toy/1"
    s = summary["settings"]
    assert (s["objectives"], s["distance"], s["measure_distance"]) == (
        ["Standard", "PGDAT", "PGDATconsistent", "TRADES"], "KL", "L1")
    assert (s["iterations"], s["seed"], s["counts"], s["eps"], s["attack_steps"]) == (3, 4, [250, 50], 1.0, 10)
    assert (summary["C"]["distance"], summary["C_measure"]["distance"]) == ("KL", "L1")
    assert 0 < summary["C"]["value"] < summary["C_measure"]["value"] < 2
    posteriors = json.loads((out / "posteriors.json").read_text())
    assert len(posteriors["x"]) == len(posteriors["truth"]) == 10_000
    assert min(posteriors["x"]) >= -10 and max(posteriors["x"]) <= 10
    labels = [run["label"] for run in summary["objectives"].values()]
    assert labels == ["Standard", "PGD-AT", "SCORE", "TRADES"]
    for name, r in summary["objectives"].items():
        assert {k: len(v) for k, v in r["curves"].items()} == {"train_loss": 3, "R_SCORE": 3, "R_standard": 3}
        f = r["final"]
        assert f["R_SCORE"] == pytest.approx(r["curves"]["R_SCORE"][-1], rel=1e-5)
        assert f["R_standard"] == pytest.approx(r["curves"]["R_standard"][-1], rel=1e-5)
        assert all(math.isfinite(v) and v > 0 for v in f.values())
        error = np.abs(np.array(posteriors["learned"][name]) - np.array(posteriors["truth"]))
        assert f["mean_abs_error"] == pytest.approx(error.mean(), rel=1e-5)
        assert f["max_abs_error"] == pytest.approx(error.max(), rel=1e-5)
        assert f"{r['label']:<9} |P - P*| mean {f['mean_abs_error']:.4f}" in output
    assert summary["figures"] == ["posterior.png", "curves.png", "objectives.png"]
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))


@pytest.mark.parametrize("name,size", [("posterior.png", (750, 480)), ("curves.png", (1600, 360)),
                                       ("objectives.png", (1600, 700))])
def test_figures_are_real_pictures(run, name, size):
    out, _ = run
    image = Image.open(out / name)
    assert image.format == "PNG" and image.size == size
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert pixels.std() > 20 and len(np.unique(pixels, axis=0)) > 50, "a blank or flat picture"
    if name != "curves.png":  # the ground truth's dark cyan line is drawn
        truth = np.round(np.array(TRUTH_COLOR) * 255).astype(int)
        assert (np.abs(pixels - truth).sum(axis=1) < 6).sum() > 500


def test_results_do_not_depend_on_the_number_of_worker_processes(tmp_path):
    args = ["--objectives", "TRADES,Standard", "--samples", "200,40", "--iterations", "2", "--no-progress"]
    runner = CliRunner()
    for workers in ("1", "2"):
        result = runner.invoke(main, ["toy", "--out", str(tmp_path / workers), "--workers", workers, "--json", *args])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output) == json.loads((tmp_path / workers / "toy.json").read_text())
    one, two = (json.loads((tmp_path / w / "toy.json").read_text()) for w in ("1", "2"))
    assert list(two["objectives"]) == ["TRADES", "Standard"]
    assert one["objectives"] == two["objectives"] and one["C"] == two["C"]
    assert (tmp_path / "1" / "posteriors.json").read_text() == (tmp_path / "2" / "posteriors.json").read_text()


@pytest.mark.parametrize("args,message", [
    (["--objectives", "PGDAT,SCOREE"], "unknown objective 'SCOREE'; choose from Standard, PGDAT, PGDATconsistent,"),
    (["--objectives", "PGDAT,PGDAT"], "objective given twice"),
    (["--distance", "kl"], "unknown distance 'kl'; choose one of KL, LSE, JSsqrt, L1, L2, Linf"),
    (["--measure-distance", "L3"], "unknown distance 'L3'"),
    (["--samples", "50000"], "samples must be two positive counts N0,N1"),
    (["--samples", "50000,ten"], "samples must be two positive counts N0,N1"),
    (["--samples", "0,10"], "samples must be two positive counts N0,N1"),
    (["--iterations", "0"], "iterations must be at least 1, not 0"),
    (["--workers", "0"], "workers must be at least 1, not 0"),
])
def test_bad_input_is_one_error_line(tmp_path, args, message):
    result = CliRunner().invoke(main, ["toy", "--out", str(tmp_path / "r"), *args])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not (tmp_path / "r").exists()


def _toy(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["toy", "--workers", "1", "--no-progress", *args])
    return result.exit_code, result.output


def _outputs(run) -> tuple[dict, str]:
    summary = json.loads((run / "toy.json").read_text())
    return summary["objectives"], (run / "posteriors.json").read_text()


def test_a_stopped_run_resumes_to_the_numbers_of_an_uninterrupted_one(tmp_path):
    args = ["--objectives", "PGDATconsistent,TRADES", "--samples", "200,40", "--iterations", "13", "--seed", "3"]
    assert _toy("--out", str(tmp_path / "straight"), *args)[0] == 0
    stopped = tmp_path / "stopped"
    code, output = _toy("--out", str(stopped), *args, "--stop-after", "4")
    assert code == 0 and output.strip() == f"{stopped} (stopped after iteration 4; continue with --resume)"
    assert not (stopped / "toy.json").exists()
    assert _toy("--out", str(stopped), *args, "--resume", "--stop-after", "11")[0] == 0  # checkpoints at 10, 11
    assert _toy("--out", str(stopped), *args, "--resume")[0] == 0
    assert _outputs(stopped) == _outputs(tmp_path / "straight")
    (stopped / "toy.json").unlink()  # a finished run resumed again rewrites the same outputs from its checkpoints
    assert _toy("--out", str(stopped), *args, "--resume")[0] == 0
    assert _outputs(stopped) == _outputs(tmp_path / "straight")


def test_resume_of_a_missing_run_is_refused(tmp_path):
    code, err = _toy("--out", str(tmp_path / "typo"), "--iterations", "2", "--resume")
    assert code == 1 and f"cannot resume {tmp_path / 'typo'}: there is no toy run there" in err
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("again,message", [
    ([], "already holds a toy run; pass --resume to continue it, or choose a new --out"),
    (["--resume", "--iterations", "5"], "cannot resume {out} with different settings (iterations: 2 -> 5)"),
    (["--resume", "--objectives", "PGDAT"], "with different settings (objectives: ['Standard', 'PGDAT'] -> ['PGDAT'])"),
    (["--resume", "--stop-after", "0"], "stop-after must be at least 1, not 0"),
])
def test_an_existing_run_is_never_overwritten_or_resumed_with_other_settings(tmp_path, again, message):
    out = tmp_path / "run"
    base = ["--out", str(out), "--objectives", "Standard,PGDAT", "--samples", "100,20", "--iterations", "2"]
    assert _toy(*base)[0] == 0
    before = {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, output = _toy(*base, *again)
    lines = output.strip().splitlines()
    assert code == 1 and len(lines) == 1 and message.format(out=out) in lines[0], output
    assert {p.name: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_sigkill_then_resume_gives_the_uninterrupted_numbers(tmp_path):
    args = ["--objectives", "PGDATconsistent", "--samples", "2500,500", "--iterations", "22", "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_MININTERVAL": "0", "TQDM_MINITERS": "1"}
    run = tmp_path / "killed"
    killed = subprocess.Popen([sys.executable, "-m", "training", "toy", "--out", str(run), *args], env=env,
                              cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    text = ""
    while chunk := killed.stderr.read1(4096).decode(errors="replace"):
        text += chunk
        if "| 12/22 " in text:  # iteration 12 done: its last checkpoint is the one after iteration 10
            killed.send_signal(signal.SIGKILL)
            break
    assert killed.wait(timeout=300) == -signal.SIGKILL, text[-2000:]
    assert load_checkpoint(run / "checkpoints" / "PGDATconsistent.pt")["iteration"] == 10
    assert not (run / "toy.json").exists()
    assert _toy("--out", str(run), *args, "--resume")[0] == 0
    assert _toy("--out", str(tmp_path / "straight"), *args)[0] == 0
    assert _outputs(run) == _outputs(tmp_path / "straight")
