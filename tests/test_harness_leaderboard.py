"""Leaderboards ranked exactly as RobustBench ranks (its own model_info tree and ranking code),
eligibility marks, skipped files, the HTML page in a real browser; verify and the benchmark() drop-in."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from scipy.stats import binomtest

import harness
from harness.cli import main
from harness.data import load_tensors
from harness.evaluation import evaluate
from harness.leaderboard import leaderboard
from harness_helpers import centroid_model, robustbench_order, write_official_cifar10_test
from zoo.registry import get_entry

RB_DIR = Path(__file__).parent / "data" / "robustbench-model-info"  # RobustBench model_info files
RB_TREE = Path(__file__).parent / "data" / "robustbench-model-info-tree" / "model_info"  # RobustBench's whole tree
BOARDS = sorted((p.parent.name, p.name) for p in RB_TREE.glob("*/*") if p.is_dir())
KW = dict(n_examples=16, batch_size=8, version="custom", attacks=["apgd-ce"], n_iter=5, progress=False, workers=1)
EXTERNAL = ["Amini2024MeanSparse_S-WRN-94-16", "Bartoldson2024Adversarial_WRN-94-16"]  # external reorders these


# RobustBench's ranking rule, written out (robustbench.utils.ACC_FIELDS: the first field a file has ranks it,
# descending, ties in file-name order), for the tests that run without robustbench; the marked test below checks
# that it gives robustbench's own order on every board of RobustBench's tree.
RANK_RULE = {"Linf": ("external", "autoattack_acc"), "L2": ("external", "autoattack_acc"),
             "corruptions": ("corruptions_acc",)}


def rule_order(folder: Path, threat_model: str) -> list[str]:
    """The order RobustBench's ranking rule (``RANK_RULE``) gives the model_info files of ``folder``."""
    models = [(p.stem, json.loads(p.read_text())) for p in sorted(folder.glob("*.json"))]
    fields = RANK_RULE[threat_model]
    models.sort(key=lambda m: float(next(m[1][k] for k in fields if k in m[1])), reverse=True)
    return [name for name, _ in models]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """model_info/{dataset}/{threat_model}/{Name}.json, as in RobustBench, plus one of our (subset) results."""
    root = tmp_path_factory.mktemp("lb") / "model_info"
    for i, path in enumerate(sorted(RB_DIR.glob("*.json"))):
        info = json.loads(path.read_text())
        dest = root / info["dataset"] / "Linf" / f"Pang2022Robustness_{i}.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, dest)
    for name in EXTERNAL:
        shutil.copy(RB_TREE / "cifar10" / "Linf" / f"{name}.json", root / "cifar10" / "Linf" / f"{name}.json")
    out = root / "cifar10" / "Linf" / "Tiny_Centroid.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate("harness_helpers:centroid_model", out=out, model_info={"name": "A <tiny> & linear model"}, **KW)
    return root, out


@pytest.mark.robustbench
@pytest.mark.parametrize("dataset,threat_model", BOARDS, ids=lambda v: str(v))
def test_the_rule_written_out_is_robustbenchs_own_order(dataset, threat_model):
    assert rule_order(RB_TREE / dataset / threat_model, threat_model) == \
        robustbench_order(RB_TREE / dataset / threat_model, threat_model)


@pytest.mark.parametrize("dataset,threat_model", BOARDS, ids=lambda v: str(v))
def test_robustbench_tree_ranks_exactly_as_robustbench(dataset, threat_model):
    [board] = json.loads(leaderboard(RB_TREE, dataset, threat_model, "json"))["leaderboards"]
    assert [m["key"] for m in board["models"]] == rule_order(RB_TREE / dataset / threat_model, threat_model)
    assert board["not_leaderboard_grade"] == [] and len(board["models"]) == len(list((RB_TREE / dataset / threat_model).glob("*.json")))
    for m in board["models"]:
        assert m["best_known_acc"] == (m.get("external") or m.get("autoattack_acc") or m["corruptions_acc"])


