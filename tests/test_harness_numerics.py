"""Devices and numerics: channels_last keeps per-example results, --exact, flags recorded and restored."""

from __future__ import annotations

import warnings

import pytest
import torch
from click.testing import CliRunner

import zoo
from harness.cli import main
from harness.evaluation import evaluate

KW = dict(n_examples=16, batch_size=16, version="custom", attacks=["apgd-ce", "apgd-t"], n_iter=5, seed=0,
          progress=False, workers=1)


def _evaluate(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(model, **{**KW, **kw})


# The bundled WRN-10-1 (a convolutional model) on bundled images; Linf with every attack of the standard version.
@pytest.mark.parametrize("threat_model, kw", [("Linf", dict(n_iter=3, attacks=["apgd-ce", "apgd-t",
                                                                                                 "fab-t", "square"])),
                                              ("L2", {})])
def test_channels_last_default_gives_the_exact_per_example_result_on_cpu(threat_model, kw):
    model = zoo.load_model("cifar10-linf-tiny")
    flags = (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision,
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    fast = _evaluate(model, threat_model=threat_model, device="cpu", **kw).evaluation
    exact = _evaluate(model, threat_model=threat_model, device="cpu", exact=True, **kw).evaluation
    assert fast.numerics == {"exact": False, "channels_last": True, "cudnn_tf32": True, "matmul_tf32": False,
                             "cudnn_benchmark": False, "cudnn_deterministic": False}
    assert exact.numerics == {"exact": True, "channels_last": False, "cudnn_tf32": False, "matmul_tf32": False,
                              "cudnn_benchmark": False, "cudnn_deterministic": True}
    assert fast.per_example == exact.per_example and fast.robust_accuracy_after == exact.robust_accuracy_after
    assert 0 < fast.robust_accuracy < fast.clean_accuracy
    # the caller's model and process are left as they were
    assert next(model.parameters()).is_contiguous() and not model.training
    assert flags == (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision,
                     torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("exact", [False, True])
def test_on_cuda_each_setting_equals_bare_autoattack_under_the_same_flags(exact):
    """The default (TF32 convolutions, channels_last) and --exact each equal bare pyautoattack under their flags."""
    from harness_helpers import bare_autoattack

    from harness.data import load_tensors
    from harness.engine.numerics import applied, choose_numerics

    model = zoo.load_model("cifar10-linf-tiny")
    result = _evaluate(model, device="cuda", exact=exact).evaluation
    bare_model = zoo.load_model("cifar10-linf-tiny", device="cuda")
    numerics = choose_numerics(bare_model, exact=exact)
    if numerics.channels_last:
        bare_model = bare_model.to(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, KW["n_examples"])
    with applied(numerics):
        _, y_adv, _ = bare_autoattack(bare_model, x.cuda(), y.cuda(), version="custom", attacks=KW["attacks"],
                                      n_iter=KW["n_iter"], batch_size=KW["batch_size"], device="cuda")
    assert [o is None for o in result.per_example["outcome"]] == (y_adv.cpu() == y).tolist()


def test_flags_are_set_through_the_new_precision_api_even_after_the_process_used_it():
    """Reading the legacy allow_tf32 after the per-backend fp32_precision API was used raises (torch >= 2.9)."""
    from harness.engine.numerics import applied, choose_numerics

    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    saved = (matmul.fp32_precision, conv.fp32_precision)
    matmul.fp32_precision = "tf32"
    try:
        net = zoo.create_model("wrn-10-1-swish")
        with applied(choose_numerics(net, exact=True)):
            assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
            assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        with applied(choose_numerics(net)):
            assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "tf32")
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", saved[1])
    finally:
        matmul.fp32_precision, conv.fp32_precision = saved


def test_linear_models_stay_in_their_layout():
    result = _evaluate("harness_helpers:centroid_model", n_examples=8, batch_size=8, attacks=["apgd-ce"], n_iter=2)
    assert result.evaluation.numerics["channels_last"] is False


def _cli(*args):
    res = CliRunner().invoke(main, ["evaluate", "harness_helpers:centroid_model", "--n-examples", "8", *args])
    lines = res.stderr.strip().splitlines()
    return res.exit_code, lines


@pytest.mark.parametrize("option", ["--channels-last", "--tf32", "--cudnn-benchmark"])
def test_exact_refuses_the_options_it_turns_off(option):
    code, lines = _cli("--exact", option)
    assert code == 1 and len(lines) == 1 and "--exact turns every layout and precision change off" in lines[0]
    assert option in lines[0]


@pytest.mark.parametrize("device, message", [
    ("tpu", "unknown device 'tpu'; use cpu, cuda or cuda:N"),
    ("meta", "not supported"),
    pytest.param("cuda", "CUDA is not available", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="GPU")),
    pytest.param("cuda:7", "cuda:7", marks=pytest.mark.skipif(torch.cuda.device_count() > 7, reason="8 GPUs")),
])
def test_bad_devices_are_one_line(device, message):
    code, lines = _cli("--device", device)
    assert code == 1 and len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
