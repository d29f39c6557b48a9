"""`score-zoo mirror`: RobustBench checkpoints (random weights in robustbench's checkpoint layout, served by the
loopback Google Drive stand-in or found in robustbench's model folder) become safetensors on the loopback Hub, with
cards made from RobustBench's real model_info JSON, and load three ways with the logits of the model robustbench
builds from its own checkpoint; bulk mirroring past failures, resume after SIGKILL, refusals."""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import timm
import torch
from click.testing import CliRunner
from huggingface_hub import ModelCard
from model_info_server import ModelInfoServer
from scipy.stats import binomtest
from test_timm_and_robustbench import run_robustbench_load

import harness
import zoo
from zoo import cards, registry
from zoo.cli import main
from zoo.fileio import sha256_file
from zoo.robustbench.weights import build_mirrored_model
from zoo.registry import get_entry, list_entries
from zoo.architectures.robustbench import create_robustbench_model, robustbench_board, robustbench_model

MODEL_INFO = Path(__file__).parent / "data" / "robustbench-model-info-tree"
BOARD = ("cifar10", "corruptions")
WRN = "Hendrycks2020AugMix_WRN"          # WideResNet-40-2, 2.2M parameters
RESNEXT = "Hendrycks2020AugMix_ResNeXt"  # ResNeXt-29, 6.8M parameters
ENTRY = {WRN: "cifar10-corruptions-Hendrycks2020AugMix_WRN", RESNEXT: "cifar10-corruptions-Hendrycks2020AugMix_ResNeXt"}
TIMM_NAME = {WRN: "hendrycks2020augmix_wrn_cifar10_corruptions"}   # what robustbench's load_model asks timm for
X = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
DRIVE_HTML = (b"<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head>"
              b"<body>Too many users have viewed or downloaded this file recently.</body></html>")

pytestmark = pytest.mark.robustbench   # mirroring builds RobustBench's own definitions


def logits(model):
    with torch.no_grad():
        return model.eval()(X)


def drive_key(name: str) -> str:
    """The path gdown requests for a model's RobustBench Drive copy, as robustbench's loader asks for it."""
    return f"/uc?id={robustbench_model(name, *BOARD)['gdrive_id']}"


def rb_checkpoint(name: str, seed: int = 0) -> bytes:
    """Random weights saved as RobustBench's AugMix checkpoints are: {'state_dict': {'module.' + key: ...}}, without
    the normalisation buffers mu and sigma (robustbench's loader knows these checkpoints lack them)."""
    torch.manual_seed(seed)
    model = create_robustbench_model(name, *BOARD)
    state = {f"module.{k}": v for k, v in model.state_dict().items() if k not in ("mu", "sigma")}
    buf = io.BytesIO()
    torch.save({"epoch": 90, "state_dict": state}, buf)
    return buf.getvalue()


def robustbench_reference(name: str, models: Path):
    """The model robustbench's own loader builds from the checkpoint in ``models`` (not through timm)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from robustbench.utils import load_model
    assert not timm.is_model(f"{name.lower()}_{BOARD[0]}_{BOARD[1]}")   # else robustbench would take timm's path
    return load_model(name, model_dir=models, dataset=BOARD[0], threat_model=BOARD[1])


@pytest.fixture()
def env(hub, monkeypatch, tmp_path):
    """The loopback Hub, also standing in for Google Drive; robustbench's model folder and the output folder."""
    monkeypatch.setenv("SCORE_ZOO_GDRIVE_ENDPOINT", hub.url)
    return hub, tmp_path / "models", tmp_path / "mirrors"


def mirror_args(models: Path, out: Path, *args: str, dataset: str = BOARD[0], threat_model: str = BOARD[1],
                model_info: Path | None = MODEL_INFO) -> list[str]:
    extra = ["--model-info-dir", str(model_info)] if model_info is not None else []
    return ["mirror", *args, "--dataset", dataset, "--threat-model", threat_model, "--model-dir", str(models),
            "--out", str(out), "--no-progress", *extra]


def user_entries() -> list[str]:
    return [e.name for e in list_entries() if not e.builtin]


def board_checkpoint(models: Path, name: str) -> Path:
    return models / BOARD[0] / BOARD[1] / f"{name}.pt"


