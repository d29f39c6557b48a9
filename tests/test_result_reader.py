"""One result reader: evaluations attach only to the weights they measured; a copy of the test data never passes
for the official split, whatever folder holds it."""

import json
import warnings

import numpy as np
from click.testing import CliRunner
from huggingface_hub import ModelCard
from test_hub_publish import harness_result, tiny  # noqa: F401  (fixture)

from harness.evaluation import evaluate
from zoo.cards import render_card
from zoo.cli import main
from zoo.eligibility import problems
from zoo.evaluations import entry_evaluations
from zoo.registry import BUILTIN_DIR, get_entry
from zoo.results import EvaluationResult

TINY = "cifar10-linf-tiny"


def _other_weights_result(tmp_path) -> str:
    """A complete result of the TRADES sibling (its weights sha256), as card/publish --eval would be given it."""
    path = tmp_path / "trades.json"
    path.write_text(json.dumps(harness_result(get_entry(f"{TINY}-trades").sha256)))
    return str(path)


def test_card_refuses_an_evaluation_of_other_weights(tmp_path):
    """Breaks when `score-zoo card --eval` takes any result file as this entry's, whatever weights it measured."""
    out = CliRunner().invoke(main, ["card", TINY, "--eval", _other_weights_result(tmp_path), "--stdout"])
    assert out.exit_code == 1 and out.output.count("\n") == 1
    assert get_entry(f"{TINY}-trades").sha256 in out.output and get_entry(TINY).sha256 in out.output
    same = tmp_path / "same.json"
    same.write_text(json.dumps(harness_result(get_entry(TINY).sha256)))
    ok = CliRunner().invoke(main, ["card", TINY, "--eval", str(same), "--stdout"])
    assert ok.exit_code == 0, ok.output


def test_publish_refuses_an_evaluation_of_other_weights(tiny, hub, tmp_path):  # noqa: F811
    model_dir, digest, _ = tiny
    out = CliRunner().invoke(main, ["publish", "tiny-linf", "--model-dir", str(model_dir), "--repo-id", "org/tiny",
                                    "--eval", _other_weights_result(tmp_path), "--dry-run"])
    assert out.exit_code == 1 and digest in out.output and "attach only evaluations of these weights" in out.output


def test_an_npz_copy_in_a_folder_is_not_the_official_split(tmp_path):
    """Breaks when eligibility and cards judge the data by the spelling of --data-dir (a folder, not an .npz)."""
    images = np.load(BUILTIN_DIR.parent.parent / "harness" / "bundled" / "cifar10_test_first1000.npz")
    np.savez(tmp_path / "cifar10_test.npz", x=images["x"][:8], y=images["y"][:8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate("harness_helpers:centroid_model", data_dir=str(tmp_path), batch_size=8, version="custom",
                          attacks=["apgd-ce"], n_iter=1, progress=False, workers=1)
    ev = result.evaluation
    assert ev.data["official"] is False and ev.data["source"].endswith("cifar10_test.npz")
    assert not ev.data["leaderboard_eligible"]
    assert "cifar10_test.npz, a copy of the test data, not the official test files" in problems(ev, "cifar10")
    entry = get_entry(TINY)
    card_result = EvaluationResult.from_dict({**result.to_dict(), "evaluation": {
        **result.to_dict()["evaluation"], "weights_sha256": entry.sha256}})
    card = ModelCard(render_card(entry, entry_evaluations(entry) + [card_result]))   # as `score-zoo card --eval`
    assert all(not r.dataset_split.startswith("test") for r in card.data.eval_results), [(r.metric_config, r.dataset_split, r.source_name) for r in card.data.eval_results]
