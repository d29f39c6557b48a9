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
from click.testing import CliRunner

from harness.cli import main
from harness.evaluation import evaluate
from harness.merge import merge_files
from zoo.results import MODEL_INFO_KEYS, EvaluationResult
from harness_helpers import TESTS_DIR, bare_autoattack, centroid_model, run_cli

ARGS = ["harness_helpers:centroid_model", "--n-examples", "32", "--batch-size", "8", "--version", "custom",
        "--attacks", "apgd-ce,apgd-t", "--n-iter", "10", "--seed", "3"]
KW = dict(n_examples=32, batch_size=8, version="custom", attacks=["apgd-ce", "apgd-t"], n_iter=10, seed=3,
          progress=False, workers=1)
QUICK = dict(KW, n_examples=16, attacks=["apgd-ce"], n_iter=1)
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


def test_resume_after_sigkill_mid_run_equals_uninterrupted(full, tmp_path):
    """Killed while APGD-T runs (APGD-CE's chunk is saved, the model takes 30 ms a call), then resumed."""
    out, state = tmp_path / "r.json", tmp_path / "r.state"
    args = [a if a != "harness_helpers:centroid_model" else "harness_helpers:sleepy_centroid_model" for a in ARGS]
    env = {**os.environ, "PYTHONPATH": str(TESTS_DIR), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "harness", "evaluate", *args, "--workers", "1", "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(state.glob("*-L001-*.pt")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = {p.name: p.stat().st_mtime_ns for p in state.glob("*.pt")}
    assert not out.exists() and not list(state.glob("*-L002-*.pt")), "the kill must land while APGD-T runs"
    assert len([n for n in saved if "-L000-" in n]) == 4 and len([n for n in saved if "-L001-" in n]) >= 1

    res = run_cli("evaluate", *args, "--workers", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    resumed = EvaluationResult.from_json(out)
    assert resumed.evaluation.per_example == full[1].evaluation.per_example
    assert resumed.model_info.autoattack_acc == full[1].model_info.autoattack_acc
    assert {p.name: p.stat().st_mtime_ns for p in state.glob("*.pt") if p.name in saved} == saved  # not recomputed
    first_start = json.loads((state / "started.json").read_text())["started_at"]
    assert resumed.evaluation.started_at == first_start
    assert any(f"resumed: {len(saved)} chunk task(s)" in w["message"] for w in resumed.evaluation.warnings)


def test_each_shard_is_a_bare_call_on_its_slice_and_shards_merge(full, tmp_path):
    from harness.data import load_tensors

    paths = []
    for k in range(3):
        paths.append(tmp_path / f"s{k}.json")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluate("harness_helpers:centroid_model", out=paths[-1], shard=f"{k}/3", **KW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, 32)
    shards = [EvaluationResult.from_json(p).evaluation for p in paths]
    assert [s.segments for s in shards] == [[[0, 8]], [[8, 16]], [[16, 32]]]  # whole batches of 8
    for shard in shards:
        lo, hi = shard.segments[0]
        _, y_adv, _ = bare_autoattack(centroid_model(), x[lo:hi], y[lo:hi], version="custom",
                                      attacks=["apgd-ce", "apgd-t"], n_iter=10, seed=3, batch_size=8)
        assert [o is None for o in shard.per_example["outcome"]] == (y_adv == y[lo:hi]).tolist()
    merged = merge_files(paths, tmp_path / "merged.json")
    assert merged.evaluation.segments == [[0, 8], [8, 16], [16, 32]]
    assert merged.evaluation.per_example["outcome"] == [o for s in shards for o in s.per_example["outcome"]]
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


def test_shards_without_a_batch_are_empty_results_that_merge(tmp_path):
    """3 shards of 16 images in batches of 8: shard 0 has no batch."""
    paths = [tmp_path / f"s{k}.json" for k in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shards = [evaluate("harness_helpers:centroid_model", out=p, shard=f"{k}/3", **QUICK)
                  for k, p in enumerate(paths)]
        whole = evaluate("harness_helpers:centroid_model", **QUICK)
    empty = shards[0].evaluation
    assert empty.shard == {"index": 0, "count": 3, "start": 0, "stop": 0} and empty.per_example["outcome"] == []
    merged = merge_files(paths, tmp_path / "merged.json")
    assert merged.evaluation.per_example["outcome"] == [o for s in shards for o in s.evaluation.per_example["outcome"]]
    assert len(merged.evaluation.per_example["outcome"]) == 16
    assert merged.evaluation.segments == [s.evaluation.segments[0] for s in shards[1:]]
    assert (merged.model_info.clean_acc, merged.model_info.autoattack_acc) == (whole.model_info.clean_acc,
                                                                                whole.model_info.autoattack_acc)


def _diagnosed_shards(tmp_path, count: int, checked: list[bool]) -> list[Path]:
    """Shards of 8 examples each (centroid model, seed 0); shard k runs the indicators when ``checked[k]``."""
    paths = [tmp_path / f"d{count}-{k}-{checked[k]}.json" for k in range(count)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, path in enumerate(paths):
            evaluate("harness_helpers:centroid_model", n_examples=8 * count, batch_size=8, version="custom",
                     attacks=["apgd-ce"], n_iter=5, shard=f"{k}/{count}", diagnostics=checked[k], out=path,
                     progress=False, workers=1)
    return paths


def test_merged_shards_keep_every_shards_indicators_under_the_worst_verdict(tmp_path):
    """Shard 0 (examples 0..7) is ok, shard 1 warns, shard 2 ran without indicators: the merged verdict is
    warning, each shard's section is kept, shard 2 is named unchecked, and the merge summary says so; ok shards
    with one unchecked stay ok with the unchecked shard named; no indicators anywhere: none. Broken by keeping the
    first shard's indicators alone (an ok verdict over a shard that warns)."""
    paths = _diagnosed_shards(tmp_path, 3, [True, True, False])
    sections = [json.loads(p.read_text())["evaluation"]["diagnostics"] for p in paths]
    assert [d and d["verdict"] for d in sections] == ["ok", "warning", None]       # the data behind the test
    fired = [r["name"] for r in sections[1]["indicators"] if r["verdict"] == "warning"]
    out = tmp_path / "merged.json"
    cli = CliRunner().invoke(main, ["merge", *map(str, paths), "--out", str(out)])
    assert cli.exit_code == 0, cli.output
    merged = EvaluationResult.from_json(out).evaluation
    assert merged.diagnostics == {"verdict": "warning", "shards": sections, "unchecked_shards": [2]}
    assert merged.diagnostics_verdict() == "warning" and merged.fired_indicators() == fired
    assert f"attack-failure indicators: warning ({', '.join(fired)}); shard(s) 2 not checked" in cli.output
    ok = merge_files(_diagnosed_shards(tmp_path, 2, [True, False])).evaluation
    assert (ok.diagnostics_verdict(), ok.fired_indicators(), ok.diagnostics["unchecked_shards"]) == ("ok", [], [1])
    assert ok.diagnostics_text() == "ok; shard(s) 1 not checked"
    none = merge_files(_diagnosed_shards(tmp_path, 2, [False, False])).evaluation
    assert none.diagnostics is None and none.diagnostics_text() == "not checked"


def test_merge_refuses_to_overwrite_one_of_its_shards(tmp_path):
    paths = [tmp_path / f"s{k}.json" for k in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for k, p in enumerate(paths):
            evaluate("harness_helpers:centroid_model", out=p, shard=f"{k}/2", **QUICK)
    before = paths[1].read_bytes()
    for out in (paths[1], tmp_path / "." / "s1.json"):
        res = CliRunner().invoke(main, ["merge", str(paths[0]), str(paths[1]), "--out", str(out)])
        assert res.exit_code == 1 and f"--out {out} is one of the shards to merge" in res.output
    assert paths[1].read_bytes() == before


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


def test_evaluation_grows_by_a_second_segment_keeping_the_first(full, tmp_path):
    """12 images, then 32: images 12..31 are attacked as a separate call; the first call's chunks are kept."""
    out, state = tmp_path / "g.json", tmp_path / "g.state"
    small = {**KW, "n_examples": 12}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = evaluate("harness_helpers:centroid_model", out=out, state_dir=state, **small)
        kept = {p.name: p.stat().st_mtime_ns for p in state.glob("*.pt")}
        grown = evaluate("harness_helpers:centroid_model", out=out, state_dir=state, **KW)
        from harness.data import load_tensors

        x, y = load_tensors("cifar10", "test", None, 32)
    ev = grown.evaluation
    assert ev.segments == [[0, 12], [12, 32]] and ev.n_examples == 32
    assert ev.per_example["outcome"][:12] == first.evaluation.per_example["outcome"]
    _, y_adv, _ = bare_autoattack(centroid_model(), x[12:], y[12:], version="custom", attacks=["apgd-ce", "apgd-t"],
                                  n_iter=10, seed=3, batch_size=8)
    assert [o is None for o in ev.per_example["outcome"][12:]] == (y_adv == y[12:]).tolist()
    assert {p.name: p.stat().st_mtime_ns for p in state.glob("*.pt") if p.name in kept} == kept
    assert json.loads((state / "config.json").read_text())["n_examples"] == 32
    assert any("images 12..31 are a separate segment" in w["message"] for w in ev.warnings)
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
