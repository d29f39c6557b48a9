"""Leaderboards from a RobustBench-layout model_info tree, verify and the benchmark() drop-in."""

from __future__ import annotations

import json
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

import harness
from harness.cli import main
from harness.evaluation import evaluate
from harness.leaderboard import leaderboard
from harness_helpers import centroid_model

RB_DIR = Path(__file__).parent / "data" / "robustbench-model-info"  # RobustBench model_info files
KW = dict(n_examples=16, batch_size=8, version="custom", attacks=["apgd-ce"], n_iter=5, progress=False, workers=1)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """model_info/{dataset}/{threat_model}/{Name}.json, as in RobustBench, plus one of our results."""
    root = tmp_path_factory.mktemp("lb") / "model_info"
    examples = sorted(RB_DIR.glob("*.json"))
    for i, path in enumerate(examples):
        info = json.loads(path.read_text())
        dest = root / info["dataset"] / "Linf" / f"Pang2022Robustness_{i}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    out = root / "cifar10" / "Linf" / "Tiny_Centroid.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate("harness_helpers:centroid_model", out=out, model_info={"name": "A <tiny> & linear model"}, **KW)
    return root, out


def test_markdown_sorted_like_robustbench(tree):
    root, _ = tree
    text = leaderboard(root, "cifar10", "Linf", "md")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    accs = [float(r.split("|")[5]) for r in rows]
    assert accs == sorted(accs, reverse=True) and rows[-1].split("|")[2].strip() == "Tiny_Centroid"
    data = json.loads(leaderboard(root, None, None, "json"))
    assert {(g["dataset"], g["threat_model"]) for g in data} >= {("cifar10", "Linf")}


def test_html_renders_in_headless_chromium(tree, tmp_path):
    root, _ = tree
    page = tmp_path / "lb.html"
    result = CliRunner().invoke(main, ["leaderboard", str(root), "--dataset", "cifar10", "--format", "html",
                                       "--out", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "<svg" in html and 'src="http' not in html  # self-contained: nothing to fetch
    assert "A &lt;tiny&gt; &amp; linear model" in html and "<script src" not in html
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed")
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                          "--virtual-time-budget=2000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert "<table" in dom and "Tiny_Centroid" in dom and dom.count("<circle") == dom.count("<tr>") - 1


def test_verify_consistent_and_inconsistent(tree, tmp_path):
    _, out = tree
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(out), "--n-examples", "16", "--workers", "1", "--json"])
    assert ok.exit_code == 0, ok.output
    report = json.loads(ok.stdout)
    assert report["consistent"] and report["per_example_agreement"] == 1.0 and report["method"] == "Clopper-Pearson"
    forged = json.loads(out.read_text())
    forged["evaluation"]["robust_accuracy"] = 90.0
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    bad = runner.invoke(main, ["verify", str(tmp_path / "forged.json"), "--n-examples", "16", "--workers", "1"])
    assert bad.exit_code == 1 and "INCONSISTENT" in bad.stdout


def test_benchmark_is_robustbench_compatible():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clean, robust = harness.benchmark(centroid_model(), n_examples=8, dataset="cifar10", threat_model="Linf",
                                          data_dir=None, batch_size=8, eps=0.5, device="cpu")
    assert 0 < clean <= 1 and robust == 0.0  # eps 0.5 breaks a linear model, so later attacks are skipped


def test_zoo_entries_join_the_leaderboard(tree):
    root, _ = tree
    out = json.loads(leaderboard(root, "cifar10", "Linf", "json", include_zoo=True))
    models = out[0]["models"]
    keys = [m["key"] for m in models]
    assert {"cifar10-linf", "cifar10-linf-wrn70-16"} <= set(keys)
    robust = [float(m["autoattack_acc"]) for m in models]
    assert robust == sorted(robust, reverse=True)
    zoo_only = CliRunner().invoke(main, ["leaderboard", "--zoo", "--dataset", "cifar100"])
    assert zoo_only.exit_code == 0 and "cifar100-linf-wrn70-16" in zoo_only.output and "| 33.05 |" in zoo_only.output
    neither = CliRunner().invoke(main, ["leaderboard"])
    assert neither.exit_code == 1 and "--zoo" in neither.output
