"""Local worker processes: same per-example result as one process, bad counts, a killed worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.evaluation import evaluate
from zoo.results import EvaluationResult
from harness.engine.workers import UnpicklableModelError, task_threads
from harness_helpers import TESTS_DIR, run_cli, unpicklable_model

KW = dict(n_examples=32, batch_size=8, version="custom", attacks=["apgd-ce", "apgd-t"], n_iter=10, seed=3,
          progress=False)
ARGS = ["--n-examples", "32", "--batch-size", "8", "--version", "custom", "--attacks", "apgd-ce,apgd-t",
        "--n-iter", "10", "--seed", "3"]


def _evaluate(model="harness_helpers:centroid_model", **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(model, **{**KW, **kw})


@pytest.fixture(scope="module")
def reference():
    """One process, a two-point curve."""
    return _evaluate(workers=1, eps="2/255,8/255")


def test_two_workers_give_the_one_process_result_at_every_eps(reference, tmp_path):
    out = tmp_path / "r.json"
    result = _evaluate(workers=2, eps="2/255,8/255", out=out)
    ev = result.evaluation
    assert ev.per_example == reference.evaluation.per_example
    assert ev.curve == reference.evaluation.curve and len(ev.curve) == 2
    assert ev.execution == {"workers": 2, "threads_per_worker": max(1, len(os.sched_getaffinity(0)) // 2),
                            "processes": 1}
    assert "2 worker processes" in ev.device
    # every chunk task is saved by the workers: 4 clean chunks, then ceil(survivors / 8) per attack and eps
    survivors = [ev.clean_accuracy * 32 / 100] + [p["robust_accuracy_after"][a] * 32 / 100
                                                  for p in ev.curve for a in ("apgd-ce", "apgd-t")]
    expected = 4 + sum(-(-round(s) // 8) for s in survivors[:-1])
    assert len(list((tmp_path / "r.state").glob("*-L*-c*.pt"))) == expected
    assert EvaluationResult.from_json(out).to_dict() == result.to_dict()


@pytest.mark.parametrize("workers, message", [("0", "--workers must be at least 1"),
                                              ("5", "more than the 4 chunk(s)")])
def test_bad_worker_counts_are_one_line(workers, message):
    res = CliRunner().invoke(main, ["evaluate", "harness_helpers:centroid_model", *ARGS, "--workers", workers])
    err = res.stderr.strip().splitlines()
    assert res.exit_code == 1 and len(err) == 1 and message in err[0], res.output


def test_a_model_that_cannot_travel_runs_in_one_process_unless_workers_were_asked_for(reference):
    with pytest.raises(UnpicklableModelError, match="--workers 1"):
        _evaluate(unpicklable_model(), workers=2, eps="2/255,8/255")
    result = _evaluate(unpicklable_model(), eps="2/255,8/255")  # default: one per core, falls back
    assert result.evaluation.per_example == reference.evaluation.per_example
    assert any("cannot be sent to worker processes" in w["message"] for w in result.evaluation.warnings)
    assert result.evaluation.execution["workers"] == 1


def _worker_pids(parent: int) -> list[int]:
    """The spawned worker processes of ``parent`` (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(c) for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes() and
            b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_killed_worker_stops_the_run_cleanly_and_the_same_command_resumes(tmp_path):
    args = ["evaluate", "harness_helpers:slow_centroid_model", *ARGS, "--batch-size", "2", "--workers", "2",
            "--out", str(tmp_path / "r.json")]
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state = tmp_path / "r.state"
    deadline = time.time() + 120
    while time.time() < deadline and not list(state.glob("*-L*.pt")):
        time.sleep(0.05)
    victim = _worker_pids(proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    lines = [line for line in stderr.strip().splitlines() if line.startswith("Error")]
    assert proc.returncode == 1, stderr
    assert len(lines) == 1 and f"(pid {victim}) was killed by SIGKILL while running chunk" in lines[0]
    assert "run the same command again to resume" in lines[0] and "Traceback" not in stderr
    assert list(state.glob("*-L*.pt")) and not (tmp_path / "r.json").exists()

    res = run_cli(*args)
    assert res.returncode == 0, res.stderr
    resumed = EvaluationResult.from_json(tmp_path / "r.json").evaluation
    reference = _evaluate(workers=1, batch_size=2).evaluation
    assert resumed.per_example == reference.per_example
    assert any("resumed" in w["message"] for w in resumed.warnings)


def test_a_task_alone_in_flight_takes_every_workers_threads():
    assert task_threads(1, ready=1, idle=2, workers=2) == 2 and task_threads(2, ready=1, idle=4, workers=4) == 8
    assert task_threads(1, ready=1, idle=1, workers=2) == 1  # the other worker is busy
    assert task_threads(1, ready=3, idle=2, workers=2) == 1 and task_threads(None, ready=1, idle=2, workers=2) is None


@pytest.mark.parametrize("arch", ["wrn-10-1-swish", "wrn-34-10", "preact-resnet-18"])
def test_the_thread_count_does_not_change_logits_or_input_gradients(arch):
    """What lets a lone task take every core without changing a result: the same bits on 1 thread and on all."""
    import torch

    import zoo
    from zoo import devices

    torch.manual_seed(0)
    model = zoo.create_model(arch).eval().to(memory_format=torch.channels_last)
    x, y = torch.rand(8, 3, 32, 32), torch.arange(8) % 10
    before = torch.get_num_threads()
    seen = []
    try:
        for threads in (1, max(2, devices.cpu_cores())):
            torch.set_num_threads(threads)
            xx = x.clone().requires_grad_(True)
            logits = model(xx)
            grad, = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y), xx)
            seen.append((logits.detach(), grad))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(a, b) and torch.equal(g, h) for (a, g), (b, h) in zip(seen, seen[1:]))
