"""Model cards: generated from entries (+ evaluation JSONs), parsed by huggingface_hub, never stale."""

import dataclasses
import warnings

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard
from test_hub_publish import EVALUATION

from harness.evaluation import evaluate
from zoo import list_entries, registry
from zoo.cards import bibtex, default_cards_dir, render_card
from zoo.evaluations import entry_evaluations
from zoo.cli import main
from zoo.errors import ConfigError
from zoo.registry import get_entry

BUILTIN = [e for e in list_entries() if e.builtin]


@pytest.mark.parametrize("entry", BUILTIN, ids=lambda e: e.name)
def test_checked_in_card_matches_its_entry(entry):
    path = default_cards_dir() / f"{entry.name}.md"
    assert path.is_file(), f"missing {path}: run 'score-zoo card --all'"
    assert path.read_text(encoding="utf-8") == render_card(entry), f"{path} is stale: run 'score-zoo card --all'"


def test_card_metadata_parses_with_model_index():
    entry = get_entry("cifar10-linf")
    card = ModelCard(render_card(entry))
    data = card.data
    assert data.license == "mit" and data.library_name and data.datasets == ["cifar10"]
    assert {"adversarial-robustness", "robustbench", "image-classification"} <= set(data.tags)
    results = {r.metric_config: r for r in data.eval_results}
    assert results["clean"].metric_value == entry.reported["clean_acc"]
    robust = results["Linf-8/255 AutoAttack standard"]
    assert robust.metric_value == entry.reported["autoattack_acc"]
    assert (robust.dataset_type, robust.dataset_split) == ("cifar10", "test")
    assert robust.metric_args["threat_model"] == "Linf" and robust.metric_args["eps"] == "8/255"
    for section in ("## Use", "score-zoo load cifar10-linf", 'zoo.load_model("cifar10-linf")',
                    "## Evaluation protocol", "## Training recipe", "## Limitations", "@inproceedings{pang2022robustness"):
        assert section in card.text


def test_evaluation_results_enter_the_card_with_missing_provenance_tolerated():
    entry = dataclasses.replace(get_entry("cifar10-linf"), evaluations=[EVALUATION])
    card = ModelCard(render_card(entry))
    zoo_results = [r for r in card.data.eval_results if r.source_name == "SCORE Zoo harness"]
    assert len(card.data.eval_results) == 4 and [r.metric_value for r in zoo_results] == [51.0, 21.5]
    assert zoo_results[0].dataset_split == "test[:200]"
    assert "| SCORE Zoo harness (AutoAttack standard) | CIFAR-10 test | Linf 8/255 | 200 | 51.00 | 21.50 |" in card.text
    assert "apgd-ce 23.00, apgd-t 21.50" in card.text and "- seed: 0" in card.text
    with pytest.raises(ConfigError, match="evaluation on cifar10 cannot go into the card of 'cifar100-linf'"):
        render_card(dataclasses.replace(get_entry("cifar100-linf"), evaluations=[EVALUATION]))