def test_external_changes_the_order_where_robustbench_says_it_does():
    for dataset, threat_model in [("cifar10", "Linf"), ("cifar10", "L2"), ("cifar100", "Linf")]:
        files = sorted((RB_TREE / dataset / threat_model).glob("*.json"))
        by_autoattack = [p.stem for p in sorted(files, key=lambda p: float(json.loads(p.read_text())["autoattack_acc"]),
                                                reverse=True)]
        assert rule_order(RB_TREE / dataset / threat_model, threat_model) != by_autoattack
    text = leaderboard(RB_TREE, "cifar10", "Linf", "md")
    row = next(line for line in text.splitlines() if "| Amini2024MeanSparse_S-WRN-94-16 |" in line)
    assert row.startswith("| 2 |") and "| 75.28 | 73.10 | no |" in row            # AutoAttack, best known, unreliable
    assert "| Xiao2020Enhancing |" in text and "| Alayrac2019Labels |" in text
    flags = {line.split(" | ")[1]: line.split(" | ")[6] for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()}
    assert flags["Xiao2020Enhancing"] == "yes" and flags["Alayrac2019Labels"] == "Unknown"   # no 'unreliable' key
    assert "<br>*It uses additional 300M synthetic images in training.*" in text                 # footnotes kept


def test_rows_that_are_not_leaderboard_grade_are_marked_and_ranked_apart(tree):
    root, _ = tree
    data = json.loads(leaderboard(root, "cifar10", "Linf", "json"))["leaderboards"][0]
    keys = [m["key"] for m in data["models"]]
    expected = [k for k in rule_order(root / "cifar10" / "Linf", "Linf") if k != "Tiny_Centroid"]
    assert keys == expected and keys[:2] == EXTERNAL[::-1]     # MeanSparse: AutoAttack 75.28, external 73.10
    [apart] = data["not_leaderboard_grade"]
    assert apart["key"] == "Tiny_Centroid" and apart["rank"] == 1 and not apart["leaderboard_grade"]
    assert apart["not_leaderboard_grade_because"] == [
        "a subset: 16 of the 10,000 test images", "the bundled JPEG-decoded subset, not the official test files",
        "custom attacks (apgd-ce)", "reduced attack iterations (n_iter=5)"]
    text = leaderboard(root, "cifar10", "Linf", "md")
    main_table, apart_table = text.split("### Not leaderboard-grade (ranked apart)")
    assert "Tiny_Centroid" not in main_table and "| 1 | Tiny_Centroid [indicators warn] |" in apart_table  # its indicators warn
    assert "custom attacks (apgd-ce); reduced attack iterations (n_iter=5) |" in apart_table
    together = json.loads(leaderboard(root, "cifar10", "Linf", "json", together=True))["leaderboards"][0]
    assert [m["key"] for m in together["models"]] == rule_order(root / "cifar10" / "Linf", "Linf")
    assert together["not_leaderboard_grade"] == []
    cli = CliRunner().invoke(main, ["leaderboard", str(root), "--dataset", "cifar10", "--together"])
    assert cli.exit_code == 0 and "### Not leaderboard-grade" not in cli.stdout
    assert "| Not leaderboard-grade because |" in cli.stdout and "| Tiny_Centroid [indicators warn] |" in cli.stdout


def test_a_full_official_standard_evaluation_is_leaderboard_grade(tree, tmp_path):
    """The whole official split (10,000 images in the cifar-10-batches-py layout), standard AutoAttack, one run:
    ranked in the main table among RobustBench's entries. (Synthetic images, so that only 8 of them need
    attacking; what makes a result leaderboard-grade is its provenance.)"""
    root, _ = tree
    board_dir = tmp_path / "model_info" / "cifar10" / "Linf"
    shutil.copytree(root / "cifar10" / "Linf", board_dir)
    out = board_dir / "Full_Official.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate("harness_helpers:mean_threshold_model", "cifar10", "Linf", data_dir=write_official_cifar10_test(tmp_path),
                 batch_size=10_000, out=out, progress=False, workers=1)
    ev = json.loads(out.read_text())["evaluation"]
    assert (ev["n_examples"], ev["autoattack"]["version"], ev["clean_accuracy"], ev["robust_accuracy"]) == \
        (10_000, "standard", 0.08, 0.0)
    assert ev["data"]["leaderboard_eligible"] is True          # the official files, whole: the one eligible case
    board = json.loads(leaderboard(tmp_path / "model_info", "cifar10", "Linf", "json"))["leaderboards"][0]
    rows = {m["key"]: m for m in board["models"]}
    assert "Full_Official" in rows, board["not_leaderboard_grade"]
    assert rows["Full_Official"]["leaderboard_grade"] and not rows["Full_Official"].get("not_leaderboard_grade_because")
    assert [m["key"] for m in board["not_leaderboard_grade"]] == ["Tiny_Centroid"]
    assert [m["key"] for m in board["models"]] == [
        k for k in rule_order(board_dir, "Linf") if k != "Tiny_Centroid"]
    assert board["models"][-1]["key"] == "Full_Official"  # 0 % robust: last


