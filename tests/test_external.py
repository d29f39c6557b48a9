"""export-external writes RobustBench's submission tensor; check-external re-scores one and refuses bad files."""

from __future__ import annotations

import warnings

import pytest
import torch
from click.testing import CliRunner

from harness.cli import main
from harness.data import load_tensors
from harness.evaluation import evaluate
from harness.external import check_external, export_external
from harness_helpers import centroid_model

MODEL = "harness_helpers:centroid_model"
KW = dict(n_examples=32, batch_size=8, eps="2/255", version="custom", attacks=["apgd-ce"], n_iter=1, progress=False,
          workers=1, device="cpu")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("external")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(MODEL, out=tmp / "r.json", extra_attacks=["malt"], save_adversarial=tmp / "adv.safetensors",
                          **KW)
        plain = evaluate(MODEL, out=tmp / "plain.json", **KW)
        x, _ = load_tensors("cifar10", "test", None, 32)
    proc = CliRunner().invoke(main, ["export-external", str(tmp / "r.json"), "--out", str(tmp / "adv.pt")])
    assert proc.exit_code == 0, proc.output
    return tmp, result, x


def _check(tmp, name, *extra):
    return CliRunner().invoke(main, ["check-external", MODEL, str(tmp / name), "--eps", "2/255", *extra])


def test_export_is_robustbench_tensor_and_rescores_to_the_external_figure(exported):
    tmp, result, x = exported
    adv = torch.load(tmp / "adv.pt", weights_only=True)
    assert isinstance(adv, torch.Tensor) and adv.shape == (32, 3, 32, 32) and adv.dtype == torch.float32
    assert 0 <= float(adv.min()) and float(adv.max()) <= 1
    robust = [o is None and e is None for o, e in zip(result.evaluation.per_example["outcome"],
                                                      result.evaluation.extra_attacks["outcome"])]
    assert all(torch.equal(adv[i], x[i]) for i in range(32) if robust[i])          # robust: the clean image
    # the figures, re-scored here: the model's accuracy on the exported images and on the clean ones
    _, y = load_tensors("cifar10", "test", None, 32)
    model = centroid_model()
    with torch.no_grad():
        robust_pct = 100 * int((model(adv).argmax(1) == y).sum()) / 32
        clean_pct = 100 * int((model(x).argmax(1) == y).sum()) / 32
    assert robust_pct < result.evaluation.robust_accuracy          # MALT lowered AutoAttack's figure
    report = check_external(MODEL, tmp / "adv.pt", eps="2/255", device="cpu")
    assert report["robust_accuracy"] == pytest.approx(robust_pct)
    assert result.evaluation.extra_attacks["robust_accuracy"] == pytest.approx(robust_pct)
    assert report["robustbench_acc"] == result.model_info.external == f"{robust_pct:.2f}"
    assert report["max_perturbation"] <= 2 / 255 + 1e-6
    proc = _check(tmp, "adv.pt")
    assert proc.exit_code == 0 and f"robust {robust_pct:.2f}%" in proc.output
    assert f"clean {clean_pct:.2f}%" in proc.output


@pytest.mark.parametrize("name,make,message", [
    ("small.pt", lambda x: x[:, :, :16, :16].clone(), "holds a tensor of shape (32, 3, 16, 16)"),
    ("flat.pt", lambda x: x.flatten(1).clone(), "adversarial images are (N, C, H, W)"),
    ("range.pt", lambda x: x + 1.5, "leaves the image range [0, 1]"),
    ("far.pt", lambda x: (x + 3 / 255).clamp(0, 1), "lie outside the Linf ball of radius 2/255"),
    ("dict.pt", lambda x: {"x_adv": x}, "holds a dict, not a tensor of adversarial images"),
    ("uint8.pt", lambda x: (x * 255).to(torch.uint8), "holds torch.uint8 values"),
    ("text.pt", None, "is not a .pt file holding a tensor"),
    ("missing.pt", "missing", "does not exist"),
])
def test_bad_submissions_are_one_clear_line(exported, name, make, message):
    tmp, _, x = exported
    if make is None:
        (tmp / name).write_text("not a tensor")
    elif callable(make):
        torch.save(make(x), tmp / name)
    proc = _check(tmp, name)
    assert proc.exit_code == 1 and message in proc.output, proc.output
    assert len(proc.output.strip().splitlines()) == 1


def test_export_needs_saved_adversarial_examples(exported):
    tmp, _, _ = exported
    proc = CliRunner().invoke(main, ["export-external", str(tmp / "plain.json"), "--out", str(tmp / "x.pt")])
    assert proc.exit_code == 1 and "records no adversarial examples" in proc.output
    assert len(proc.output.strip().splitlines()) == 1 and not (tmp / "x.pt").exists()


def test_help_has_examples():
    for command in ("export-external", "check-external"):
        proc = CliRunner().invoke(main, [command, "--help"])
        assert proc.exit_code == 0 and "Example:" in proc.output
