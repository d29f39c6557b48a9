"""Promises at their edges: merging 11+ shards in shell order, eps written back as k/255, what is leaderboard-grade,
``external`` only when it is lower, the RobustBench keys of an eps list, torch.compile checkpoints, publishing
only the pinned weights. Expected values are the test's own arithmetic on its data, never read off the code."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import zoo
from harness import evaluate
from harness.cli import main
from harness.threat_models import resolve_eps
from harness_helpers import centroid_model

KW = dict(version="custom", attacks=["apgd-ce"], n_iter=1, progress=False, workers=1, device="cpu", seed=0)


def _evaluate(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(model, **{**KW, **kw})


def test_eleven_shards_given_in_shell_order_merge_in_example_order(tmp_path):
    model = centroid_model()
    shards = {}
    for k in range(11):                      # shard-1 .. shard-11: 2 examples each, one batch
        path = tmp_path / f"shard-{k + 1}.json"
        shards[k] = _evaluate(model, n_examples=22, batch_size=2, eps="4/255", shard=f"{k}/11", out=path)
        assert shards[k].evaluation.shard["start"] == 2 * k
    given = sorted(str(p) for p in tmp_path.glob("shard-*.json"))          # the shell's order of shard-*.json
    assert [Path(p).stem for p in given[:4]] == ["shard-1", "shard-10", "shard-11", "shard-2"]
    proc = CliRunner().invoke(main, ["merge", *given, "--out", str(tmp_path / "merged.json")])
    assert proc.exit_code == 0, proc.output
    merged = json.loads((tmp_path / "merged.json").read_text())
    outcome = [o for k in range(11) for o in shards[k].evaluation.per_example["outcome"]]
    assert merged["evaluation"]["per_example"]["outcome"] == outcome
    assert merged["evaluation"]["n_examples"] == 22 and merged["evaluation"]["shard"] is None
    robust = sum(o is None for o in outcome)
    assert merged["autoattack_acc"] == f"{100 * robust / 22:.2f}"
    assert merged["clean_acc"] == f"{100 * sum(o != 'clean' for o in outcome) / 22:.2f}"


@pytest.mark.parametrize("eps,text", [
    ("5/255", "5/255"), (5 / 255, "5/255"), (3 / 255, "3/255"), (17 / 255, "17/255"),  # 5/255 = 1/51, 17/255 = 1/15
    (12 / 255, "12/255"), (1 / 85, "3/255"),
    (0.01, "0.01"), (1 / 64, "0.015625"), (0.5 / 255, "0.00196078"),                 # not a whole number of 1/255
])
def test_linf_eps_is_written_back_as_k_over_255_when_it_is_one(eps, text):
    assert resolve_eps("Linf", eps)[1] == text


@pytest.mark.parametrize("eps,text", [(5 / 255, "5/255"), ("0.01", "0.01")])
def test_the_result_json_writes_eps_as_robustbench_does(tmp_path, eps, text):
    _evaluate(centroid_model(), n_examples=4, batch_size=4, eps=eps, out=tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["eps"] == text and data["evaluation"]["eps"] == pytest.approx(float(eval(text)))


def test_the_l2_and_l1_budgets_are_written_as_plain_numbers():
    assert resolve_eps("L2", 0.5)[1] == "0.5" and resolve_eps("L2", 2 / 255)[1] == "0.00784314"
    assert resolve_eps("L1", 12)[1] == "12" and resolve_eps("L1", "6")[1] == "6"


def _board_reasons(folder: Path) -> dict:
    from harness.leaderboard import leaderboard

    board = json.loads(leaderboard(folder, "cifar10", "Linf", "json"))["leaderboards"][0]
    return {m["key"]: m.get("not_leaderboard_grade_because") for m in board["models"] + board["not_leaderboard_grade"]}


def test_ten_iterations_are_still_reduced_and_the_bundled_subset_is_never_eligible(tmp_path):
    board = tmp_path / "model_info" / "cifar10" / "Linf"
    _evaluate(centroid_model(), n_examples=8, batch_size=8, eps="8/255", version="standard", attacks=None, n_iter=10,
              out=board / "Ten.json")
    _evaluate("harness_helpers:centroid_model", n_examples=None, batch_size=500, eps="1/255",
              out=board / "Whole_Subset.json")
    whole = json.loads((board / "Whole_Subset.json").read_text())["evaluation"]
    assert whole["n_examples"] == 1000 and whole["data"]["source"] == "bundled-subset"
    assert whole["data"]["leaderboard_eligible"] is False
    reasons = _board_reasons(tmp_path / "model_info")
    assert "reduced attack iterations (n_iter=10)" in reasons["Ten"]
    assert "the bundled JPEG-decoded subset, not the official test files" in reasons["Whole_Subset"]


def test_external_is_not_set_when_malt_lowers_nothing(tmp_path):
    # at 0.1/255 nothing the centroid model gets right is broken, by AutoAttack or by MALT
    result = _evaluate("harness_helpers:centroid_model", n_examples=16, batch_size=8, eps="0.1/255",
                       extra_attacks=["malt"], out=tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    ev = data["evaluation"]
    assert ev["extra_attacks"]["robust_accuracy"] == ev["robust_accuracy"] == ev["clean_accuracy"]
    assert "external" not in data and result.model_info.external is None
    assert "External evaluation" not in (data.get("footnote") or "")


def test_robustbench_keys_describe_the_standard_budget_inside_an_eps_list(tmp_path):
    _evaluate(centroid_model(), n_examples=32, batch_size=16, eps="2/255,8/255,16/255", out=tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    pe = data["evaluation"]["per_example"]
    # robust at 8/255: never broken, or broken only at the larger budget (arithmetic on the per-example record)
    at_8 = sum(o is None or b == "16/255" for o, b in zip(pe["outcome"], pe["broken_at"]))
    at_16 = sum(o is None for o in pe["outcome"])
    assert at_8 > at_16                    # the budgets differ on this model, so the wrong one would show
    assert data["eps"] == "8/255" and data["autoattack_acc"] == f"{100 * at_8 / 32:.2f}"


def test_a_torch_compile_checkpoint_imports_with_its_keys_unprefixed(tmp_path):
    from zoo.checkpoints import import_checkpoint

    torch.manual_seed(0)
    model = zoo.create_model("wrn-10-1-swish")
    compiled = torch.compile(model)                   # not run: only its state_dict's key names matter
    state = compiled.state_dict()
    assert all(k.startswith("_orig_mod.") for k in state)
    torch.save(state, tmp_path / "compiled.pt")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "ddp_compiled.pt")
    for name in ("compiled.pt", "ddp_compiled.pt"):
        import_checkpoint(tmp_path / name, "wrn-10-1-swish", None, "cifar10", tmp_path / name.replace(".pt", ""))
        loaded = zoo.load_model(tmp_path / name.replace(".pt", ""))
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())


def test_publish_refuses_weights_other_than_the_pinned_ones(tmp_path):
    from safetensors.torch import load_file, save_file

    from zoo.errors import IntegrityError
    from zoo.fileio import sha256_file
    from zoo.loading import resolve_model_dir
    from zoo.publish import publish_model

    entry = zoo.get_entry("cifar10-linf-tiny")
    model_dir = Path(resolve_model_dir(entry.name)[0])
    assert entry.sha256 == sha256_file(model_dir / "model.safetensors")
    changed = tmp_path / "changed"
    shutil.copytree(model_dir, changed)
    weights = load_file(changed / "model.safetensors")
    first = next(iter(weights))
    weights[first] = weights[first] + 1e-3
    save_file(weights, changed / "model.safetensors")
    with pytest.raises(IntegrityError, match="pins"):
        publish_model(entry.name, "someone/tiny", model_dir=changed, dry_run=True)
    _, result, _ = publish_model(entry.name, "someone/tiny", model_dir=model_dir, dry_run=True)
    assert result.sha256 == entry.sha256