def test_one_shard_and_another_autoattack_version_are_reasons(tmp_path):
    board_dir = tmp_path / "model_info" / "cifar10" / "Linf"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate("harness_helpers:centroid_model", n_examples=16, batch_size=8, version="rand", n_iter=2,
                 shard="0/2", out=board_dir / "Shard_Rand.json", progress=False, workers=1)
        evaluate("harness_helpers:centroid_model", n_examples=8, batch_size=8, version="plus", n_iter=1,
                 out=board_dir / "Plus.json", progress=False, workers=1)
    apart = {m["key"]: m["not_leaderboard_grade_because"]
             for m in json.loads(leaderboard(tmp_path / "model_info", "cifar10", "Linf", "json"))["leaderboards"][0]
             ["not_leaderboard_grade"]}
    assert apart == {
        "Shard_Rand": ["one shard (0/2) of an evaluation: merge the shards",
                       "the bundled JPEG-decoded subset, not the official test files",
                       "AutoAttack version rand (leaderboards use standard)", "reduced attack iterations (n_iter=2)"],
        "Plus": ["a subset: 8 of the 10,000 test images", "the bundled JPEG-decoded subset, not the official test files",
                 "AutoAttack version plus (leaderboards use standard)", "reduced attack iterations (n_iter=1)"]}


def test_zoo_entries_join_with_their_eligibility(tree):
    root, _ = tree
    board = json.loads(leaderboard(root, "cifar10", "Linf", "json", include_zoo=True))["leaderboards"][0]
    main_keys = [m["key"] for m in board["models"]]
    assert {"cifar10-linf", "cifar10-linf-wrn70-16"} <= set(main_keys)
    values = [float(m["best_known_acc"]) for m in board["models"]]
    assert values == sorted(values, reverse=True)
    apart = {m["key"]: m["not_leaderboard_grade_because"] for m in board["not_leaderboard_grade"]}
    n = get_entry("cifar10-linf-tiny").reported["n_examples"]
    assert apart["cifar10-linf-tiny"] == [f"a subset: {n:,} of the 10,000 test images",
                                          "cifar10_test.npz, a copy of the test data, not the official test files"]
    assert set(apart) == {"cifar10-linf-tiny", "cifar10-linf-tiny-trades", "Tiny_Centroid"}
    zoo_only = CliRunner().invoke(main, ["leaderboard", "--zoo", "--dataset", "cifar100"])
    assert zoo_only.exit_code == 0 and "cifar100-linf-wrn70-16" in zoo_only.output and "| 33.05 |" in zoo_only.output
    neither = CliRunner().invoke(main, ["leaderboard"])
    assert neither.exit_code == 1 and "--zoo" in neither.output


def test_files_that_cannot_be_ranked_are_named_with_the_reason(tmp_path):
    root = tmp_path / "model_info" / "cifar10" / "Linf"
    root.mkdir(parents=True)
    good = json.loads((RB_DIR / "cifar10_Linf_Pang2022Robustness_WRN28_10.json").read_text())
    (root / "Good.json").write_text(json.dumps(good))
    (root / "NoAA.json").write_text(json.dumps({k: v for k, v in good.items() if k != "autoattack_acc"}))
    (root / "NoClean.json").write_text(json.dumps({k: v for k, v in good.items() if k != "clean_acc"}))
    (root / "Text.json").write_text(json.dumps({**good, "clean_acc": "eighty"}))
    (root / "List.json").write_text("[1, 2]")
    (root / "Broken.json").write_text("{not json")
    (root / "Good.state").mkdir()                                  # harness progress folders are not model_info
    (root / "Good.state" / "config.json").write_text("{}")
    out = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "model_info"), "--format", "json"])
    assert out.exit_code == 0, out.output
    reasons = {Path(s["path"]).name: s["reason"] for s in json.loads(out.stdout)["skipped"]}
    assert reasons == {"Broken.json": reasons["Broken.json"], "List.json": "not a JSON object",
                       "NoAA.json": "lacks external and autoattack_acc", "NoClean.json": "lacks clean_acc",
                       "Text.json": "clean_acc is not a number ('eighty')"}
    assert reasons["Broken.json"].startswith("not valid JSON")
    for name, reason in reasons.items():
        assert f"skipped {root / name}: {reason}" in out.stderr
    assert [m["key"] for m in json.loads(out.stdout)["leaderboards"][0]["models"]] == ["Good"]
    (root / "Good.json").unlink()
    empty = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "model_info")])
    assert empty.stdout == "No results found (5 file(s) skipped).\n" and empty.stderr.count("skipped ") == 5


