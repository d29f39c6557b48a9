"""Evaluation, result format, resumption, sharding and torchrun (tiny linear model, bundled data)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from harness.evaluation import evaluate
from harness.merge import merge_files
from harness.results import MODEL_INFO_KEYS, EvaluationResult
from harness_helpers import TESTS_DIR, centroid_model, run_cli

ARGS = ["harness_helpers:centroid_model", "--n-examples", "32", "--batch-size", "8", "--version", "custom",
        "--attacks", "apgd-ce,apgd-t", "--n-iter", "10", "--seed", "3"]
KW = dict(n_examples=32, batch_size=8, version="custom", attacks=["apgd-ce", "apgd-t"], n_iter=10, seed=3,
          progress=False, workers=1)
RB_EXAMPLE = Path(__file__).parent / "data" / "robustbench-model-info" / "cifar10_Linf_Pang2022Robustness_WRN28_10.json"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "full.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate("harness_helpers:centroid_model", out=out, **KW)
    return out, result


def test_result_has_robustbench_keys_and_provenance(full):
    out, result = full
    data = json.loads(out.read_text())
    assert list(data)[:len(MODEL_INFO_KEYS)] == list(MODEL_INFO_KEYS)
    if RB_EXAMPLE.is_file():
        assert set(data) - {"evaluation"} == set(json.loads(RB_EXAMPLE.read_text()))
    assert data["eps"] == "8/255" and data["dataset"] == "cifar10"
    for key in ("clean_acc", "autoattack_acc", "reported"):
        assert isinstance(data[key], str) and len(data[key].split(".")[1]) == 2
    ev = data["evaluation"]
    assert ev["threat_model"] == "Linf" and abs(ev["eps"] - 8 / 255) < 1e-12 and ev["n_examples"] == 32
    assert list(ev["robust_accuracy_after"]) == ["apgd-ce", "apgd-t"]
    assert ev["robust_accuracy_after"]["apgd-t"] == ev["robust_accuracy"] <= ev["clean_accuracy"]
    assert ev["autoattack"] == {"version": "custom", "attacks": ["apgd-ce", "apgd-t"], "n_iter": 10}
    assert set(ev["versions"]) >= {"score-zoo", "torch", "pyautoattack"} and len(ev["weights_sha256"]) == 64
    assert ev["data"]["leaderboard_eligible"] is False
    assert any("bundled" in w["message"] for w in ev["warnings"])
    assert len(ev["per_example"]["outcome"]) == 32
    assert 0 < result.robust_acc < result.clean_acc  # the tiny model is partly robust at 8/255 with 10 iterations
    assert EvaluationResult.from_json(out).to_dict() == data


def test_same_seed_same_result_and_train_mode_switched(full):
    model = centroid_model().train()
    with pytest.warns(UserWarning, match="train mode"):
        again = evaluate(model, **KW)
    assert not model.training
    assert again.evaluation.per_example == full[1].evaluation.per_example
    assert any("train mode" in w["message"] for w in again.evaluation.warnings)


def test_resume_after_sigkill_equals_uninterrupted(full, tmp_path):
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "evaluate", *ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "r.state"
    deadline = time.time() + 60
    while time.time() < deadline and not list(state.glob("batch-*.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(state.glob("batch-*.pt")))
    assert 1 <= done and not out.exists() or done == 4
    res = run_cli("evaluate", *ARGS, "--out", str(out))
    assert res.returncode == 0, res.stderr
    resumed = EvaluationResult.from_json(out)
    assert resumed.evaluation.per_example == full[1].evaluation.per_example
    assert resumed.model_info.autoattack_acc == full[1].model_info.autoattack_acc
    if done < 4:  # the provenance says the work spans two runs, starting with the first
        first_start = json.loads((state / "started.json").read_text())["started_at"]
        assert resumed.evaluation.started_at == first_start
        assert any("resumed" in w["message"] for w in resumed.evaluation.warnings)


def test_shards_merge_to_the_full_result_and_refuse_bad_sets(full, tmp_path):
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"s{k}.json")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluate("harness_helpers:centroid_model", out=paths[-1], shard=f"{k}/3", **KW)
    merged = merge_files(paths, tmp_path / "merged.json")
    assert merged.evaluation.per_example == full[1].evaluation.per_example
    assert merged.evaluation.robust_accuracy_after == full[1].evaluation.robust_accuracy_after
    assert merged.model_info.clean_acc == full[1].model_info.clean_acc
    res = run_cli("merge", str(paths[0]), str(paths[1]), str(paths[1]), str(paths[2]), "--out", str(tmp_path / "m.json"))
    assert res.returncode == 1 and "overlaps" in res.stderr
    res = run_cli("merge", str(paths[0]), str(paths[2]), "--out", str(tmp_path / "m.json"))
    assert res.returncode == 1 and "missing" in res.stderr
    other = json.loads(paths[1].read_text())
    other["evaluation"]["seed"] = 4
    (tmp_path / "other.json").write_text(json.dumps(other))
    res = run_cli("merge", str(paths[0]), str(tmp_path / "other.json"), str(paths[2]), "--out", str(tmp_path / "m.json"))
    assert res.returncode == 1 and "different evaluation" in res.stderr and "seed" in res.stderr
    assert not (tmp_path / "m.json").exists()


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
def test_torchrun_two_processes_equal_single_process(full, tmp_path):
    out = tmp_path / "dist.json"
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([torchrun, "--nproc-per-node", "2", "--master-port", "29517", "-m", "harness", "evaluate",
                          *ARGS, "--out", str(out), "--device", "cpu"], env=env, capture_output=True, text=True,
                         timeout=180)
    assert res.returncode == 0, res.stderr[-2000:]
    result = EvaluationResult.from_json(out)
    assert result.evaluation.per_example == full[1].evaluation.per_example
    assert "2 processes" in result.evaluation.device


def test_evaluation_grows_to_more_images_keeping_full_batches(full, tmp_path):
    out, state = tmp_path / "g.json", tmp_path / "g.state"
    small = {**KW, "n_examples": 12}  # batch 0 full, batch 1 holds 4 of its 8 images
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate("harness_helpers:centroid_model", out=out, state_dir=state, **small)
        kept = (state / "batch-000000-eps00.pt").stat().st_mtime_ns
        grown = evaluate("harness_helpers:centroid_model", out=out, state_dir=state, **KW)
    assert grown.evaluation.per_example == full[1].evaluation.per_example
    assert (state / "batch-000000-eps00.pt").stat().st_mtime_ns == kept
    assert json.loads((state / "config.json").read_text())["n_examples"] == 32
    assert any("grown from an evaluation of the first 12 images" in w["message"] for w in grown.evaluation.warnings)
    # other first images (here: a changed fingerprint) never grow; neither does an evaluation shrink
    other = tmp_path / "o.state"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate("harness_helpers:centroid_model", state_dir=other, **small)
    config = json.loads((other / "config.json").read_text())
    config["data"]["sha256"] = "0" * 64
    (other / "config.json").write_text(json.dumps(config))
    for state_dir, n in ((other, 32), (state, 12)):
        args = list(ARGS)
        args[args.index("--n-examples") + 1] = str(n)
        res = run_cli("evaluate", *args, "--state-dir", str(state_dir))
        assert res.returncode == 1 and "belongs to a different evaluation" in res.stderr
