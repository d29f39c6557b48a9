"""timm and RobustBench interop: zoo architectures in timm's registry, hf-hub loading through the
loopback Hub, and RobustBench's load_model (ours and robustbench's own) reaching the zoo's weights."""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import timm
import torch
from timm.data import resolve_data_config
from test_hub_load import save_tiny, tiny_entry

import harness
import zoo
from zoo.errors import ConfigError, IntegrityError, UnknownNameError
from zoo.publish import publish
from zoo.registry import add_user_entry, get_entry
from zoo.timm_models import register_timm_models

RB_NAME = "Pang2022Robustness_WRN28_10"
TIMM_RB_NAME = "pang2022robustness_wrn28_10_cifar10_linf"   # robustbench.utils.load_model's timm lookup
X = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def logits(model):
    with torch.no_grad():
        return model.eval()(X)


def test_architectures_are_timm_models_that_do_not_normalise_twice():
    assert {"wrn_28_10_swish", "wrn_70_16_swish", "wrn_10_1_swish", "preact_resnet_18"} <= set(timm.list_models())
    model = timm.create_model("wrn_10_1_swish")
    config = resolve_data_config({}, model=model)
    assert config["input_size"] == (3, 32, 32) and config["mean"] == (0.0, 0.0, 0.0) and config["std"] == (1.0, 1.0, 1.0)
    torch.manual_seed(0)
    ours = zoo.create_model("wrn-10-1-swish", dataset="cifar100", num_classes=100)
    torch.manual_seed(0)
    theirs = timm.create_model("wrn_10_1_swish", dataset="cifar100", num_classes=100)
    torch.testing.assert_close(logits(theirs), logits(ours), rtol=0, atol=0)   # same init, same cifar100 normalisation
    with pytest.raises(ValueError, match="in_chans=3"):
        timm.create_model("preact_resnet_18", in_chans=1)


