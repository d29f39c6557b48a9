"""BPDA: exact forward, substituted backward, only inside the context, and it breaks masked models."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner
from pyautoattack.autopgd_base import APGDAttack

from harness.bpda import bpda_modules
from harness.cli import main
from zoo.errors import ConfigError

from masked_models import MeanSparse, Quantize, images, mean_sparse_model, quantized_model


def _input_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    return g


def _quantizer_net(layer: nn.Module | None = None) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 3, 1), layer or Quantize(8), nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).eval()


def test_straight_through_keeps_the_forward_exact_and_passes_the_gradient():
    """Inside the context the output of a MeanSparse-style threshold net is bit for bit the model's, and the
    gradient is that of the net without the threshold. Broken by computing the substitute as
    ``x + (out - x).detach()`` (float rounding moves the forward value where the threshold outputs its mean)
    and by returning ``output`` unchanged from the hook (the masked gradient)."""
    net = _quantizer_net(MeanSparse(torch.full((3,), 0.1), torch.full((3,), 0.3)))
    x = torch.rand(4, 3, 4, 4)
    exact = net(x)
    with bpda_modules(net, ["MeanSparse"]) as paths:
        assert paths == ["1"]
        assert torch.equal(net(x), exact)
        grad = _input_grad(net, x)
    without = nn.Sequential(net[0], net[2], net[3])
    torch.testing.assert_close(grad, _input_grad(without, x))
    assert not torch.allclose(_input_grad(net, x), grad)


def test_an_approximation_gives_its_own_gradient():
    """``{"1": approx}``: the forward stays exact, the gradient is that of ``approx(module)``. Broken by
    ignoring the approximation (the identity's gradient instead)."""
    net, x = _quantizer_net(), torch.rand(4, 3, 4, 4)
    exact = net(x)
    with bpda_modules(net, {"1": lambda module: lambda t: 3 * torch.sin(t)}):
        assert torch.equal(net(x), exact)
        grad = _input_grad(net, x)
    z = net[0](x.clone().requires_grad_(True))
    smooth = nn.Sequential(net[0], _Lambda(lambda t: 3 * torch.sin(t)), net[2], net[3])
    torch.testing.assert_close(grad, _input_grad(smooth, x))
    assert z.shape == (4, 3, 4, 4)


class _Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def test_hooks_are_removed_on_exit_and_on_error():
    """After the context, also one left by an exception, the model is as before. Broken by removing the hooks
    after the ``yield`` without ``finally``."""
    net, x = _quantizer_net(), torch.rand(2, 3, 4, 4)
    with pytest.raises(RuntimeError, match="inside"):
        with bpda_modules(net, ["1"]):
            raise RuntimeError("inside")
    with bpda_modules(net, ["Quantize"]):
        pass
    assert not net[1]._forward_hooks
    assert torch.count_nonzero(_input_grad(net, x)) == 0


def test_a_name_that_matches_nothing_is_one_line_listing_what_exists():
    """Broken by skipping names that match nothing (the evaluation would silently run without BPDA)."""
    net = _quantizer_net()
    with pytest.raises(ConfigError) as e:
        with bpda_modules(net, ["Quantise"]):
            pass
    message = str(e.value)
    assert "\n" not in message and "'Quantise' matches no module" in message
    assert "Did you mean: Quantize" in message and "Conv2d" in message and "module paths: 0, 1, 2, 3" in message


def test_a_module_that_changes_shape_is_refused_in_one_line():
    """The identity needs equal shapes. Broken by dropping the shape check (autograd's own error instead)."""
    net, x = _quantizer_net(), torch.rand(2, 3, 4, 4)
    with bpda_modules(net, ["2"]), pytest.raises(ConfigError, match=r"module '2' \(Flatten\): it returns shape "
                                                                    r"\(2, 48\) but it takes \(2, 3, 4, 4\)"):
        _input_grad(net, x)


def test_the_cli_refuses_an_unknown_bpda_name_in_one_line(monkeypatch):
    """``diagnose --bpda`` checks names before any attack. Broken by leaving the check to the first attack's
    ``bpda_modules`` (dropping ``find_modules`` from ``run_indicators``)."""
    import harness.diagnostics as dg

    monkeypatch.setattr(dg, "_apgd", lambda *a: pytest.fail("an attack ran before the names were checked"))
    result = CliRunner().invoke(main, ["diagnose", "cifar10-linf-tiny", "--bpda", "Quantize"])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "'Quantize' matches no module" in lines[0] and "WideResNet" not in lines[0]


def _robust_accuracy(model: nn.Module, x, y, bpda=None) -> float:
    attack = APGDAttack(model, n_iter=20, norm="Linf", eps=8 / 255, seed=0, loss="ce", device="cpu")
    with bpda_modules(model, bpda or []):
        adv = attack.perturb(x, y)
    with torch.no_grad():
        return float((model(adv).argmax(1) == y).float().mean())


@pytest.mark.parametrize("build, module, gap", [(quantized_model, "Quantize", 0.25),
                                                (mean_sparse_model, "MeanSparse", 0.1)])
def test_bpda_lowers_the_robust_accuracy_of_non_differentiable_models(build, module, gap):
    """pyautoattack's APGD-CE (20 iterations, 32 images) with BPDA through the non-differentiable layer breaks
    far more. Broken by a hook that does nothing while gradients are on (``if torch.is_grad_enabled(): return``)."""
    model = build()
    x, y = images(32)
    with torch.random.fork_rng():
        plain = _robust_accuracy(model, x, y)
        through = _robust_accuracy(model, x, y, [module])
    assert through <= plain - gap, (plain, through)


@pytest.mark.filterwarnings("ignore::harness.data.BundledSubsetWarning")
def test_evaluate_attacks_through_bpda_and_says_so():
    """``evaluate(..., bpda=[...])``: APGD-CE through the quantizer breaks what it could not, the clean accuracy
    is the exact model's, the footnote names BPDA and the indicators, run under BPDA, are quiet. Broken by
    entering ``bpda_modules`` around the clean pass only (engine/attack.py's ``run_task``)."""
    from harness.evaluation import evaluate

    kw = dict(n_examples=8, version="custom", attacks=["apgd-ce"], n_iter=5, workers=1, progress=False)
    plain = evaluate(quantized_model(), **kw)
    through = evaluate(quantized_model(), bpda="Quantize", **kw)
    ev = through.evaluation
    assert ev.clean_accuracy == plain.evaluation.clean_accuracy > ev.robust_accuracy
    assert ev.robust_accuracy < plain.evaluation.robust_accuracy == plain.evaluation.clean_accuracy
    assert ev.bpda == ["Quantize"] and "robust accuracy is due to APGD with BPDA through Quantize" in \
        through.model_info.footnote
    assert plain.evaluation.diagnostics["verdict"] == "warning" and ev.diagnostics["verdict"] == "ok"
    assert evaluate(quantized_model(), diagnostics=False, **kw).evaluation.diagnostics is None


@pytest.mark.filterwarnings("ignore::harness.data.BundledSubsetWarning")
def test_evaluate_refuses_an_unknown_bpda_name_before_any_work(monkeypatch):
    """Broken by leaving the check to the first attack chunk (the clean pass would run first)."""
    import harness.evaluation
    from harness.evaluation import evaluate

    monkeypatch.setattr(harness.evaluation, "execute", lambda *a: pytest.fail("the evaluation started"))

    with pytest.raises(ConfigError, match="'Quantise' matches no module"):
        evaluate(quantized_model(), n_examples=4, bpda=["Quantise"], progress=False,
                 workers=1, state_dir=None)
