"""Every threat model and dataset through the real AutoAttack, on tiny inputs."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import scipy.io
import torch

from harness.evaluation import evaluate
from harness_helpers import centroid_model

QUICK = dict(n_examples=16, batch_size=16, version="custom", attacks=["apgd-ce"], n_iter=3, progress=False)


@pytest.mark.parametrize("threat_model, eps, eps_text", [("Linf", None, "8/255"), ("L2", None, "0.5"),
                                                         ("L1", None, "12"), ("L2", "0.25", "0.25")])
def test_threat_models_run_and_never_raise_accuracy(threat_model, eps, eps_text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate(centroid_model(), "cifar10", threat_model, eps, **QUICK)
    ev = result.evaluation
    assert (ev.threat_model, ev.eps_text) == (threat_model, eps_text)
    assert 0 < ev.clean_accuracy and ev.robust_accuracy <= ev.clean_accuracy
    assert result.model_info.eps == eps_text and len(ev.per_example["outcome"]) == 16


def _write_cifar100(folder, x, y):
    folder.mkdir()
    with open(folder / "test", "wb") as f:
        pickle.dump({b"data": x.transpose(0, 3, 1, 2).reshape(len(x), -1), b"fine_labels": y.tolist()}, f)


@pytest.mark.parametrize("dataset, classes", [("cifar100", 100), ("svhn", 10)])
def test_other_datasets_from_official_files(tmp_path, dataset, classes):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(16, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, classes, size=16)
    if dataset == "cifar100":
        _write_cifar100(tmp_path / "cifar-100-python", x, y)
    else:
        scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": np.where(y == 0, 10, y)[:, None]})
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3072, classes)).eval()
    result = evaluate(model, dataset, "Linf", data_dir=tmp_path, **QUICK)
    expected = (model(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255).argmax(1).numpy() == y).mean() * 100
    assert result.evaluation.dataset == dataset and result.model_info.dataset == dataset
    assert result.clean_acc == pytest.approx(expected)
    assert result.evaluation.data["leaderboard_eligible"] is False  # a prefix (n_examples) is never eligible
