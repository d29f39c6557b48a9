"""Publish -> load through the real huggingface_hub client against tests/hub_server.py, plus faults."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import zoo
from zoo.cli import main
from zoo.errors import HubError, IntegrityError
from zoo.publish import publish
from zoo.model_dir import make_config, save_model_dir
from zoo.registry import Entry, add_user_entry, get_entry

REPO = "score-zoo-test/tiny"


def tiny_entry(name="tiny-linf", **kw) -> Entry:
    return Entry(name=name, dataset="cifar10", threat_model="Linf", eps="8/255", architecture="wrn-10-1-swish",
                 num_classes=10, reported={"clean_acc": 50.0, "autoattack_acc": 20.0, "by": "test"},
                 description="A tiny test model.", builtin=False, **kw)


def save_tiny(path: Path, seed: int = 0) -> tuple[torch.nn.Module, str]:
    torch.manual_seed(seed)
    model = zoo.create_model("wrn-10-1-swish", dataset="cifar10")
    return model, save_model_dir(model, path, make_config("wrn-10-1-swish", 10, "cifar10", "Linf", 8 / 255))


@pytest.fixture()
def published(hub, tmp_path):
    """A tiny model published to the test Hub and registered as a user entry pinned to that commit."""
    model, digest = save_tiny(tmp_path / "tiny")
    entry = tiny_entry()
    result = publish(entry, tmp_path / "tiny", REPO)
    entry = dataclasses.replace(entry, **result.entry_update)
    add_user_entry(entry)
    return entry, model, result


def cached_weights(tmp_path) -> list[Path]:
    root = tmp_path / "hf-home" / "hub" / f"models--{REPO.replace('/', '--')}"
    return [p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")
            and ("blobs" in p.parts and p.stat().st_size > 10_000)]


def test_publish_then_load_round_trip_and_warm_cache_makes_no_request(published, hub, tmp_path, monkeypatch):
    entry, model, result = published
    assert len(result.commit) == 40 and hub.repos[REPO].branches["main"] == result.commit
    assert entry.hub == {"repo_id": REPO, "revision": result.commit, "filename": "model.safetensors"}
    loaded = zoo.load_model("tiny-linf")
    assert not loaded.training
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    model_dir, sha = zoo.resolve_model_dir("tiny-linf")
    assert sha == result.sha256 and model_dir.parts[-2:] == ("snapshots", result.commit)
    assert str(model_dir).startswith(str(tmp_path / "hf-home" / "hub"))

    hub.requests.clear()
    zoo.load_model("tiny-linf")                        # pinned commit, warm cache: no HEAD either
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    zoo.load_model("tiny-linf")
    assert hub.requests == []


def test_cold_cache_offline_is_a_clear_error(published, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="not in the local cache .*HF_HUB_OFFLINE"):
        zoo.load_model("tiny-linf")


@pytest.mark.parametrize("fault,error,match", [
    ("tamper", IntegrityError, "has sha256 .* expected .* removed from the cache"),
    ("truncate", HubError, "failed .*Consistency check failed.*nothing was cached"),
    ("error500", HubError, "HTTP 500"),
])
def test_download_faults_leave_nothing_and_a_retry_works(published, hub, tmp_path, fault, error, match):
    entry, model, _ = published
    hub.faults[fault].add("model.safetensors")
    with pytest.raises(error, match=match) as info:
        zoo.load_model("tiny-linf")
    assert "\n" not in str(info.value)
    assert cached_weights(tmp_path) == []
    hub.clear_faults()
    loaded = zoo.load_model("tiny-linf")
    torch.testing.assert_close(loaded.state_dict()["logits.weight"], model.state_dict()["logits.weight"])
    assert len(cached_weights(tmp_path)) == 1


def test_corrupted_cache_is_evicted_and_healed(published, tmp_path):
    zoo.load_model("tiny-linf")
    [blob] = cached_weights(tmp_path)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(IntegrityError):
        zoo.load_model("tiny-linf")
    assert cached_weights(tmp_path) == []
    zoo.load_model("tiny-linf")


def test_missing_revision_and_missing_repo(published):
    entry, _, _ = published
    with pytest.raises(HubError, match="revision 'v9' does not exist"):
        zoo.load_model("tiny-linf", revision="v9")
    add_user_entry(dataclasses.replace(entry, name="gone", hub={**entry.hub, "repo_id": "nobody/gone"}))
    with pytest.raises(HubError, match="repository nobody/gone was not found"):
        zoo.load_model("gone")


def test_unpinned_revision_loads_the_newer_commit(published, hub, tmp_path, caplog):
    entry, _, first = published
    newer, _ = save_tiny(tmp_path / "tiny-v2", seed=1)
    second = publish(dataclasses.replace(entry, sha256=None), tmp_path / "tiny-v2", REPO)
    assert second.commit != first.commit
    loaded = zoo.load_model("tiny-linf", revision="main")
    torch.testing.assert_close(loaded.state_dict()["logits.weight"], newer.state_dict()["logits.weight"])
    assert "not the one pinned" in caplog.text


def test_cli_load_json_and_one_line_error(published, hub):
    entry, model, result = published
    out = CliRunner().invoke(main, ["load", "tiny-linf", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["sha256"] == result.sha256 and info["verified"] is True
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["hub"]["revision"] == result.commit and Path(info["path"]).is_dir()
    assert info["reported"]["clean_acc"] == 50.0
    text = CliRunner().invoke(main, ["load", "tiny-linf"])
    assert "cached at" in text.output and result.sha256 in text.output
    add_user_entry(dataclasses.replace(get_entry("tiny-linf"), name="bad-sha", sha256="0" * 64))
    bad = CliRunner().invoke(main, ["load", "bad-sha"])
    assert bad.exit_code == 1
    assert bad.output.count("\n") == 1 and bad.output.startswith("Error: ") and "expected 000" in bad.output


def test_a_cached_load_hashes_the_weights_once(published, monkeypatch):
    """The Hub source checks the sha256; loading does not hash the same file again (safetensors maps it natively,
    so every Python-level read of the weights file is a hash)."""
    import builtins

    zoo.load_model("tiny-linf")                        # warm the cache
    reads, real_open = [], builtins.open

    def counting_open(file, mode="r", *args, **kwargs):
        if "b" in mode and str(file).endswith("model.safetensors"):
            reads.append(file)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    zoo.load_model("tiny-linf")
    assert len(reads) == 1, reads
