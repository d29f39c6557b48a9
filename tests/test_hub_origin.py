"""Entries not yet on the Hub: the original .pt from an origin server on 127.0.0.1, imported once."""

import logging
import socket

import pytest
import torch
from test_hub_load import tiny_entry

import zoo
from zoo.errors import CheckpointError, HubError, IntegrityError
from zoo.fileio import sha256_file
from zoo.origin import origin_cache_root
from zoo.registry import add_user_entry

PATH = "/~authors/SCORE/checkpoints/tiny_cifar10.pt"
URL = "https://origin.invalid" + PATH


@pytest.fixture()
def origin(hub, monkeypatch, tmp_path):
    """The origin server holding an original-format checkpoint (module. prefix, EMA weights nested)."""
    torch.manual_seed(0)
    model = zoo.create_model("wrn-10-1-swish", dataset="cifar10")
    original = tmp_path / "orig.pt"
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "unaveraged_model_state_dict": {}}, original)
    monkeypatch.setenv("SCORE_ZOO_ORIGIN_ENDPOINT", hub.url)
    hub.static[PATH] = original.read_bytes()
    add_user_entry(tiny_entry(origin={"url": URL, "format": "pt"}))
    return hub, model, original


def test_first_load_imports_the_origin_file_with_a_warning_then_uses_the_cache(origin, caplog):
    server, model, original = origin
    with caplog.at_level(logging.WARNING):
        loaded = zoo.load_model("tiny-linf")
    assert "trusted on first use" in caplog.text and sha256_file(original) in caplog.text
    torch.testing.assert_close(loaded.state_dict()["logits.weight"], model.state_dict()["logits.weight"])
    assert (origin_cache_root() / "tiny-linf" / "origin.json").is_file()
    server.requests.clear()
    zoo.load_model("tiny-linf")
    assert server.requests == []


def test_modified_import_is_removed_and_refetched(origin):
    zoo.load_model("tiny-linf")
    weights = origin_cache_root() / "tiny-linf" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(IntegrityError, match="were modified"):
        zoo.load_model("tiny-linf")
    zoo.load_model("tiny-linf")


def test_pinned_origin_hash_must_match(origin):
    server, _, original = origin
    add_user_entry(tiny_entry(origin={"url": URL, "sha256": "0" * 64}))
    with pytest.raises(IntegrityError, match="pins 0000"):
        zoo.load_model("tiny-linf")
    assert not (origin_cache_root() / "tiny-linf").exists()
    add_user_entry(tiny_entry(origin={"url": URL, "sha256": sha256_file(original)}))
    zoo.load_model("tiny-linf")


def test_html_instead_of_a_checkpoint(origin):
    server, _, _ = origin
    server.static[PATH] = b"<!DOCTYPE html><html><body>Google Drive - quota exceeded</body></html>"
    with pytest.raises(CheckpointError, match="HTML page.*score-zoo import"):
        zoo.load_model("tiny-linf")
    assert not (origin_cache_root() / "tiny-linf").exists()


def test_unreachable_origin_names_the_maintainer_commands(origin, monkeypatch):
    with socket.socket() as s:                      # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SCORE_ZOO_ORIGIN_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError) as info:
        zoo.load_model("tiny-linf")
    message = str(info.value)
    assert "cannot fetch" in message and f"curl -L -o tiny_cifar10.pt {URL}" in message
    assert "score-zoo import tiny_cifar10.pt --arch wrn-10-1-swish" in message
    assert "score-zoo publish tiny-linf --model-dir models/tiny-linf --repo-id <org>/tiny-linf --save-entry" in message
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set and 'tiny-linf' is not on the Hub yet"):
        zoo.load_model("tiny-linf")
