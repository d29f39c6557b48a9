"""Model directories: round trip, corrupt and tampered weights, bad configs."""

import json

import pytest
import torch

import zoo
from zoo.errors import CheckpointError, ConfigError, IntegrityError
from zoo.model_dir import load_model_dir, make_config, save_model_dir


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    model = zoo.create_model("wrn-10-1-swish")
    out = tmp_path / "m"
    digest = save_model_dir(model, out, make_config("wrn-10-1-swish", 10, "cifar10", "Linf", 8 / 255))
    return out, digest, model


def test_round_trip_in_eval_mode(model_dir):
    out, digest, model = model_dir
    loaded = load_model_dir(out, expected_sha256=digest)
    assert not loaded.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))


def test_truncated_weights(model_dir):
    out, _, _ = model_dir
    path = out / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_model_dir(out)


def test_wrong_sha256_is_refused_before_loading(model_dir):
    out, digest, _ = model_dir
    with pytest.raises(IntegrityError, match="expected"):
        load_model_dir(out, expected_sha256="0" * 64)


def test_config_for_other_architecture(model_dir):
    out, _, _ = model_dir
    config = json.loads((out / "config.json").read_text())
    config["architecture"] = "wrn-16-1-swish"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="does not fit the architecture"):
        load_model_dir(out)


def test_malformed_config(model_dir):
    out, _, _ = model_dir
    (out / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_model_dir(out)
    (out / "config.json").write_text(json.dumps({"architecture": "wrn-10-1-swish"}))
    with pytest.raises(ConfigError, match="num_classes"):
        load_model_dir(out)


def test_failed_save_leaves_nothing(tmp_path):
    class Broken(torch.nn.Module):
        def state_dict(self, *a, **k):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_model_dir(Broken(), tmp_path / "m", {})
    assert list(tmp_path.iterdir()) == []