def test_mirror_from_drive_then_load_three_ways_with_robustbench_logits(env, tmp_path):
    hub, models, out = env
    served = rb_checkpoint(WRN)
    hub.static[drive_key(WRN)] = served
    result = CliRunner().invoke(main, mirror_args(models, out, WRN, "--repo-id", "org/augmix-wrn",
                                                  "--check-clean", "20", "--json"))
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert f"model_info: {MODEL_INFO / 'model_info'} (given with --model-info-dir)" in result.stderr
    commit = hub.repos["org/augmix-wrn"].resolve("main")
    folder = out / ENTRY[WRN]
    assert (outcome["status"], outcome["repo_id"], outcome["revision"]) == ("mirrored", "org/augmix-wrn", commit.oid)
    assert outcome["sha256"] == sha256_file(folder / "model.safetensors")

    # the download went where robustbench's loader looks, so robustbench reuses it (no network here)
    assert board_checkpoint(models, WRN).read_bytes() == served
    reference = robustbench_reference(WRN, models)

    # the model directory and what went up: safetensors, a config naming the RobustBench model, the card
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    rb = {"model": WRN, "dataset": "cifar10", "threat_model": "corruptions"}
    assert config["robustbench"] == rb and config["architecture"] == "robustbench:WideResNet-40-2"
    assert config["mirror"]["checkpoints"][0]["sha256"] == sha256_file(board_checkpoint(models, WRN))
    assert commit.files["model.safetensors"] == (folder / "model.safetensors").read_bytes()
    hub_config = json.loads(commit.files["config.json"])
    assert hub_config["architecture"] == TIMM_NAME[WRN] and hub_config["robustbench"] == rb
    assert hub_config["pretrained_cfg"]["mean"] == [0.0, 0.0, 0.0]

    # the card: RobustBench's model_info (paper, authors, venue, accuracies, data), marked as a mirror
    card = ModelCard(commit.files["README.md"].decode())
    assert f"# {ENTRY[WRN]}\n\nA mirror of the authors' weights of RobustBench's {WRN} (WideResNet-40-2" in card.text
    for text in ("## A mirror of the authors' weights", "SCORE Zoo did not train or modify them",
                 "*AugMix: A Simple Data Processing Method to Improve Robustness and Uncertainty* (Dan Hendrycks, Norman Mu",
                 "ICLR 2020), https://arxiv.org/abs/1912.02781", "clean 95.08%, corruptions 88.82%",
                 "Additional training data: no", f"Google Drive id `{robustbench_model(WRN, *BOARD)['gdrive_id']}`"):
        assert text in card.text, text
    assert "robustbench-mirror" in card.data.tags and "score" not in card.data.tags
    assert {(r.metric_config, r.metric_value, r.source_name) for r in card.data.eval_results} == {
        ("clean", 95.08, "RobustBench leaderboard")}

    # the entry pins the commit and the sha256
    entry = get_entry(ENTRY[WRN])
    assert entry.hub == {"repo_id": "org/augmix-wrn", "revision": commit.oid, "filename": "model.safetensors"}
    assert entry.sha256 == outcome["sha256"] and entry.published and entry.robustbench_id == (WRN, *BOARD)
    assert (folder / "README.md").read_text().count(commit.oid) >= 1        # the local card shows the pinned commit

    # the clean check: the first 20 bundled images, counted here on robustbench's model, exact binomial interval
    from harness.data import load_tensors

    x20, y20 = load_tensors("cifar10", "test", None, 20)
    with torch.no_grad():
        k = int((reference(x20).argmax(1) == y20).sum())
    ci = binomtest(k, 20).proportion_ci(0.95, method="exact")
    check = entry.origin["mirror"]["clean_check"]
    assert (check["correct"], check["n_examples"], check["reported_clean_acc"]) == (k, 20, 95.08)
    assert check["interval"] == pytest.approx([100 * ci.low, 100 * ci.high], abs=1e-9)
    assert check["consistent"] is False and check == outcome["clean_check"]   # random weights are not 95% accurate
    assert (f"{k}/20 = {100 * k / 20:.2f}% on the first 20 test images (the bundled JPEG-decoded subset, not the "
            f"official test files)") in card.text and "NOT consistent with RobustBench's 95.08%" in card.text

    # loading: zoo, harness (RobustBench's signature), then robustbench's own load_model and timm in a fresh interpreter
    torch.testing.assert_close(logits(zoo.load_model(ENTRY[WRN])), logits(reference), rtol=0, atol=0)
    via_harness = harness.load_model(WRN, model_dir=tmp_path / "unused", dataset="cifar10", threat_model="corruptions")
    torch.testing.assert_close(logits(via_harness), logits(reference), rtol=0, atol=0)
    torch.save(X, tmp_path / "x.pt")
    got = run_robustbench_load(tmp_path / "rb-models", tmp_path / "x.pt", WRN, *BOARD, ENTRY[WRN], TIMM_NAME[WRN],
                               "org/augmix-wrn")
    assert got["registered"] and got["training"] is False and got["class"] == type(reference).__name__
    torch.testing.assert_close(torch.tensor(got["logits"]), logits(reference), rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(got["timm_logits"]), logits(reference), rtol=0, atol=0)
    assert f"expected {outcome['sha256']}" in got["tampered"] and "removed from the cache" in got["tampered"]
    assert not (tmp_path / "rb-models").exists()            # nothing came from robustbench's Google Drive path


