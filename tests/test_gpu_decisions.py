"""CUDA decisions that are pure functions, checked on CPU: native bf16, device-keyed state, verify's numerics."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.evaluation import evaluate
from harness.engine.state import StateDir
from training.precision import cuda_native_bf16
from zoo.errors import ConfigError


@pytest.mark.parametrize("capability, native", [((6, 0), False), ((7, 0), False), ((7, 5), False), ((8, 0), True),
                                                ((8, 6), True), ((8, 9), True), ((9, 0), True), ((10, 0), True)])
def test_native_bf16_is_ampere_and_newer(capability, native):
    """A P100/V100/T4 emulates bf16 (torch.cuda.is_bf16_supported() says yes there): the run falls back to fp32."""
    assert cuda_native_bf16(capability) is native


def test_a_state_dir_is_refused_on_another_kind_of_device(tmp_path):
    config = {"seed": 0, "n_examples": 8, "device_kind": "cpu"}
    StateDir(tmp_path / "s", config, "now", range(8))
    with pytest.raises(ConfigError) as info:
        StateDir(tmp_path / "s", {**config, "device_kind": "cuda (NVIDIA H200)"}, "now", range(8))
    assert "was started on cpu and this run is on cuda (NVIDIA H200)" in str(info.value)
    StateDir(tmp_path / "s", config, "now", range(8))  # the same kind resumes


def test_an_old_state_dir_is_refused_with_its_version(tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text('{"format": "score-harness-state/2"}')
    with pytest.raises(ConfigError, match=r"another version of the harness \(score-harness-state/2, this one writes "
                                          r"score-harness-state/4\)"):
        StateDir(tmp_path / "old", {"seed": 0}, "now", range(8))


def test_verify_re_evaluates_with_the_original_numerics(tmp_path):
    out = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = evaluate("cifar10-linf-tiny", n_examples=8, batch_size=8, version="custom", attacks=["apgd-ce"],
                         n_iter=2, workers=1, channels_last=False, tf32=False, out=out, progress=False)
    res = CliRunner().invoke(main, ["verify", str(out), "--n-examples", "8", "--json", "--workers", "1"])
    assert res.exit_code == 0, res.output
    import json

    report = json.loads(res.stdout)
    assert report["numerics"] == first.evaluation.numerics
    assert report["numerics"]["channels_last"] is False and report["numerics"]["cudnn_tf32"] is False
    assert report["per_example_agreement"] == 1.0