def test_each_evaluation_in_the_card_states_its_attack_failure_verdict():
    """A warning names the indicators that fired and says the figure is no robustness claim; a result without
    indicators (written before them) is "not checked", never "ok". Broken by stating the verdict without the
    indicators, or by calling a result without indicators ok."""
    quick = dict(n_examples=4, batch_size=4, version="custom", attacks=["apgd-ce"], n_iter=2, progress=False,
                 workers=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masked = evaluate("masked_models:quantized_model", **quick).to_dict()
        ok = evaluate("cifar10-linf-tiny", **quick).to_dict()
    fired = [r["name"] for r in masked["evaluation"]["diagnostics"]["indicators"] if r["verdict"] == "warning"]
    assert fired and ok["evaluation"]["diagnostics"]["verdict"] == "ok"
    entry = dataclasses.replace(get_entry("cifar10-linf"), evaluations=[masked, ok, EVALUATION])
    assert "diagnostics" not in EVALUATION["evaluation"]                    # a result from before the indicators
    text = render_card(entry)
    verdicts = [line for line in text.splitlines() if line.startswith("- attack-failure indicators: ")]
    assert verdicts == [f"- attack-failure indicators: warning ({', '.join(fired)}): this robust accuracy is not a "
                        "robustness claim", "- attack-failure indicators: ok",
                        "- attack-failure indicators: not checked"]


def test_bibtex_from_source():
    text = bibtex(get_entry("cifar10-linf"))
    assert text.startswith("@inproceedings{pang2022robustness,") and "Tianyu Pang and Min Lin" in text


def test_cli_card_check_and_write(tmp_path):
    stale = CliRunner().invoke(main, ["card", "--all", "--check", "--out-dir", str(tmp_path)])
    assert stale.exit_code == 1 and "score-zoo card --all" in stale.output
    assert CliRunner().invoke(main, ["card", "--all", "--out-dir", str(tmp_path)]).exit_code == 0
    assert CliRunner().invoke(main, ["card", "--all", "--check", "--out-dir", str(tmp_path)]).exit_code == 0
    assert CliRunner().invoke(main, ["card", "--all", "--check"]).exit_code == 0     # the checked-in cards
    out = CliRunner().invoke(main, ["card", "cifar10-linf", "--stdout"])
    assert out.output == render_card(get_entry("cifar10-linf"))


def test_bundled_card_says_bundled_counts_images_right_and_never_claims_the_official_split():
    entry = get_entry("cifar10-linf-tiny")
    card = ModelCard(render_card(entry))
    assert "Not on the Hub yet" not in card.text and "Bundled in the `score-zoo` package" in card.text
    assert "checked on every load" in card.text and card.data.library_name == "pytorch"
    results = card.data.eval_results
    assert all(not r.dataset_split.startswith("test") for r in results)      # a JPEG-decoded copy, not the split
    assert all(r.dataset_name == "CIFAR-10 (unofficial test copy)" for r in results)
    rep, [evaluation] = entry.reported, entry_evaluations(entry)
    n, full = rep["n_examples"], rep["clean_n_examples"]
    assert full == 10000 and n < full                                         # clean on all images, AA on a prefix
    clean = {(r.metric_value, r.metric_args["n_examples"], r.dataset_split) for r in results if r.metric_config == "clean"}
    assert clean == {(rep["clean_acc"], full, "unofficial-test-copy"),
                     (float(evaluation.model_info.clean_acc), n, f"unofficial-test-copy[:{n}]")}
    robust = [(r.metric_value, r.metric_args["n_examples"], r.dataset_split) for r in results if r.metric_config != "clean"]
    assert robust == [(rep["autoattack_acc"], n, f"unofficial-test-copy[:{n}]")]  # listed once, not per source
    assert (f"| CIFAR-10 test copy (unofficial) | Linf 8/255 | {full} / {n} | {rep['clean_acc']:.2f} | "
            f"{rep['autoattack_acc']:.2f} |") in card.text


def test_origin_only_card_names_both_original_sources_and_the_robustbench_loader():
    card = ModelCard(render_card(get_entry("cifar10-linf")))
    assert "Not on the Hub yet" in card.text and "RobustBench's Google Drive copy" in card.text
    assert card.data.library_name == "pytorch" and "timm" not in card.data.tags and "hf-hub:" not in card.text
    assert {(r.dataset_split, r.metric_args["n_examples"]) for r in card.data.eval_results} == {("test", 10000)}
    assert 'load_model("Pang2022Robustness_WRN28_10", dataset="cifar10", threat_model="Linf")' in card.text


def test_published_card_is_a_timm_card():
    entry = dataclasses.replace(get_entry("cifar10-linf"), hub={"repo_id": "org/cifar10-linf", "revision": "a" * 40},
                                sha256="b" * 64, published=True)
    card = ModelCard(render_card(entry))
    assert card.data.library_name == "timm" and "timm" in card.data.tags
    assert 'timm.create_model("hf-hub:org/cifar10-linf", pretrained=True)' in card.text
    assert 'zoo.load_model("cifar10-linf")' in card.text and f"pinned revision `{'a' * 40}`" in card.text
    assert "checked on every download" in card.text and "Not on the Hub yet" not in card.text
    assert "`pang2022robustness_wrn28_10_cifar10_linf`" in card.text   # robustbench's own loader reaches it


def test_a_user_entry_card_goes_beside_the_user_registry_not_into_the_checkout():
    tiny = registry.get_entry("cifar10-linf-tiny")
    registry.add_user_entry(registry.Entry(**{**tiny.to_dict(), "name": "my-copy", "builtin": False}))
    result = CliRunner().invoke(main, ["card", "my-copy"])
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {registry.user_models_dir() / 'my-copy.md'}\n"
    assert not (default_cards_dir() / "my-copy.md").exists()
    assert CliRunner().invoke(main, ["card", "my-copy", "--check"]).exit_code == 0