def test_bulk_goes_on_past_failures_and_all_skips_what_is_mirrored(env, tmp_path, monkeypatch):
    hub, models, out = env
    monkeypatch.setattr(registry, "BUILTIN_DIR", tmp_path / "entries")          # --builtin writes the package's set
    monkeypatch.setattr(cards, "default_cards_dir", lambda entry=None: tmp_path / "model_cards")
    hub.static[drive_key(WRN)] = rb_checkpoint(WRN)
    hub.static[drive_key(RESNEXT)] = DRIVE_HTML                                  # Drive refuses this one

    with ModelInfoServer() as github:              # no --model-info-dir, no clone: RobustBench's repository
        monkeypatch.setenv("SCORE_ZOO_MODEL_INFO_URL", github.url)
        dry = CliRunner().invoke(main, mirror_args(models, out, WRN, "--dry-run", "--json", model_info=None))
    assert dry.exit_code == 0, dry.output
    assert f"model_info: {github.url} (no clone found: each model's file is fetched" in dry.stderr
    assert github.requests == [f"/model_info/cifar10/corruptions/{WRN}.json"]
    assert json.loads(dry.stdout)["status"] == "dry-run" and hub.repos == {} and list_entries() == []   # none built in
    assert "A mirror of the authors' weights" in (out / ENTRY[WRN] / "README.md").read_text()

    result = CliRunner().invoke(main, mirror_args(models, out, WRN, RESNEXT, "--org", "org", "--builtin", "--json"))
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert [o["name"] for o in summary["mirrored"]] == [WRN] and [o["name"] for o in summary["failed"]] == [RESNEXT]
    reason = summary["failed"][0]["detail"]
    assert reason.startswith("RobustBench's Google Drive copy of Hendrycks2020AugMix_ResNeXt: the answer from ")
    assert "is an HTML page, not a checkpoint" in reason
    assert "Error: 1 of 2 models failed" in result.stderr
    assert not board_checkpoint(models, RESNEXT).exists()             # the HTML page was not kept as the checkpoint
    assert list(hub.repos) == [f"org/{ENTRY[WRN]}"] and [e.name for e in list_entries()] == [ENTRY[WRN]]
    assert (tmp_path / "entries" / f"{ENTRY[WRN]}.json").is_file()
    check = CliRunner().invoke(main, ["card", "--all", "--check"])            # the shipped card matches its entry
    assert check.exit_code == 0, check.output

    commits = len(hub.repos[f"org/{ENTRY[WRN]}"].commits)
    result = CliRunner().invoke(main, mirror_args(models, out, "--all", "--org", "org", "--json"))
    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    board = list(robustbench_board(*BOARD))
    assert sorted(o["name"] for group in ("mirrored", "skipped", "failed") for o in summary[group]) == sorted(board)
    assert [o["name"] for o in summary["skipped"]] == [WRN] and summary["mirrored"] == []
    assert "already mirrored at org/" in summary["skipped"][0]["detail"] and "from the same checkpoint" in summary["skipped"][0]["detail"]
    assert len(hub.repos[f"org/{ENTRY[WRN]}"].commits) == commits          # nothing uploaded again
    failed = {o["name"]: o["detail"] for o in summary["failed"]}
    assert "is an HTML page" in failed[RESNEXT]
    assert all("not a PyTorch checkpoint" in d for n, d in failed.items() if n != RESNEXT)   # not on the stand-in


def test_resume_after_sigkill_mid_bulk(env, tmp_path):
    hub, models, out = env
    board_checkpoint(models, WRN).parent.mkdir(parents=True)
    board_checkpoint(models, WRN).write_bytes(rb_checkpoint(WRN))        # an earlier robustbench download, reused
    hub.static[drive_key(RESNEXT)] = rb_checkpoint(RESNEXT, seed=1)
    hub.faults["hang"].add(drive_key(RESNEXT))                            # its download stays in flight
    command = [sys.executable, "-m", "zoo.cli", *mirror_args(models, out, WRN, RESNEXT, "--org", "org")]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen(command, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=stderr)
    deadline = time.monotonic() + 240
    while ("GET", "/uc") not in hub.requests and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ("GET", "/uc") in hub.requests, (tmp_path / "stderr.txt").read_text()[-2000:]
    proc.send_signal(signal.SIGKILL)                                      # mid-bulk: the first model done, the second downloading
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert user_entries() == [ENTRY[WRN]] and get_entry(ENTRY[WRN]).published
    assert not board_checkpoint(models, RESNEXT).exists()
    commits = len(hub.repos[f"org/{ENTRY[WRN]}"].commits)

    hub.faults["hang"].clear()
    hub.release.set()
    result = CliRunner().invoke(main, mirror_args(models, out, WRN, RESNEXT, "--org", "org", "--json"))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [o["name"] for o in summary["skipped"]] == [WRN] and [o["name"] for o in summary["mirrored"]] == [RESNEXT]
    assert len(hub.repos[f"org/{ENTRY[WRN]}"].commits) == commits
    reference = robustbench_reference(RESNEXT, models)
    torch.testing.assert_close(logits(zoo.load_model(ENTRY[RESNEXT])), logits(reference), rtol=0, atol=0)


