"""Importing original checkpoints: every flavour, and every kind of bad file."""

import pickle

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import zoo
from zoo.checkpoints import import_checkpoint, read_checkpoint
from zoo.cli import main
from zoo.errors import CheckpointError
from zoo.fileio import sha256_file

ARCH = "wrn-10-1-swish"


@pytest.fixture
def reference():
    torch.manual_seed(1)
    model = zoo.create_model(ARCH)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _flavours(sd):
    other = {k: torch.zeros_like(v) for k, v in sd.items()}
    return {
        "bare": sd,
        "score": {"model_state_dict": sd, "unaveraged_model_state_dict": other},
        "state_dict": {"state_dict": sd, "epoch": 3},
        "module_prefix": {f"module.{k}": v for k, v in sd.items()},
        "score_module_prefix": {"model_state_dict": {f"module.{k}": v for k, v in sd.items()},
                                "unaveraged_model_state_dict": {f"module.{k}": v for k, v in other.items()}},
    }


@pytest.mark.parametrize("flavour", ["bare", "score", "state_dict", "module_prefix", "score_module_prefix"])
def test_import_round_trip(tmp_path, reference, flavour):
    ckpt = tmp_path / "ckpt.pt"
    torch.save(_flavours(reference)[flavour], ckpt)
    out = tmp_path / "model"
    digest = import_checkpoint(ckpt, ARCH, 10, "cifar10", out, "Linf", 8 / 255)
    assert digest == sha256_file(out / "model.safetensors")
    weights = load_file(out / "model.safetensors")
    assert weights.keys() == reference.keys()
    for k in reference:
        assert torch.equal(weights[k], reference[k]), k
    model = zoo.load_model(out)
    assert not model.training
    original = zoo.create_model(ARCH).eval()
    original.load_state_dict(reference)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), original(x))
    assert zoo.read_config(out)["threat_model"] == "Linf"


def test_cli_import_prints_sha256(tmp_path, reference):
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model_state_dict": reference}, ckpt)
    out = tmp_path / "m"
    result = CliRunner().invoke(main, ["import", str(ckpt), "--arch", ARCH, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sha256_file(out / "model.safetensors") in result.output


def _bad_files(tmp_path, reference):
    good = tmp_path / "good.pt"
    torch.save(reference, good)
    data = good.read_bytes()
    files = {}
    files["truncated"] = data[: len(data) // 2]
    files["html"] = b"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head></html>"

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))

    files["code_pickle"] = pickle.dumps({"model_state_dict": Evil()})
    other = zoo.create_model("wrn-16-1-swish").state_dict()
    buf = tmp_path / "other.pt"
    torch.save(other, buf)
    files["other_arch"] = buf.read_bytes()
    torch.save({"epoch": 1, "lr": 0.1}, buf)
    files["no_tensors"] = buf.read_bytes()
    return files


@pytest.mark.parametrize("kind", ["truncated", "html", "code_pickle", "other_arch", "no_tensors"])
def test_bad_checkpoints_give_one_line_and_write_nothing(tmp_path, reference, kind, capfd):
    bad = tmp_path / f"{kind}.pt"
    bad.write_bytes(_bad_files(tmp_path, reference)[kind])
    out = tmp_path / "out"
    with pytest.raises(CheckpointError):
        import_checkpoint(bad, ARCH, 10, "cifar10", out)
    assert not out.exists()
    result = CliRunner().invoke(main, ["import", str(bad), "--arch", ARCH, "--out", str(out)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    assert "this must never run" not in capfd.readouterr().out


def test_mismatch_names_the_first_keys(tmp_path, reference):
    ckpt = tmp_path / "c.pt"
    torch.save(reference, ckpt)
    with pytest.raises(CheckpointError, match=r"missing key.*layer\.0\.block\.1"):
        import_checkpoint(ckpt, "wrn-16-1-swish", 10, "cifar10", tmp_path / "o")
    with pytest.raises(CheckpointError, match=r"shape mismatch.*logits\.weight"):
        import_checkpoint(ckpt, ARCH, 100, "cifar100", tmp_path / "o")


def test_unknown_architecture_from_cli(tmp_path, reference):
    ckpt = tmp_path / "c.pt"
    torch.save(reference, ckpt)
    result = CliRunner().invoke(main, ["import", str(ckpt), "--arch", "wrn-10-1-swsh", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "unknown architecture" in result.output and "wrn-10-1-swish" in result.output


def test_existing_output_is_not_overwritten(tmp_path, reference):
    ckpt = tmp_path / "c.pt"
    torch.save(reference, ckpt)
    out = tmp_path / "o"
    import_checkpoint(ckpt, ARCH, 10, "cifar10", out)
    before = sha256_file(out / "model.safetensors")
    with pytest.raises(CheckpointError, match="already exists"):
        import_checkpoint(ckpt, ARCH, 10, "cifar10", out)
    assert sha256_file(out / "model.safetensors") == before


def test_import_and_evaluate_weights_read_a_checkpoint_the_same_way(tmp_path):
    """One reader: a checkpoint holding both ``state_dict`` and ``model_state_dict`` gives `score-zoo import` and
    `score-harness evaluate --weights` the same weights (the SCORE releases' EMA weights, ``model_state_dict``)."""
    from harness.models import resolve_model
    from harness_helpers import centroid_model

    ema = {k: v.clone() for k, v in centroid_model().state_dict().items()}
    live = {k: torch.zeros_like(v) for k, v in ema.items()}
    path = tmp_path / "both.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in live.items()}, "model_state_dict": ema}, path)
    imported = read_checkpoint(path)
    evaluated = resolve_model("harness_helpers:centroid_model", weights=str(path)).model.state_dict()
    assert imported.keys() == evaluated.keys()
    assert all(torch.equal(imported[k], evaluated[k]) and torch.equal(imported[k], ema[k]) for k in ema)