def test_registration_follows_the_registry_and_survives_a_broken_one(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("SCORE_ZOO_REGISTRY", str(tmp_path / "registry.json"))
    add_user_entry(dataclasses.replace(tiny_entry(name="wide"), architecture="wrn-22-3-swish"))
    assert register_timm_models() == ["wrn_22_3_swish"] and register_timm_models() == []
    assert timm.create_model("wrn_22_3_swish").logits.in_features == 64 * 3
    (tmp_path / "registry.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert register_timm_models() == []
    assert "only the built-in entries" in caplog.text and "not valid JSON" in caplog.text


def test_timm_loads_a_published_model_from_the_hub_with_zoo_logits(hub, tmp_path):
    model, digest = save_tiny(tmp_path / "tiny")
    entry = tiny_entry()
    result = publish(entry, tmp_path / "tiny", "org/tiny")
    add_user_entry(dataclasses.replace(entry, **result.entry_update))
    config = json.loads(hub.repos["org/tiny"].resolve("main").files["config.json"])
    assert config["architecture"] == "wrn_10_1_swish" and config["model_args"] == {"dataset": "cifar10"}
    assert config["label_names"][:2] == ["airplane", "automobile"] and config["pretrained_cfg"]["std"] == [1.0, 1.0, 1.0]
    assert (config["format"], config["dataset"], config["threat_model"]) == ("score-zoo/1", "cifar10", "Linf")

    via_timm = timm.create_model("hf-hub:org/tiny", pretrained=True)
    via_zoo = zoo.load_model("tiny-linf")
    torch.testing.assert_close(logits(via_timm), logits(via_zoo), rtol=0, atol=0)
    torch.testing.assert_close(logits(via_zoo), logits(model), rtol=0, atol=0)
    pinned = timm.create_model(f"hf-hub:org/tiny@{result.commit}", pretrained=True)   # a pinned revision too
    torch.testing.assert_close(logits(pinned), logits(via_zoo), rtol=0, atol=0)
    data_config = resolve_data_config({}, model=via_timm)
    assert tuple(data_config["mean"]) == (0.0, 0.0, 0.0) and tuple(data_config["input_size"]) == (3, 32, 32)
    assert via_timm.pretrained_cfg["label_names"][-1] == "truck"


def test_robustbench_signature_loads_zoo_entries_and_robustbench_names(hub, tmp_path):
    """Zoo models load through RobustBench's signature without robustbench installed (names as strings)."""
    tiny = harness.load_model("cifar10-linf-tiny")
    torch.testing.assert_close(logits(tiny), logits(zoo.load_model("cifar10-linf-tiny")), rtol=0, atol=0)
    harness.load_model("cifar10-linf-tiny", dataset="cifar10", threat_model="Linf")
    with pytest.raises(ConfigError, match="cifar10 Linf model, not cifar100 Linf"):
        harness.load_model("cifar10-linf-tiny", dataset="cifar100")

    model, _ = save_tiny(tmp_path / "tiny")             # a published entry carrying a RobustBench name
    entry = tiny_entry(name="rb-tiny", origin={"robustbench_name": RB_NAME, "robustbench_threat_model": "Linf"})
    add_user_entry(dataclasses.replace(entry, **publish(entry, tmp_path / "tiny", "org/rb").entry_update))
    loaded = harness.load_model(RB_NAME, model_dir=tmp_path / "none", dataset="cifar10", threat_model="Linf")
    torch.testing.assert_close(logits(loaded), logits(model), rtol=0, atol=0)
    add_user_entry(dataclasses.replace(get_entry("rb-tiny"), sha256="0" * 64))
    with pytest.raises(IntegrityError, match="expected 0000"):
        harness.load_model(RB_NAME, dataset="cifar10", threat_model="Linf")


@pytest.mark.robustbench
def test_robustbench_signature_takes_robustbench_enums_and_suggests_its_names():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # robustbench's import-time deprecation noise
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    tiny = harness.load_model("cifar10-linf-tiny", dataset=BenchmarkDataset.cifar_10, threat_model=ThreatModel.Linf)
    torch.testing.assert_close(logits(tiny), logits(zoo.load_model("cifar10-linf-tiny")), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="cifar10 Linf model, not cifar100 Linf"):
        harness.load_model("cifar10-linf-tiny", dataset=BenchmarkDataset.cifar_100)
    with pytest.raises(UnknownNameError, match="neither the zoo nor RobustBench .*Did you mean: Pang2022Robustness_WRN28_10"):
        harness.load_model("Pang2022Robustnes_WRN28_10")


def test_a_robustbench_named_entry_is_a_full_timm_model_with_the_zoo_weights(hub, tmp_path):
    model, digest = save_tiny(tmp_path / "tiny")
    entry = tiny_entry(name="rb-tiny", origin={"robustbench_name": RB_NAME})
    add_user_entry(dataclasses.replace(entry, **publish(entry, tmp_path / "tiny", "org/rb").entry_update))
    register_timm_models()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(logits(timm.create_model(TIMM_RB_NAME, pretrained=True)), logits(model),
                                   rtol=0, atol=0)
        pooled = model.forward_head(model.forward_features(X), pre_logits=True)
        backbone = timm.create_model(TIMM_RB_NAME, pretrained=True, num_classes=0).eval()
        torch.testing.assert_close(backbone(X), pooled, rtol=0, atol=0)
        maps = timm.create_model(TIMM_RB_NAME, pretrained=True, features_only=True, out_indices=(-1,)).eval()(X)
        torch.testing.assert_close(maps[-1], model.forward_intermediates(X, indices=1, intermediates_only=True)[0],
                                   rtol=0, atol=0)
    finetune = timm.create_model(TIMM_RB_NAME, pretrained=True, num_classes=4)
    assert finetune.get_classifier().out_features == 4
    torch.testing.assert_close(finetune.init_conv.weight, model.init_conv.weight, rtol=0, atol=0)
    assert finetune.pretrained_cfg["file"].endswith("model.safetensors")
    with pytest.raises(ConfigError, match="a cifar10 model, not cifar100"):
        timm.create_model(TIMM_RB_NAME, dataset="cifar100")
    save_tiny(tmp_path / "local", seed=1)                  # a local copy that is not the pinned weights
    add_user_entry(dataclasses.replace(get_entry("rb-tiny"), local_dir=str(tmp_path / "local")))
    with pytest.raises(IntegrityError, match=f"expected {digest}"):
        timm.create_model(TIMM_RB_NAME, pretrained=True)


@pytest.mark.robustbench
def test_other_robustbench_names_fall_through_to_robustbench(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from robustbench.model_zoo import model_dicts
        from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel
    torch.manual_seed(0)
    reference = model_dicts[BenchmarkDataset("cifar10")][ThreatModel("L2")]["Ding2020MMA"]["model"]().eval()
    checkpoint = tmp_path / "models" / "cifar10" / "L2" / "Ding2020MMA.pt"   # robustbench's own layout
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = harness.load_model("Ding2020MMA", tmp_path / "models", "cifar10", norm="L2")
    assert not loaded.training
    torch.testing.assert_close(logits(loaded), logits(reference), rtol=0, atol=0)


ROBUSTBENCH_SCRIPT = textwrap.dedent("""
    import json, sys, warnings
    import torch
    import timm
    import zoo                                    # registers the zoo's timm names
    warnings.simplefilter("ignore")
    from robustbench.utils import load_model       # robustbench's own loader
    from zoo.errors import IntegrityError

    model_dir, x, rb_name, dataset, threat_model, entry, timm_name, hub_repo = sys.argv[1:9]
    x = torch.load(x)
    out = {"registered": timm.is_model(timm_name)}
    model = load_model(rb_name, model_dir=model_dir, dataset=dataset, threat_model=threat_model)
    with torch.no_grad():
        out["logits"] = model(x).tolist()
        if hub_repo:                              # timm's own hf-hub loading of the published repository
            out["timm_logits"] = timm.create_model("hf-hub:" + hub_repo, pretrained=True).eval()(x).tolist()
    out["training"], out["class"] = model.training, type(model).__name__
    blob = zoo.resolve_model_dir(entry)[0] / "model.safetensors"
    blob = blob.resolve()
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-8] + bytes(8))   # the cached weights go bad
    try:
        load_model(rb_name, model_dir=model_dir, dataset=dataset, threat_model=threat_model)
        out["tampered"] = "loaded"
    except IntegrityError as e:
        out["tampered"] = str(e)
    print(json.dumps(out))
""")


def run_robustbench_load(model_dir, x, rb_name, dataset, threat_model, entry, timm_name, hub_repo="") -> dict:
    """robustbench's own load_model (and, with ``hub_repo``, timm's hf-hub) in a fresh interpreter that imports zoo;
    ``registered`` says whether timm knows ``timm_name``, the name robustbench asks it for."""
    argv = [str(model_dir), str(x), rb_name, dataset, threat_model, entry, timm_name, hub_repo]
    done = subprocess.run([sys.executable, "-c", ROBUSTBENCH_SCRIPT, *argv], capture_output=True, text=True,
                          env=dict(os.environ), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.robustbench
def test_robustbench_own_load_model_gets_the_zoo_hub_weights_through_timm(hub, tmp_path):
    model, digest = save_tiny(tmp_path / "tiny")
    entry = tiny_entry(name="rb-tiny", origin={"robustbench_name": RB_NAME})
    add_user_entry(dataclasses.replace(entry, **publish(entry, tmp_path / "tiny", "org/rb").entry_update))
    torch.save(X, tmp_path / "x.pt")
    out = run_robustbench_load(tmp_path / "rb-models", tmp_path / "x.pt", RB_NAME, "cifar10", "Linf", "rb-tiny",
                               TIMM_RB_NAME)
    assert out["registered"] and out["training"] is False
    torch.testing.assert_close(torch.tensor(out["logits"]), logits(model), rtol=1e-6, atol=1e-6)
    assert f"expected {digest}" in out["tampered"] and "removed from the cache" in out["tampered"]
    assert not Path(tmp_path / "rb-models").exists()    # nothing came from robustbench's Google Drive path


@pytest.mark.parametrize("code", [
    # zoo first: neither timm nor robustbench imported by zoo (nor by its mirror module)
    "import sys, zoo, zoo.robustbench.mirror; assert not {'timm', 'robustbench'} & set(sys.modules); import timm",
    "import timm, zoo",                                                 # timm first
])
def test_zoo_models_are_in_timm_whichever_is_imported_first(code):
    check = "; print(timm.is_model('wrn_10_1_swish'), zoo.register_timm_models())"
    out = subprocess.run([sys.executable, "-c", code + check], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "[]"]  # registered once, by the hook