def test_robustbench_rules_for_a_last_and_best_checkpoint(tmp_path):
    """Kireev2021Effectiveness checkpoints hold 'last' and 'best' (robustbench's loader takes 'last'), keys 'module.'."""
    name = "Kireev2021Effectiveness_RLAT"                                     # PreActResNet-18
    torch.manual_seed(0)
    last, best = (create_robustbench_model(name, *BOARD).state_dict() for _ in range(2))
    path = board_checkpoint(tmp_path, name)
    path.parent.mkdir(parents=True)
    torch.save({"last": {f"module.{k}": v for k, v in last.items()},
                "best": {f"module.{k}": v for k, v in best.items()}}, path)
    model, records = build_mirrored_model(name, *BOARD, [(path, robustbench_model(name, *BOARD)["gdrive_id"])])
    assert records == [{"file": path.name, "gdrive_id": robustbench_model(name, *BOARD)["gdrive_id"],
                        "sha256": sha256_file(path), "source": "model-dir"}] and not model.training
    torch.testing.assert_close(logits(model), logits(robustbench_reference(name, tmp_path)), rtol=0, atol=0)
    torch.testing.assert_close(model.state_dict()["linear.weight"], last["linear.weight"], rtol=0, atol=0)


def test_a_checkpoint_that_needs_code_execution_is_refused_with_one_line(env, capfd):
    hub, models, out = env

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    board_checkpoint(models, WRN).parent.mkdir(parents=True)
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "extra": Evil()}, board_checkpoint(models, WRN))
    result = CliRunner().invoke(main, mirror_args(models, out, WRN, "--repo-id", "org/evil"))
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "cannot be loaded safely" in errors[0] and "weights_only=True" in errors[0]
    assert "Traceback" not in result.output and "this must never run" not in capfd.readouterr().out
    assert hub.repos == {} and user_entries() == [] and not (out / ENTRY[WRN]).exists()


@pytest.mark.parametrize("name,options,message", [
    ("Hendrycks2020AugMix_WRM", {}, "RobustBench has no cifar10 corruptions model 'Hendrycks2020AugMix_WRM'. Did you "
                                    "mean: Hendrycks2020AugMix_WRN"),
    ("Salman2020Do_R18", {"dataset": "imagenet", "threat_model": "Linf"}, "the zoo mirrors the cifar10 and cifar100"),
    ("Debenedetti2022Light_XCiT-S12", {"threat_model": "Linf"}, "keeps no checkpoint of Debenedetti2022Light_XCiT-S12"),
    (WRN, {"model_info": "empty"}, "is not RobustBench's model_info tree"),
    (WRN, {"model_info": None}, "cannot fetch RobustBench's model_info http://127.0.0.1:"),   # no clone, offline
])
def test_refusals_are_one_line_before_any_download(env, tmp_path, monkeypatch, name, options, message):
    hub, models, out = env
    if options.get("model_info") == "empty":
        options = {"model_info": tmp_path}
    with socket.socket() as s:                      # RobustBench's repository, unreachable: a port with no server
        s.bind(("127.0.0.1", 0))
        monkeypatch.setenv("SCORE_ZOO_MODEL_INFO_URL", f"http://127.0.0.1:{s.getsockname()[1]}/model_info")
    result = CliRunner().invoke(main, mirror_args(models, out, name, **options))
    assert result.exit_code == 1, result.output
    assert result.output.splitlines()[-1].startswith("Error: ") and message in result.output
    assert "Traceback" not in result.output and hub.requests == [] and not models.exists()


def test_the_zoo_own_entries_are_published_not_mirrored_and_usage(env):
    hub, models, out = env
    result = CliRunner().invoke(main, mirror_args(models, out, "Pang2022Robustness_WRN28_10", threat_model="Linf"))
    assert result.exit_code == 0, result.output
    assert "skipped  Pang2022Robustness_WRN28_10: the zoo has it as its own entry 'cifar10-linf'" in result.output
    assert "score-zoo publish cifar10-linf --repo-id ORG/cifar10-linf --save-entry" in result.output
    assert CliRunner().invoke(main, mirror_args(models, out, WRN, "--all")).exit_code == 2
    assert CliRunner().invoke(main, mirror_args(models, out, WRN, RESNEXT, "--repo-id", "a/b")).exit_code == 2
    assert hub.requests == []

