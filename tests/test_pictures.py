"""Pictures: input gradients side by side, the examples an attack broke, and the file they come from."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from harness.cli import main
from harness.evaluation import evaluate

QUICK = dict(n_examples=16, batch_size=8, version="custom", attacks=["apgd-ce"], n_iter=5, workers=1, progress=False)


def _picture(path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert image.std() > 10, "the picture is blank"
    return image


def test_gradients_of_robust_and_untrained_models(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["gradients", "cifar10-linf-tiny", "untrained:wrn-10-1-swish", "--n-images", "3",
                               "--out", str(tmp_path / "g.png")])
    assert res.exit_code == 0, res.output
    image = _picture(tmp_path / "g.png")
    assert image.shape[1] > image.shape[0] * 0.8  # three columns of 3 rows
    res = runner.invoke(main, ["gradients", "no-such-model", "--out", str(tmp_path / "x.png")])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "Error:" in res.output
    assert not (tmp_path / "x.png").exists()


def test_robust_gradients_look_like_the_image_and_untrained_ones_do_not():
    """The robust model's input gradient correlates with the image's edges; the untrained one's hardly."""
    import torch

    from harness.data import load_tensors
    from harness.models import resolve_model
    from harness.pictures import input_gradients

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, 16)

    def edge_correlation(spec: str) -> float:
        g = input_gradients(resolve_model(spec).model.eval(), x, y).abs().sum(1)
        edges = (x[..., 1:, 1:] - x[..., :-1, 1:]).abs().sum(1) + (x[..., 1:, 1:] - x[..., 1:, :-1]).abs().sum(1)
        g = g[..., 1:, 1:]
        return float(torch.stack([torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1]
                                  for a, b in zip(g, edges)]).mean())

    robust, untrained = edge_correlation("cifar10-linf-tiny"), edge_correlation("untrained:wrn-10-1-swish")
    assert robust > 0.1 and robust > untrained + 0.1, (robust, untrained)  # measured: 0.26 against 0.03


def test_show_draws_the_broken_examples_and_a_resumed_run_writes_the_same_file(tmp_path):
    out, adv = tmp_path / "r.json", tmp_path / "r.adv.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = evaluate("cifar10-linf-tiny", out=out, save_adversarial=adv, **QUICK)
        saved = adv.read_bytes()
        adv.unlink()
        again = evaluate("cifar10-linf-tiny", out=out, save_adversarial=adv, **QUICK)  # every task resumed
    assert adv.read_bytes() == saved and again.evaluation.adversarial == first.evaluation.adversarial
    assert first.evaluation.adversarial["count"] == sum(o not in (None, "clean") for o in
                                                        first.evaluation.per_example["outcome"]) > 0
    res = CliRunner().invoke(main, ["show", str(out), "--out", str(tmp_path / "broken.png")])
    assert res.exit_code == 0, res.output
    _picture(tmp_path / "broken.png")


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "records no adversarial examples"),
    (lambda p: p.with_name("x.safetensors").write_bytes(b"not safetensors"), "not a safetensors file"),
])
def test_show_refuses_in_one_line(tmp_path, make, message):
    out = tmp_path / "r.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate("harness_helpers:centroid_model", out=out, **QUICK)
    make(out)
    extra = ["--adversarial", str(out.with_name("x.safetensors"))] if "safetensors" in message else []
    res = CliRunner().invoke(main, ["show", str(out), *extra, "--out", str(tmp_path / "b.png")])
    assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1
    assert not (tmp_path / "b.png").exists()
