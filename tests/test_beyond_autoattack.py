"""--extra-attacks malt: a pooled, resumable stage after AutoAttack; `external` and its footnote; merged shards;
a leaderboard with an external figure ranked exactly as RobustBench's own code ranks it."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from harness.adversarial import read_adversarial
from harness.cli import main
from harness.data import load_tensors
from harness.evaluation import evaluate
from harness.leaderboard import leaderboard
from harness.merge import merge_files
from harness_helpers import bare_autoattack, centroid_model, robustbench_order

# The centroid model at 2/255 with one APGD-CE iteration leaves survivors that MALT (also one iteration) breaks.
KW = dict(n_examples=32, batch_size=8, eps="2/255", version="custom", attacks=["apgd-ce"], n_iter=1, progress=False,
          workers=1, device="cpu")
MODEL = "harness_helpers:centroid_model"


def _evaluate(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(MODEL, **{**KW, **kw})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("beyond")
    plain = _evaluate(out=tmp / "plain.json")
    malt = _evaluate(out=tmp / "malt.json", extra_attacks=["malt"], save_adversarial=tmp / "adv.safetensors")
    return tmp, plain, malt


@pytest.fixture(scope="module")
def reference(runs):
    """What the figures must be, from sources other than the harness: robust after AutoAttack from one bare
    pyautoattack call, and MALT's breaks re-scored here (its saved examples, classified by the model, inside the
    ball, on examples AutoAttack left robust). Returns (robust after AutoAttack, MALT's breaks) as index sets."""
    tmp, _, _ = runs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, 32)
    model = centroid_model()
    _, y_adv, _ = bare_autoattack(model, x, y, version="custom", attacks=["apgd-ce"], n_iter=1, eps=2 / 255,
                                  batch_size=8)
    robust = {i for i, r in enumerate((y_adv == y).tolist()) if r}
    tensors, about = read_adversarial(tmp / "adv.safetensors")
    rows = [r for r, k in enumerate(tensors["attack"].tolist()) if about["attacks"][k] == "malt"]
    idx = tensors["indices"][rows]
    x_adv = tensors["x_adv"][rows]
    with torch.no_grad():
        fooled = model(x_adv).argmax(1) != y[idx]
    assert bool(fooled.all()) and float((x_adv - x[idx]).abs().amax()) <= 2 / 255 + 1e-6
    broken = set(idx.tolist())
    assert broken and broken <= robust          # MALT breaks examples AutoAttack left robust
    return robust, broken


def test_malt_keeps_autoattack_and_sets_external(runs, reference):
    tmp, plain, malt = runs
    robust, broken = reference
    assert malt.evaluation.per_example == plain.evaluation.per_example              # AutoAttack's answers unchanged
    assert malt.model_info.autoattack_acc == plain.model_info.autoattack_acc == f"{100 * len(robust) / 32:.2f}"
    extra = malt.evaluation.extra_attacks
    assert extra["attacks"] == ["malt"] and extra["broken"] == {"malt": len(broken)}
    assert extra["robust_accuracy"] == pytest.approx(100 * (len(robust) - len(broken)) / 32)
    assert extra["settings"]["malt"] == {"n_targets": 9, "n_candidates": 100, "n_iter": 1, "n_restarts": 1}
    data = json.loads((tmp / "malt.json").read_text())
    keys = list(data)
    assert data["external"] == f"{100 * (len(robust) - len(broken)) / 32:.2f}"
    assert keys.index("external") == keys.index("autoattack_acc") + 1
    assert data["footnote"] == "External evaluation: AutoAttack + MALT (Melamed et al., 2024)."
    assert "external" not in json.loads((tmp / "plain.json").read_text())           # only where it is lower
    assert [i for i, o in enumerate(extra["outcome"]) if o == "malt"] == sorted(broken)
    assert all(plain.evaluation.per_example["outcome"][i] is None for i in broken)
    # one state file per chunk of the MALT stage (level 2), as for AutoAttack's stages
    assert sorted(p.name for p in (tmp / "malt.state").glob("*-L002-*.pt")) == ["000000-000032-L002-c000000.pt"]
    tensors, about = read_adversarial(tmp / "adv.safetensors")
    rows = [i for i, k in zip(tensors["indices"].tolist(), tensors["attack"].tolist()) if about["attacks"][k] == "malt"]
    assert about["attacks"] == ["apgd-ce", "malt"] and rows == sorted(broken)


