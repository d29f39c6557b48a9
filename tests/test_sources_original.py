"""Entries not yet on the Hub: the original .pt from the authors' server, else RobustBench's
Google Drive copy (through gdown), both served on 127.0.0.1, imported once, source recorded."""

import json
import logging
import re
import socket

import pytest
import torch
from click.testing import CliRunner
from test_hub_load import tiny_entry

import zoo
from zoo.cli import main
from zoo.errors import CheckpointError, HubError, IntegrityError
from zoo.fileio import sha256_file
from zoo.registry import add_user_entry
from zoo.sources.imported import cache_root as origin_cache_root

PATH = "/~authors/SCORE/checkpoints/tiny_cifar10.pt"
URL = "https://origin.invalid" + PATH
GDRIVE_ID = "1TinyScoreCopyOnDrive"
DRIVE_KEY = f"/uc?id={GDRIVE_ID}"            # what gdown requests, as robustbench's loader does
DRIVE_HTML = (b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head>"
              b"<body>Google Drive can't scan this file for viruses.</body></html>")


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
    with pytest.raises(CheckpointError, match="HTML page") as info:
        zoo.load_model("tiny-linf")
    assert "score-zoo import" in info.value.details
    assert not (origin_cache_root() / "tiny-linf").exists()


def test_unreachable_origin_names_the_maintainer_commands(origin, monkeypatch):
    with socket.socket() as s:                      # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SCORE_ZOO_ORIGIN_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(HubError) as info:
        zoo.load_model("tiny-linf")
    message, details = str(info.value), info.value.details
    assert message.startswith("could not fetch 'tiny-linf' (the authors' server: cannot fetch ")
    assert message.endswith("(--verbose for details)")
    assert "the authors' server: cannot fetch" in details and f"curl -L -o tiny_cifar10.pt {URL}" in details
    assert "score-zoo import tiny_cifar10.pt --arch wrn-10-1-swish" in details
    assert "score-zoo publish tiny-linf --model-dir models/tiny-linf --repo-id <org>/tiny-linf --save-entry" in details
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set and 'tiny-linf' is not in the local cache") as info:
        zoo.load_model("tiny-linf")
    assert "score-zoo import tiny_cifar10.pt" in info.value.details
    short = CliRunner().invoke(main, ["load", "tiny-linf"])
    assert short.exit_code == 1 and short.output == f"Error: {info.value}\n" and len(short.output) < 200
    verbose = CliRunner().invoke(main, ["load", "tiny-linf", "--verbose"])
    assert verbose.exit_code == 1 and verbose.output == f"Error: {info.value}\n{info.value.details}\n"


@pytest.fixture()
def two_sources(origin, monkeypatch):
    """The same entry with RobustBench's Drive copy too (gdown fetches it from the test server)."""
    server, model, original = origin
    monkeypatch.setenv("SCORE_ZOO_GDRIVE_ENDPOINT", server.url)
    server.static[DRIVE_KEY] = original.read_bytes()
    add_user_entry(tiny_entry(origin={"url": URL, "gdrive_id": GDRIVE_ID, "robustbench_name": "Tiny2022",
                                      "format": "pt"}))
    return server, model, original


def _requested(server):
    return [p for _, p in server.requests if p in (PATH, "/uc")]


def test_the_authors_server_comes_first_and_the_source_is_recorded(two_sources):
    server, model, _ = two_sources
    out = CliRunner().invoke(main, ["load", "tiny-linf", "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.stdout)
    assert (info["source"], info["source_detail"]) == ("authors", server.url + PATH)
    assert _requested(server) == [PATH]
    record = json.loads((origin_cache_root() / "tiny-linf" / "origin.json").read_text())
    assert record["source"] == "authors" and record["url"] == server.url + PATH
    text = CliRunner().invoke(main, ["load", "tiny-linf"]).output     # from the cache now, source kept
    assert "source     the authors' server (imported)" in text and _requested(server) == [PATH]


@pytest.mark.parametrize("failure", ["missing", "html", "truncated", "unreachable"])
def test_a_failing_authors_server_falls_back_to_robustbench_copy(two_sources, monkeypatch, caplog, failure):
    server, model, original = two_sources
    if failure == "missing":
        del server.static[PATH]
    elif failure == "html":
        server.static[PATH] = DRIVE_HTML
    elif failure == "truncated":
        server.faults["truncate"].add(PATH)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            monkeypatch.setenv("SCORE_ZOO_ORIGIN_ENDPOINT", f"http://127.0.0.1:{s.getsockname()[1]}")
    with caplog.at_level(logging.WARNING):
        loaded = zoo.load_model("tiny-linf")
    torch.testing.assert_close(loaded.state_dict()["logits.weight"], model.state_dict()["logits.weight"])
    assert "the authors' server failed" in caplog.text and "trying RobustBench's Google Drive copy" in caplog.text
    found = zoo.locate("tiny-linf")
    assert (found.source, found.detail) == ("robustbench-gdrive", f"{server.url}/uc?id={GDRIVE_ID}")
    record = json.loads((origin_cache_root() / "tiny-linf" / "origin.json").read_text())
    assert record["source"] == "robustbench-gdrive" and record["original_sha256"] == sha256_file(original)
    assert _requested(server)[-1] == "/uc"


@pytest.mark.parametrize("drive,error,match", [
    ("html", CheckpointError, r"RobustBench's Google Drive copy: the answer from .*uc\?id=.* is an HTML page"),
    ("truncated", HubError, r"RobustBench's Google Drive copy: the download of .* was truncated"),
    ("garbage", CheckpointError, r"RobustBench's Google Drive copy: .* is not a PyTorch checkpoint"),
])
def test_both_sources_failing_is_one_line_naming_each_and_nothing_is_kept(two_sources, drive, error, match):
    server, _, original = two_sources
    del server.static[PATH]
    if drive == "html":
        server.static[DRIVE_KEY] = DRIVE_HTML
    elif drive == "truncated":
        server.faults["truncate"].add(DRIVE_KEY)
    else:
        server.static[DRIVE_KEY] = b'{"error": "Not Found"}'      # gdown saves any answer, whatever its status
    with pytest.raises(error, match="could not fetch 'tiny-linf'") as info:
        zoo.load_model("tiny-linf")
    details = info.value.details
    assert "\n" not in str(info.value) and re.search(match, details)
    assert "the authors' server: HTTP 404" in details and "score-zoo import" in details
    assert not (origin_cache_root() / "tiny-linf").exists()
    assert [p.name for p in origin_cache_root().iterdir()] == []
    out = CliRunner().invoke(main, ["load", "tiny-linf"])            # gdown's progress lines, then one error line
    errors = [line for line in out.output.splitlines() if line.startswith("Error")]
    assert out.exit_code == 1 and len(errors) == 1 and errors[0].startswith("Error: could not fetch")
    assert out.output.splitlines()[-1] == errors[0] and "Traceback" not in out.output


def test_robustbench_copy_alone_and_its_pinned_hash(two_sources):
    server, model, original = two_sources
    add_user_entry(tiny_entry(origin={"gdrive_id": GDRIVE_ID, "gdrive_sha256": "0" * 64}))
    with pytest.raises(IntegrityError, match="pins 0000.*RobustBench's Google Drive copy serves a different file"):
        zoo.load_model("tiny-linf")
    assert _requested(server) == ["/uc"]
    add_user_entry(tiny_entry(origin={"gdrive_id": GDRIVE_ID, "gdrive_sha256": sha256_file(original)}))
    zoo.load_model("tiny-linf")
    assert zoo.locate("tiny-linf").source == "robustbench-gdrive"
