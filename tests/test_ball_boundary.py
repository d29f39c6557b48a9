"""The eps-ball and image-range checks at their boundary, for each norm: just inside passes, just outside fails.

The perturbations are built here with a known norm (every changed pixel moved by the same amount, towards
0.5 so the image range is never left), so the expected verdict is arithmetic on the test's own numbers: an
L2 norm without its square root, an L1 norm measured as Linf or a tolerance of a fraction of a percent
all turn "just outside" into a pass.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from harness.data import load_tensors
from harness.engine.checks import EvaluationCheckError, check_adversarial
from harness.external import check_external
from zoo.errors import ConfigError

MODEL = "harness_helpers:centroid_model"
N = 8
# (threat model, eps text, eps value): RobustBench's standard budgets
BUDGETS = [("Linf", "8/255", 8 / 255), ("L2", "0.5", 0.5), ("L1", "12", 12.0)]
OUTSIDE = 1 + 1e-3          # 0.1 % past eps: far beyond float rounding, far inside any sloppy tolerance


def _images():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_tensors("cifar10", "test", None, N)


def _at_norm(x: torch.Tensor, threat_model: str, radius: float) -> torch.Tensor:
    """``x`` moved towards 0.5 on every pixel at least 0.1 away from it, by the same step, so that the
    perturbation's norm is ``radius`` (computed here in float64: Linf = step, L2 = step*sqrt(k), L1 = step*k)."""
    x64 = x.double()
    mask = ((x64 - 0.5).abs() > 0.1).flatten(1)
    k = mask.sum(1, keepdim=True).double()
    step = {"Linf": radius * torch.ones_like(k), "L2": radius / k.sqrt(), "L1": radius / k}[threat_model]
    assert float(step.max()) < 0.1                      # the move never crosses 0.5, so [0, 1] is kept
    delta = torch.sign(0.5 - x64).flatten(1) * mask * step
    return (x64 + delta.view_as(x64)).float()


def _norms(x, x_adv, threat_model):
    d = (x_adv.double() - x.double()).flatten(1)
    return {"Linf": d.abs().amax(1), "L2": d.pow(2).sum(1).sqrt(), "L1": d.abs().sum(1)}[threat_model]


@pytest.mark.parametrize("threat_model,eps_text,eps", BUDGETS)
def test_engine_check_accepts_the_ball_and_refuses_just_past_it(threat_model, eps_text, eps):
    x, _ = _images()
    inside, outside = _at_norm(x, threat_model, eps), _at_norm(x, threat_model, eps * OUTSIDE)
    # the float32 images really lie where they were put (within float32 rounding of the pixels)
    assert torch.allclose(_norms(x, inside, threat_model), torch.full((N,), eps, dtype=torch.float64), rtol=1e-5)
    assert bool((_norms(x, outside, threat_model) > eps * (1 + 5e-4)).all())
    check_adversarial(x, inside, eps, threat_model, "a test chunk")
    check_adversarial(x, _at_norm(x, threat_model, eps * (1 - 1e-3)), eps, threat_model, "a test chunk")
    with pytest.raises(EvaluationCheckError, match=f"outside the {threat_model} ball"):
        check_adversarial(x, outside, eps, threat_model, "a test chunk")
    one_bad = inside.clone()
    one_bad[3] = outside[3]
    with pytest.raises(EvaluationCheckError, match="^1 adversarial example"):
        check_adversarial(x, one_bad, eps, threat_model, "a test chunk")


@pytest.mark.parametrize("threat_model", ["Linf", "L2", "L1"])
def test_engine_check_refuses_a_pixel_just_outside_the_image_range(threat_model):
    x, _ = _images()
    for value in (-1e-6, 1 + 1e-6):
        bad = x.clone()
        bad[0, 0, 0, 0] = value
        with pytest.raises(EvaluationCheckError, match=r"leave the image range \[0,1\]"):
            check_adversarial(x, bad, 100.0, threat_model, "a test chunk")
    edge = x.clone()
    edge[0, 0, 0, 0], edge[0, 0, 0, 1] = 0.0, 1.0                # the range itself is allowed
    check_adversarial(edge, edge, 1.0, threat_model, "a test chunk")


@pytest.mark.parametrize("threat_model,eps_text,eps", BUDGETS)
def test_check_external_accepts_the_ball_and_refuses_just_past_it(tmp_path, threat_model, eps_text, eps):
    x, y = _images()
    torch.save(_at_norm(x, threat_model, eps), tmp_path / "inside.pt")
    torch.save(_at_norm(x, threat_model, eps * OUTSIDE), tmp_path / "outside.pt")
    report = check_external(MODEL, tmp_path / "inside.pt", threat_model=threat_model, eps=eps_text, device="cpu")
    assert report["threat_model"] == threat_model and report["n_examples"] == N
    assert report["max_perturbation"] == pytest.approx(eps, rel=1e-5)
    with pytest.raises(ConfigError, match=f"outside the {threat_model} ball of radius {eps_text}"):
        check_external(MODEL, tmp_path / "outside.pt", threat_model=threat_model, eps=eps_text, device="cpu")
    above = _at_norm(x, threat_model, eps).clone()
    above[0, 0, 0, 0] = 1 + 1e-6
    torch.save(above, tmp_path / "range.pt")
    with pytest.raises(ConfigError, match=r"leaves the image range \[0, 1\]"):
        check_external(MODEL, tmp_path / "range.pt", threat_model=threat_model, eps=eps_text, device="cpu")
