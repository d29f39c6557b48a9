"""`score-harness evaluate` on a package.module:callable MODEL with --weights, and its --json output."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from harness.cli import main
from harness.data import load_tensors
from harness_helpers import TESTS_DIR, centroid_model
from zoo.fileio import sha256_file

N = 32
SMALL = ["--n-examples", str(N), "--batch-size", str(N), "--version", "custom", "--attacks", "apgd-ce",
         "--n-iter", "2", "--workers", "1"]


def _accuracy(model: torch.nn.Module):
    """The model's accuracy on the first N bundled images, as results report it (two decimals)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, N)
    with torch.no_grad():
        return pytest.approx(100.0 * (model(x).argmax(1) == y).float().mean().item(), abs=0.0051)


@pytest.fixture()
def other_weights(tmp_path):
    """The centroid model's weights with its classes rotated by one: another model of the same shape."""
    model = centroid_model()
    state = {k: v.roll(1, 0).contiguous() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    save_file(state, tmp_path / "other.safetensors")
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "other.pt")
    return model, tmp_path / "other.safetensors", tmp_path / "other.pt"


def test_weights_replace_the_callables_own_and_json_prints_the_result(other_weights, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    other, safetensors_file, pt_file = other_weights
    assert _accuracy(other).expected != _accuracy(centroid_model()).expected
    runs = {}
    for name, weights in [("builder", None), ("safetensors", safetensors_file), ("pt", pt_file)]:
        out = tmp_path / f"{name}.json"
        args = ["evaluate", "harness_helpers:centroid_model", *SMALL, "--json", "--out", str(out)]
        result = CliRunner().invoke(main, args + (["--weights", str(weights)] if weights else []))
        assert result.exit_code == 0, result.output
        printed = json.loads(result.stdout)
        assert printed == json.loads(out.read_text())  # --json prints exactly the result file
        runs[name] = printed["evaluation"]
    assert runs["builder"]["clean_accuracy"] == _accuracy(centroid_model())
    for name, weights in [("safetensors", safetensors_file), ("pt", pt_file)]:
        assert runs[name]["clean_accuracy"] == _accuracy(other), name
        assert runs[name]["weights_sha256"] == sha256_file(weights)
    assert runs["builder"]["weights_sha256"] not in (runs["safetensors"]["weights_sha256"], runs["pt"]["weights_sha256"])


def test_json_output_has_robustbenchs_model_info_keys(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    reference = json.loads((TESTS_DIR / "data" / "robustbench-model-info"
                            / "cifar10_Linf_Pang2022Robustness_WRN28_10.json").read_text())
    result = CliRunner().invoke(main, ["evaluate", "harness_helpers:centroid_model", *SMALL, "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert set(printed) == set(reference) | {"evaluation"}
    ev = printed["evaluation"]
    assert float(printed["clean_acc"]) == _accuracy(centroid_model()) and ev["clean_accuracy"] == _accuracy(centroid_model())
    assert float(printed["autoattack_acc"]) == pytest.approx(ev["robust_accuracy"], abs=0.0051)  # two decimals
    assert ev["n_examples"] == N and ev["autoattack"]["attacks"] == ["apgd-ce"]


@pytest.mark.parametrize("spec,weights,message", [
    ("cifar10-linf-tiny", "other.safetensors", "--weights only applies to a package.module:callable MODEL"),
    ("harness_helpers:centroid_model", "missing.pt", "does not exist"),
    ("harness_helpers:centroid_model", "garbage.pt", "is not a PyTorch checkpoint"),
])
def test_bad_weights_are_one_line(other_weights, tmp_path, monkeypatch, spec, weights, message):
    monkeypatch.syspath_prepend(str(TESTS_DIR))
    (tmp_path / "garbage.pt").write_bytes(b"not a pickle")
    result = CliRunner().invoke(main, ["evaluate", spec, "--weights", str(tmp_path / weights), *SMALL])
    assert result.exit_code == 1 and result.stderr.strip().startswith("Error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
