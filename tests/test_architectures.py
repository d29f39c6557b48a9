import math

import pytest
import torch

import zoo
from zoo.errors import UnknownNameError


def _dm_wide_resnet():
    """robustbench's DMWideResNet module (the parity tests' reference; they need the robustbench extra)."""
    from robustbench.model_zoo.architectures import dm_wide_resnet

    return dm_wide_resnet


def _robustbench_wrn(depth, width, activation_fn):
    torch.manual_seed(0)
    reference = _dm_wide_resnet().DMWideResNet(num_classes=10, depth=depth, width=width, activation_fn=activation_fn)
    # Non-trivial BatchNorm statistics, so eval-mode logits exercise every buffer.
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return reference.eval()


@pytest.mark.robustbench
@pytest.mark.parametrize("depth,width", [(28, 10), (16, 2)])
def test_wideresnet_matches_robustbench_dmwideresnet(depth, width):
    reference = _robustbench_wrn(depth, width, _dm_wide_resnet().Swish)
    model = zoo.create_model(f"wrn-{depth}-{width}-swish", dataset="cifar10").eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    assert list(model.state_dict()) == list(reference.state_dict())
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():   # RobustBench's Swish is its own autograd x * sigmoid(x); the zoo's is nn.SiLU
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.robustbench
@pytest.mark.parametrize("arch,activation_fn", [("wrn-16-2-swish", torch.nn.SiLU), ("wrn-10-1", torch.nn.ReLU)])
def test_wideresnet_logits_are_bit_identical_to_dmwideresnet_with_the_same_activation(arch, activation_fn):
    reference = _robustbench_wrn(int(arch.split("-")[1]), int(arch.split("-")[2]), activation_fn)
    model = zoo.create_model(arch).eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=0)


@pytest.mark.robustbench
def test_relu_wideresnet_and_cifar100_normalisation_match_robustbench():
    dm = _dm_wide_resnet()
    reference = dm.DMWideResNet(num_classes=100, depth=10, width=1, mean=dm.CIFAR100_MEAN, std=dm.CIFAR100_STD).eval()
    model = zoo.create_model("wrn-10-1", dataset="cifar100").eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.robustbench
def test_preact_resnet18_matches_robustbench_preactresnet():
    from robustbench.model_zoo.architectures.resnet import PreActBlock, PreActResNet as RBPreActResNet

    # RobustBench's pre-activation variant with the final BatchNorm and the
    # shortcut taken after the first activation (He et al. 2016).
    reference = RBPreActResNet(PreActBlock, [2, 2, 2, 2], bn_before_fc=True, out_shortcut=True).eval()
    model = zoo.create_model("preact-resnet-18").eval()
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(model.normalize(x)), rtol=0, atol=0)


def test_named_architectures_build_with_num_classes():
    for name in ["wrn-10-1-swish", "wrn-16-4-swish", "preact-resnet-18"]:
        model = zoo.create_model(name, num_classes=7)
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 7)
    assert "wrn-28-10-swish" in zoo.list_architectures()


@pytest.mark.parametrize("name", ["resnet-50", "wrn-27-10", "wrn-28-0-swish"])
def test_unknown_or_invalid_architecture(name):
    with pytest.raises(UnknownNameError):
        zoo.create_model(name)


def test_unknown_architecture_suggests_close_names():
    with pytest.raises(UnknownNameError, match="wrn-28-10-swish"):
        zoo.create_model("wrn-28-10-swsh")


def test_wideresnet_initialisation_is_the_official_one():
    """Conv weights N(0, sqrt(2 / (k*k*out))), BatchNorm weight 1 and bias 0, linear bias 0, checked as a
    sample: each conv's variance by a chi-square test, its mean, and all standardised weights against N(0, 1)
    (He's fan_in variant and torch's default uniform init both fail)."""
    from scipy.stats import chi2, kstest

    torch.manual_seed(0)
    model = zoo.create_model("wrn-16-2-swish")
    standardised = []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            sigma = math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))
            w = m.weight.detach().double().flatten()
            n = len(w)
            q = chi2.cdf((n - 1) * w.var().item() / sigma ** 2, n - 1)
            assert 1e-4 < q < 1 - 1e-4, (name, w.std().item(), sigma)
            assert abs(w.mean().item()) < 4 * sigma / math.sqrt(n), name
            standardised.append(w / sigma)
        elif isinstance(m, torch.nn.BatchNorm2d):
            assert torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias))
        elif isinstance(m, torch.nn.Linear):
            assert torch.equal(m.bias, torch.zeros_like(m.bias)), name
    assert len(standardised) == 16  # the init conv, 3 groups x 2 blocks x 2 convs, 3 shortcut convs
    assert kstest(torch.cat(standardised).numpy(), "norm").pvalue > 1e-4


@pytest.mark.parametrize("arch,dataset", __import__("architecture_reference").ARCHITECTURES)
def test_architecture_gives_robustbenchs_committed_logits(arch, dataset):
    """Core-suite parity (no robustbench needed): the logits RobustBench's own definitions give under fixed weights
    and inputs, committed in tests/data/architecture_logits.pt (made by tests/data/make_architecture_logits.py)."""
    from architecture_reference import LOGITS_FILE, reference_inputs, reference_state

    expected = torch.load(LOGITS_FILE, weights_only=True)[f"{arch}/{dataset}"]
    model = zoo.create_model(arch, dataset=dataset).eval()
    model.load_state_dict(reference_state(model.state_dict()), strict=True)
    with torch.no_grad():
        logits = model(reference_inputs())
    assert float((expected - expected.mean(0)).abs().max()) > 0.1        # the logits depend on the image
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
