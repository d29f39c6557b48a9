"""`score-zoo publish`: staging, one commit on the test Hub, model card, registry update."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard
from test_hub_load import save_tiny, tiny_entry

import zoo
from zoo.cli import main
from zoo.errors import HubError
from zoo.publish import publish
from zoo.registry import BUILTIN_DIR, add_user_entry, get_entry
from zoo.results import EvaluationResult

def harness_result(weights_sha256: str | None = None) -> dict:
    """A complete score-harness result file: the bundled tiny model's evaluation, rewritten as one of 200 images
    of the official test files with two attacks (clean 51.00 %, AutoAttack 21.50 %)."""
    data = json.loads((BUILTIN_DIR / "evaluations" / "cifar10-linf-tiny.json").read_text())
    ev = data["evaluation"]
    after = {"apgd-ce": 23.0, "apgd-t": 21.5}
    data.update(name="tiny", clean_acc="51.00", autoattack_acc="21.50", reported="21.50", footnote=None)
    ev.update(n_examples=200, seed=0, clean_accuracy=51.0, robust_accuracy=21.5, robust_accuracy_after=after,
              autoattack={"version": "standard", "attacks": list(after), "n_iter": None},
              data={"source": "/data/cifar-10-batches-py", "official": True, "sha256": "0" * 64,
                    "leaderboard_eligible": False},
              per_example={"start": 0, "outcome": ["clean"] * 98 + ["apgd-ce"] * 56 + ["apgd-t"] * 3 + [None] * 43,
                           "broken_at": ["0"] * 98 + ["8/255"] * 59 + [None] * 43},
              curve=[{"eps": ev["eps"], "eps_text": "8/255", "robust_accuracy": 21.5, "robust_accuracy_after": after}],
              segments=[[0, 200]], weights_sha256=weights_sha256 or ev["weights_sha256"])
    return data


EVALUATION = harness_result()


@pytest.fixture()
def tiny(hub, tmp_path):
    _, digest = save_tiny(tmp_path / "tiny")
    add_user_entry(tiny_entry())
    eval_path = tmp_path / "eval.json"
    eval_path.write_text(json.dumps(harness_result(digest)))
    return tmp_path / "tiny", digest, eval_path


def test_dry_run_stages_and_uploads_nothing(tiny, hub):
    model_dir, digest, eval_path = tiny
    out = CliRunner().invoke(main, ["publish", "tiny-linf", "--model-dir", str(model_dir), "--repo-id", "org/tiny",
                                    "--eval", str(eval_path), "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    staged = Path(info["staged"])
    assert info["commit"] is None and info["sha256"] == digest
    assert info["files"] == ["model.safetensors", "config.json", "README.md", "evaluations/00-cifar10-linf-200.json"]
    assert all((staged / f).is_file() for f in info["files"])
    assert hub.repos == {} and hub.requests == []


def test_publish_is_one_commit_with_card_and_evaluations(tiny, hub):
    model_dir, digest, eval_path = tiny
    out = CliRunner().invoke(main, ["publish", "tiny-linf", "--model-dir", str(model_dir), "--repo-id", "org/tiny",
                                    "--eval", str(eval_path), "--save-entry"])
    assert out.exit_code == 0, out.output
    repo = hub.repos["org/tiny"]
    commit = repo.resolve("main")
    assert commit.oid in out.output and commit.parent is not None          # initial commit + ours
    assert sorted(commit.files) == [".gitattributes", "README.md", "config.json",
                                    "evaluations/00-cifar10-linf-200.json", "model.safetensors"]
    staged = EvaluationResult.from_dict(json.loads(commit.files["evaluations/00-cifar10-linf-200.json"]))
    assert staged == EvaluationResult.from_dict(harness_result(digest))
    card = ModelCard(commit.files["README.md"].decode())
    values = {(r.metric_name.split(" (")[0].split(",")[0], r.source_name): r.metric_value for r in card.data.eval_results}
    assert values[("Clean accuracy", "SCORE Zoo harness")] == 51.0
    assert values[("AutoAttack accuracy", "SCORE Zoo harness")] == 21.5
    assert "score-zoo load tiny-linf" in card.text and "org/tiny" in card.text
    entry = get_entry("tiny-linf")                                          # --save-entry pinned it
    assert entry.hub == {"repo_id": "org/tiny", "revision": commit.oid, "filename": "model.safetensors"}
    assert entry.sha256 == digest and entry.published
    assert zoo.resolve_model_dir("tiny-linf")[1] == digest
    zoo.load_model("tiny-linf")


def test_publish_a_bare_model_dir_and_republish(tiny, hub):
    model_dir, digest, _ = tiny
    out = CliRunner().invoke(main, ["publish", str(model_dir), "--repo-id", "me/bare", "--json"])
    assert out.exit_code == 0, out.output
    first = json.loads(out.output)
    assert first["entry_update"]["sha256"] == digest
    card = ModelCard(hub.repos["me/bare"].resolve("main").files["README.md"].decode())
    assert "wrn-10-1-swish" in card.text and "Linf 8/255" in card.text
    again = publish(tiny_entry(), model_dir, "me/bare")                    # existing repo: a new commit on top
    assert again.commit != first["commit"] and hub.repos["me/bare"].resolve("main").parent == first["commit"]


def test_publish_needs_a_token_and_a_valid_repo_id(tiny, hub, monkeypatch):
    model_dir, _, _ = tiny
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(HubError, match="HTTP 401 .*HF_TOKEN"):
        publish(tiny_entry(), model_dir, "org/tiny")
    out = CliRunner().invoke(main, ["publish", "tiny-linf", "--model-dir", str(model_dir), "--repo-id", "no-org"])
    assert out.exit_code == 1 and "ORG/NAME" in out.output


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "notes.txt").write_text("not a model"), "is not a model directory: it has no config.json"),
    (lambda d: (d / "config.json").write_text(json.dumps({"architecture": "wrn-10-1-swish", "num_classes": 10,
                                                          "dataset": "cifar10"})), "model.safetensors does not exist"),
])
def test_publish_model_dir_that_is_not_a_model_is_one_line(tmp_path, make, message):
    folder = tmp_path / "folder"
    folder.mkdir()
    make(folder)
    result = CliRunner().invoke(main, ["publish", "cifar10-linf-tiny", "--model-dir", str(folder), "--repo-id",
                                       "me/x", "--dry-run"])
    assert result.exit_code == 1 and result.output.count("\n") == 1 and message in result.output, result.output


def test_a_bare_model_dir_is_named_by_the_entry_name_rule(tmp_path):
    save_tiny(tmp_path / "my run")
    result = CliRunner().invoke(main, ["publish", str(tmp_path / "my run"), "--repo-id", "me/x", "--dry-run"])
    assert result.exit_code == 1 and "'my run' is not a valid entry name" in result.output, result.output
