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
def test_evaluate_attacks_through_bpda_after_autoattack_and_says_so():
    """``evaluate(..., bpda=[...])`` records as RobustBench records MeanSparse: ``autoattack_acc`` is plain
    AutoAttack's (per example the run without BPDA), APGD through the quantizer then breaks what AutoAttack
    could not, and that lower figure is ``external`` with the BPDA footnote; the indicators, judging the
    attacks through BPDA, are quiet. Broken by entering ``bpda_modules`` around AutoAttack's stages too
    (engine/attack.py's ``run_task``: autoattack_acc would drop), by dropping it from the BPDA stage (nothing
    breaks, no external), and by passing the plain evaluation's outcome to the indicators under BPDA
    (black-box-beats-white-box would read Square's breaks of the plain attacks)."""
    from harness.evaluation import evaluate

    kw = dict(n_examples=16, version="custom", attacks=["apgd-ce", "square"], n_iter=20, workers=1, progress=False)
    plain = evaluate(quantized_model(), **kw)
    through = evaluate(quantized_model(), bpda="Quantize", **kw)
    ev, info = through.evaluation, through.model_info
    assert ev.per_example["outcome"] == plain.evaluation.per_example["outcome"]
    assert (ev.clean_accuracy, ev.robust_accuracy) == (plain.evaluation.clean_accuracy,
                                                       plain.evaluation.robust_accuracy)
    assert info.autoattack_acc == plain.model_info.autoattack_acc and plain.model_info.external is None
    broken = ev.extra_attacks["broken"]["apgd-bpda"]
    assert broken > 0 and ev.extra_attacks["robust_accuracy"] == pytest.approx(
        ev.robust_accuracy - 100 * broken / ev.n_examples)
    assert float(info.external) == pytest.approx(ev.extra_attacks["robust_accuracy"], abs=0.005)
    assert ev.bpda == ["Quantize"] and "The robust accuracy is due to APGD with BPDA through Quantize." in info.footnote
    assert plain.evaluation.diagnostics["verdict"] == "warning" and ev.diagnostics["verdict"] == "ok"
    assert evaluate(quantized_model(), diagnostics=False, **kw).evaluation.diagnostics is None


@pytest.mark.parametrize("args, message", [
    (["--extra-attacks", "apgd-bpda"], "apgd-bpda runs with --bpda MODULES"),
    (["--bpda", "Quantize", "--eps", "4/255,8/255"], "--bpda needs one eps"),
    (["--bpda", "Quantize", "--version", "rand", "--repeats", "2"], "--repeats cannot be combined with --bpda"),
])
def test_bpda_refuses_what_it_cannot_record_in_one_line(args, message):
    """BPDA is an attack beyond AutoAttack: named by --bpda only, one eps, not with repeats. Broken by listing
    apgd-bpda among --extra-attacks' choices (it would run without modules), or by dropping ``bpda`` from the
    checks of extra attacks and repeats."""
    result = CliRunner().invoke(main, ["evaluate", "cifar10-linf-tiny", "--n-examples", "4", *args])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output


def test_evaluate_refuses_an_unknown_bpda_name_before_any_work(monkeypatch):
    """A ``--bpda`` name that matches no module is one line before AutoAttack starts. Broken by leaving the check
    to the BPDA stage (dropping ``find_modules`` from ``_prepare``): AutoAttack's stages would run first."""
    import harness.engine.attack as engine

    monkeypatch.setattr(engine, "run_attack", lambda *a: pytest.fail("an attack ran before the names were checked"))
    result = CliRunner().invoke(main, ["evaluate", "cifar10-linf-tiny", "--n-examples", "4", "--workers", "1",
                                       "--bpda", "Quantise"])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and "'Quantise' matches no module" in lines[0], result.output