@pytest.fixture(scope="module")
def flagged_tree(tmp_path_factory):
    """A board with one result whose indicators warn (a quantized input), one ok, one run without indicators and
    a RobustBench file; returns the board's folder and the indicators that warn, read from the warning result."""
    board = tmp_path_factory.mktemp("flagged") / "model_info" / "cifar10" / "Linf"
    board.mkdir(parents=True)
    shutil.copy(RB_DIR / "cifar10_Linf_Pang2022Robustness_WRN28_10.json", board / "Pang2022Robustness_WRN28_10.json")
    quick = dict(version="custom", attacks=["apgd-ce"], n_iter=2, progress=False, workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate("masked_models:quantized_model", n_examples=4, batch_size=4, out=board / "Quantized.json", **quick)
        evaluate("cifar10-linf-tiny", n_examples=8, batch_size=8, out=board / "Tiny_Ok.json", **quick)
        evaluate("cifar10-linf-tiny", n_examples=8, batch_size=8, out=board / "Tiny_Unchecked.json", diagnostics=False,
                 **quick)
    records = json.loads((board / "Quantized.json").read_text())["evaluation"]["diagnostics"]["indicators"]
    fired = [r["name"] for r in records if r["verdict"] == "warning"]
    assert "silent-gradients" in fired and json.loads((board / "Tiny_Ok.json").read_text())["evaluation"][
        "diagnostics"]["verdict"] == "ok"
    return board, fired


def test_a_row_whose_indicators_warn_is_flagged_in_markdown_and_json_and_ranked_by_its_figure(flagged_tree):
    """A warning row carries a mark by its name, the indicators that fired in its column and in the legend; a row
    without indicators says "not checked" (JSON verdict null), never "ok"; the order stays RobustBench's.
    Broken by ranking a warning row without its marker, by reporting a row without indicators as "ok", or by
    ranking flagged rows last."""
    board, fired = flagged_tree
    root = board.parent.parent
    text = leaderboard(root, "cifar10", "Linf", "md", together=True)
    lines = {line.split(" | ")[1].split(" ")[0]: line for line in text.splitlines() if line.startswith("| ")
             and line[2].isdigit()}
    warning = f"warning ({', '.join(fired)})"
    assert f"| Quantized [indicators warn] |" in lines["Quantized"] and f"| {warning} |" in lines["Quantized"]
    assert "| Tiny_Ok |" in lines["Tiny_Ok"] and "| ok |" in lines["Tiny_Ok"]
    for key in ("Tiny_Unchecked", "Pang2022Robustness_WRN28_10"):
        assert f"| {key} |" in lines[key] and "| not checked |" in lines[key] and "| ok |" not in lines[key]
    legend = next(line for line in text.splitlines() if line.startswith("[indicators warn]: "))
    assert f"Quantized ({', '.join(fired)})" in legend and "Tiny" not in legend
    assert any(line.startswith("not checked: ") for line in text.splitlines())
    [data] = json.loads(leaderboard(root, "cifar10", "Linf", "json", together=True))["leaderboards"]
    rows = {m["key"]: m["diagnostics"] for m in data["models"]}
    assert rows == {"Quantized": {"verdict": "warning", "indicators": fired, "summary": warning},
                    "Tiny_Ok": {"verdict": "ok", "indicators": [], "summary": "ok"},
                    "Tiny_Unchecked": {"verdict": None, "indicators": [], "summary": "not checked"},
                    "Pang2022Robustness_WRN28_10": {"verdict": None, "indicators": [], "summary": "not checked"}}
    assert [m["key"] for m in data["models"]] == rule_order(board, "Linf")


def test_zoo_entries_without_indicators_are_not_checked():
    """The zoo's reported figures and the bundled evaluations behind them (written before the indicators) are
    not checked. Broken by giving a row with no result, or a result without indicators, the verdict "ok"."""
    [board] = json.loads(leaderboard(None, "cifar10", "Linf", "json", include_zoo=True))["leaderboards"]
    rows = board["models"] + board["not_leaderboard_grade"]
    assert {"cifar10-linf", "cifar10-linf-tiny"} <= {m["key"] for m in rows}
    assert all(m["diagnostics"] == {"verdict": None, "indicators": [], "summary": "not checked"} for m in rows)


def _browser() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but chromium is not installed: .ci/run installs it (apt-get install chromium)")
        pytest.skip("chromium is not installed (CI installs it)")
    return chromium


def test_html_page_renders_in_headless_chromium(tree, tmp_path):
    root, _ = tree
    page = tmp_path / "lb.html"
    result = CliRunner().invoke(main, ["leaderboard", str(root), "--dataset", "cifar10", "--format", "html",
                                       "--out", str(page)])
    assert result.exit_code == 0, result.output
    html = page.read_text()
    assert "<svg" in html and 'src="http' not in html and "<script src" not in html  # self-contained
    assert "A &lt;tiny&gt; &amp; linear model" in html
    chromium = _browser()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars",
             "--virtual-time-budget=2000", "--window-size=1400,2200"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    tables = dom.split('<table class="')[1:]
    assert [t.split('"')[0] for t in tables] == ["lb", "lb apart"]
    rendered = [[chunk.split('"')[0] for chunk in t.split("</table>")[0].split('data-key="')[1:]] for t in tables]
    expected = [k for k in rule_order(root / "cifar10" / "Linf", "Linf") if k != "Tiny_Centroid"]
    assert rendered == [expected, ["Tiny_Centroid"]]
    assert dom.count('<circle class="pt"') == len(expected) and dom.count('<circle class="pt apart"') == 1
    shot = tmp_path / "lb.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2200, 1400)
    assert (pixels.min(axis=2) < 200).mean() > 0.01                            # not blank: text and table lines
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    points = (b > r + 50) & (g > r + 20)          # the plot's #3465a4 dots (links are pure blue: r == g)
    ring = (r > g + 60) & (r > b + 60)            # the red ring of the not-leaderboard-grade point
    assert points.sum() > 20 * len(expected) and ring.sum() > 10


def test_html_page_flags_a_warning_row_in_headless_chromium(flagged_tree, tmp_path):
    """The warning row is highlighted and marked, the legend names the indicators that fired, and the other rows
    are not highlighted. Broken by rendering a warning row without its ``warn`` class (a plain row)."""
    board, fired = flagged_tree
    page = tmp_path / "flagged.html"
    result = CliRunner().invoke(main, ["leaderboard", str(board.parent.parent), "--together", "--format", "html",
                                       "--out", str(page)])
    assert result.exit_code == 0, result.output
    chromium = _browser()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--hide-scrollbars",
             "--virtual-time-budget=2000", "--window-size=1400,1200"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    rows = {chunk.split('"')[0]: chunk.split("</tr>")[0] for chunk in dom.split('data-key="')[1:]}
    assert set(rows) == {"Quantized", "Tiny_Ok", "Tiny_Unchecked", "Pang2022Robustness_WRN28_10"}
    flagged = [key for classes, key in re.findall(r'<tr class="([^"]*)" data-key="([^"]*)"', dom) if "warn" in classes]
    assert flagged == ["Quantized"] and "Quantized [indicators warn]" in rows["Quantized"]
    assert f"warning ({', '.join(fired)})" in rows["Quantized"] and "not checked" in rows["Tiny_Unchecked"]
    assert f"Quantized ({', '.join(fired)})" in dom.split("[indicators warn]: ")[1]
    shot = tmp_path / "flagged.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    highlight = (np.abs(pixels - [0xfb, 0xe3, 0xc0]).sum(axis=2) < 12)        # the warning row's background
    assert highlight.sum() > 2000


def test_verify_consistent_and_inconsistent(tree, tmp_path):
    _, out = tree
    runner = CliRunner()
    ok = runner.invoke(main, ["verify", str(out), "--n-examples", "16", "--workers", "1", "--json"])
    report = json.loads(ok.stdout)
    assert ok.exit_code == 1 and not report["verified"]     # consistent, but the centroid's indicators warn
    assert report["consistent"] and report["per_example_agreement"] == 1.0 and report["method"] == "Clopper-Pearson"
    exact = binomtest(report["n_robust"], report["n_examples"]).proportion_ci(0.95, method="exact")
    assert report["interval"] == [pytest.approx(100 * exact.low), pytest.approx(100 * exact.high)]
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
        x, y = load_tensors("cifar10", "test", None, 8)
    with torch.no_grad():
        assert clean == (centroid_model()(x).argmax(1) == y).float().mean().item() > 0  # a fraction, as RobustBench's
    assert robust == 0.0  # eps 0.5 breaks a linear model, so later attacks are skipped
