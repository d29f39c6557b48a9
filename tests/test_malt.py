"""MALT (harness.malt) against its reference's behaviour: the targets chosen, and success at least APGD-T's."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
from pyautoattack.autopgd_base import APGDAttack_targeted

import zoo
from harness.data import load_tensors
from harness.malt import MaltSettings, boundary_scores, malt_attack, target_classes
from harness_helpers import centroid_model


def _correct(model, n):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, n)
    with torch.no_grad():
        ok = model(x).argmax(1) == y
    return x[ok], y[ok]


@pytest.fixture(scope="module")
def tiny():
    return zoo.load_model("cifar10-linf-tiny")


# --- the reference's targeting, transcribed from github.com/odeliamel/MALT targeting.py (commit 2e7d57b) with
# .cuda() dropped; the test's yardstick, not the harness's code.
def _ref_matrix_around_image(images, targets, inxs, model, num_classes, batch_size=50):
    images_repeated = torch.repeat_interleave(images.detach().clone().cpu(), inxs.shape[1], dim=0).detach()
    eye = torch.zeros(inxs.numel(), num_classes).scatter_(1, inxs.reshape(-1, 1), 1)
    targets_repeated = torch.repeat_interleave(targets, inxs.shape[1], dim=0).detach()
    eye = eye.scatter(dim=1, index=targets_repeated.unsqueeze(1), value=-1).float()
    grads, start = torch.tensor([]), 0
    while start < images_repeated.shape[0]:
        end = min(start + batch_size, images_repeated.shape[0])
        with torch.enable_grad():
            inputs = nn.Parameter(images_repeated[start:end])
            model(inputs).backward(eye[start:end])
            grads = torch.cat((grads, inputs.grad.detach().clone()), dim=0)
        start = end
    return grads.reshape(images.shape[0], inxs.shape[-1], -1)


def _ref_k_best_targets(model, data, target, ord, topk, testk):
    with torch.no_grad():
        srcoutput = model(data)
    _, srcclass = torch.max(srcoutput, dim=1)
    n_srcoutput = srcoutput.scatter(dim=1, index=target.unsqueeze(1), value=-float("inf"))
    testk = min(testk, srcoutput.shape[-1] - 1)
    _, inxs = torch.topk(n_srcoutput, k=testk, dim=1)
    topk = min(topk, srcoutput.shape[-1] - 1)
    linmatrix = _ref_matrix_around_image(data, target, inxs, model, srcoutput.shape[-1])
    eps_matrix = torch.zeros(data.shape[0], inxs.shape[-1])
    src = srcoutput[range(srcoutput.shape[0]), srcclass.view(-1)].unsqueeze(1)
    diffs = torch.repeat_interleave(src, inxs.shape[-1], dim=1) - srcoutput[torch.arange(srcoutput.shape[0]).unsqueeze(-1), inxs]
    norms = torch.norm(linmatrix, p=1 if ord == np.inf else 2, dim=2)
    mask = norms != 0
    eps_matrix[mask] = diffs[mask] / norms[mask]
    all_classes = np.inf * torch.ones(data.shape[0], srcoutput.shape[-1])
    all_classes[torch.arange(data.shape[0]).unsqueeze(-1), inxs] = eps_matrix
    return all_classes, all_classes.topk(dim=1, largest=False, k=topk)[1]


@pytest.mark.parametrize("threat_model,ord", [("Linf", np.inf), ("L2", 2)])
def test_targets_are_those_of_the_reference_code(tiny, threat_model, ord):
    x, y = _correct(tiny, 16)
    ref_scores, ref_targets = _ref_k_best_targets(tiny, x, y, ord, topk=9, testk=100)
    scores = boundary_scores(tiny, x, y, threat_model)
    torch.testing.assert_close(scores, ref_scores, rtol=1e-4, atol=1e-7)
    assert torch.equal(target_classes(tiny, x, y, threat_model), ref_targets)
    # fewer candidates and targets: the top candidates by logit, then the closest estimated boundaries
    _, ref5 = _ref_k_best_targets(tiny, x, y, ord, topk=3, testk=5)
    assert torch.equal(target_classes(tiny, x, y, threat_model, n_targets=3, n_candidates=5), ref5)
    # not simply the classes with the highest logits (what APGD-T attacks)
    by_logit = tiny(x).detach().scatter(1, y[:, None], -float("inf")).topk(9, dim=1)[1]
    assert not torch.equal(ref_targets, by_logit)


def test_on_a_linear_model_the_targets_are_the_exact_closest_boundaries():
    model = centroid_model()
    x, y = _correct(model, 200)
    w = model[1].weight.detach()
    with torch.no_grad():
        z = model(x)
    exact = torch.full_like(z, float("inf"))
    for c in range(10):   # Linf distance to the boundary between y and c: (z_y - z_c) / ||w_y - w_c||_1
        other = y != c
        exact[other, c] = (z[other].gather(1, y[other, None])[:, 0] - z[other, c]) / (w[y[other]] - w[c]).abs().sum(1)
    targets = target_classes(model, x, y)
    assert torch.equal(targets, exact.argsort(dim=1)[:, :9])


def test_malt_breaks_at_least_what_apgd_t_breaks(tiny):
    """AutoAttack's APGD-T (top-9 logits as targets) and MALT, same iterations, same examples."""
    x, y = _correct(tiny, 40)
    x, y = x[:12], y[:12]
    apgd_t = APGDAttack_targeted(tiny, n_iter=6, eps=8 / 255, seed=0, device="cpu")
    with torch.no_grad():
        broken_t = tiny(apgd_t.perturb(x, y)).argmax(1) != y
    adv, hit = malt_attack(tiny, x, y, 8 / 255, "Linf", MaltSettings(n_iter=6), seed=0)
    with torch.no_grad():
        broken_m = tiny(adv).argmax(1) != y
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert broken_m.sum() >= broken_t.sum() > 0
    assert torch.equal(hit >= 0, broken_m)            # each break is credited to the target that made it
    # reproducible: same seed, same adversarial examples
    again, _ = malt_attack(tiny, x, y, 8 / 255, "Linf", MaltSettings(n_iter=6), seed=0)
    assert torch.equal(adv, again)
