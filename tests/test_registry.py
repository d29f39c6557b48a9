"""The registry: built-in SCORE entries, user entries, lookups."""

import json

import pytest
from click.testing import CliRunner

from zoo import registry
from zoo.cli import main
from zoo.errors import ConfigError, UnknownNameError

SHARED_INFO = ["cifar10_Linf_Pang2022Robustness_WRN28_10", "cifar10_Linf_Pang2022Robustness_WRN70_16",
               "cifar100_Linf_Pang2022Robustness_WRN28_10", "cifar100_Linf_Pang2022Robustness_WRN70_16"]


def test_builtin_score_entries_carry_reported_numbers():
    names = {e.name for e in registry.list_entries()}
    assert {"cifar10-linf", "cifar10-linf-wrn70-16", "cifar100-linf", "cifar100-linf-wrn70-16"} <= names
    e = registry.get_entry("cifar10-linf")
    assert (e.architecture, e.dataset, e.num_classes, e.threat_model) == ("wrn-28-10-swish", "cifar10", 10, "Linf")
    assert e.reported["clean_acc"] == 88.61 and e.reported["autoattack_acc"] == 61.04
    assert e.origin["robustbench_name"] == "Pang2022Robustness_WRN28_10"
    assert e.origin["url"].endswith("CIFAR-10/WRN-28-10_cifar10.pt")
    assert abs(e.eps_value - 8 / 255) < 1e-12
    assert registry.get_entry("cifar100-linf-wrn70-16").reported["autoattack_acc"] == 33.05


def test_unknown_name_lists_close_matches():
    with pytest.raises(UnknownNameError, match="cifar10-linf"):
        registry.get_entry("cifar10-lnf")


def test_user_registry_adds_and_overrides(tmp_path, monkeypatch):
    path = tmp_path / "reg.json"
    monkeypatch.setenv(registry.REGISTRY_ENV, str(path))
    base = registry.get_entry("cifar10-linf").to_dict()
    mine = dict(base, name="my-model", description="mine")
    registry.add_user_entry(registry.entry_from_dict(mine, "test", builtin=False))
    registry.add_user_entry(registry.entry_from_dict(dict(base, description="override"), "test", builtin=False))
    assert registry.get_entry("my-model").description == "mine"
    assert not registry.get_entry("my-model").builtin
    assert registry.get_entry("cifar10-linf").description == "override"
    assert len(json.loads(path.read_text())["entries"]) == 2


def test_an_entry_written_with_one_study_reads_as_a_list_of_studies():
    base = registry.get_entry("cifar10-linf").to_dict()
    base.pop("studies")
    old = registry.entry_from_dict(dict(base, study="studies/a.json"), "test", builtin=False)
    assert old.studies == ["studies/a.json"] and "study" not in old.to_dict()
    assert registry.entry_from_dict(dict(base, study=None), "test", builtin=False).studies == []


def test_malformed_user_registry(tmp_path, monkeypatch):
    path = tmp_path / "reg.json"
    monkeypatch.setenv(registry.REGISTRY_ENV, str(path))
    path.write_text("[1, 2")
    with pytest.raises(ConfigError, match="not valid JSON"):
        registry.list_entries()
    path.write_text(json.dumps({"entries": [{"name": "x", "colour": "red"}]}))
    with pytest.raises(ConfigError, match="colour"):
        registry.list_entries()


@pytest.mark.parametrize("text,value", [("8/255", 8 / 255), ("0.5", 0.5), ("12", 12.0)])
def test_parse_eps(text, value):
    assert registry.parse_eps(text) == pytest.approx(value)


def test_parse_eps_rejects_garbage():
    with pytest.raises(ConfigError):
        registry.parse_eps("eight")


def test_cli_list_and_info_json():
    runner = CliRunner()
    listed = json.loads(runner.invoke(main, ["list", "--json"]).output)
    assert "cifar100-linf" in {e["name"] for e in listed}
    info = json.loads(runner.invoke(main, ["info", "cifar100-linf", "--json"]).output)
    assert info["reported"]["clean_acc"] == 63.66
    result = runner.invoke(main, ["info", "cifar100-lnf"])
    assert result.exit_code == 1 and "Did you mean" in result.output


@pytest.mark.robustbench
def test_builtin_google_drive_ids_are_robustbenchs():
    """Each entry's RobustBench fallback downloads the file robustbench's own model zoo names."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    with_drive = [e for e in registry.builtin_entries() if e.origin.get("gdrive_id")]
    assert {e.name for e in with_drive} == {"cifar10-linf", "cifar10-linf-wrn70-16", "cifar100-linf",
                                            "cifar100-linf-wrn70-16"}
    for e in with_drive:
        name, dataset, threat_model = e.robustbench_id
        assert e.origin["gdrive_id"] == model_dicts[BenchmarkDataset(dataset)][ThreatModel(threat_model)][name]["gdrive_id"]