def test_malt_stage_resumes_from_its_state_files(runs):
    tmp, _, malt = runs
    again = _evaluate(out=tmp / "malt.json", extra_attacks=["malt"])
    assert again.evaluation.extra_attacks == malt.evaluation.extra_attacks
    assert any("resumed: 6 chunk task(s)" in w["message"] for w in again.evaluation.warnings)   # 4 + 1 + 1


def test_a_run_without_extra_attacks_refuses_their_state_dir(runs):
    from zoo.errors import ConfigError

    tmp, _, _ = runs
    with pytest.raises(ConfigError, match="differs in: extra_attacks"):
        _evaluate(state_dir=tmp / "malt.state")


def test_merged_shards_give_the_same_external(tmp_path):
    paths = []
    for k in range(2):
        paths.append(tmp_path / f"s{k}.json")
        _evaluate(out=paths[-1], shard=f"{k}/2", extra_attacks=["malt"])
    merged = merge_files(paths, tmp_path / "merged.json")
    assert merged.evaluation.extra_attacks["attacks"] == ["malt"]
    assert len(merged.evaluation.extra_attacks["outcome"]) == 32
    external = merged.model_info.external
    assert external is None or float(external) < float(merged.model_info.autoattack_acc)
    if external:
        assert merged.model_info.footnote.count("MALT") == 1


# RobustBench's order of the board below: by ``external`` where a file has it, else ``autoattack_acc``
# (robustbench.utils ACC_FIELDS; the marked test checks it with robustbench's own code).
EXTERNAL_ORDER = ["Above", "Between", "Centroid_MALT", "ExternalOnly", "Below"]


def external_board(runs, tmp_path) -> Path:
    """A Linf board: our MALT result (AutoAttack 21.88, external 15.62: see ``reference``) among files with and
    without ``external``."""
    tmp, _, malt = runs
    folder = tmp_path / "model_info" / "cifar10" / "Linf"
    folder.mkdir(parents=True)
    (folder / "Centroid_MALT.json").write_text((tmp / "malt.json").read_text())
    base = {k: v for k, v in json.loads((tmp / "plain.json").read_text()).items() if k != "evaluation"}
    for name, aa in [("Between", "18.00"), ("Above", "25.00"), ("Below", "10.00")]:
        (folder / f"{name}.json").write_text(json.dumps({**base, "autoattack_acc": aa, "reported": aa}))
    (folder / "ExternalOnly.json").write_text(json.dumps({**base, "autoattack_acc": "30.00", "external": "12.00"}))
    return folder


def test_leaderboard_ranks_an_external_figure_as_robustbench_does(runs, reference, tmp_path):
    robust, broken = reference
    aa, external = f"{100 * len(robust) / 32:.2f}", f"{100 * (len(robust) - len(broken)) / 32:.2f}"
    assert float(external) < 18.00 < float(aa)          # where "Between" sits in EXTERNAL_ORDER
    external_board(runs, tmp_path)
    board = json.loads(leaderboard(tmp_path / "model_info", "cifar10", "Linf", "json", together=True))
    models = board["leaderboards"][0]["models"]
    assert [m["key"] for m in models] == EXTERNAL_ORDER
    row = next(m for m in models if m["key"] == "Centroid_MALT")
    assert row["ranked_by"] == "external" and row["best_known_acc"] == external and row["autoattack_acc"] == aa


@pytest.mark.robustbench
def test_robustbench_own_code_ranks_the_external_board_so(runs, tmp_path):
    assert robustbench_order(external_board(runs, tmp_path), "Linf") == EXTERNAL_ORDER


@pytest.mark.parametrize("args,message", [
    (["--extra-attacks", "bpda"], "unknown extra attack(s) bpda; choose from malt"),
    (["--extra-attacks", "malt", "--eps", "1/255,2/255"], "--extra-attacks needs one eps"),
    (["--extra-attacks", "malt", "--threat-model", "L1"], "MALT supports the Linf and L2 threat models, not L1"),
    (["--repeats", "2"], "--repeats needs --version rand"),
])
def test_bad_options_are_one_line(args, message):
    result = CliRunner().invoke(main, ["evaluate", MODEL, "--n-examples", "8", "--device", "cpu", *args])
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
