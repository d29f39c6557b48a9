"""Parity with the official SCORE code (github.com/P2333/SCORE), one optimisation step at a time.

Each reference below is the official routine transcribed from its source
(gowal21uncovering/utils/trades.py, core/utils/mart.py, core/attacks/pgd.py,
without_DDPM/train_cifar.py), with ``.cuda()`` dropped and its random draws
taken from an explicit generator in the same order. Training's step must give
the same loss, adversarial examples, gradients and BatchNorm statistics.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

import zoo
from training.config import make_config
from training.objectives import adversarial_step

EPS, ALPHA, STEPS = 8 / 255, 2 / 255, 3
K = 10


# ----------------------------------------------------------------- official semantics, transcribed

def kl_div_18(log_input, target):
    """nn.KLDivLoss(reduction='none') as torch 1.8 computed it (0 where target is 0)."""
    return torch.where(target > 0, target * (target.log() - log_input), torch.zeros_like(target))


def _sqrt(d):
    """The one documented deviation (training/distances.py): roots of max(d, 1e-12), not NaN below 0."""
    return d.clamp_min(1e-12).sqrt()


def distance_func(output, target, divergence):
    M = (output + target) / 2
    if divergence == "JSsqrt":
        return _sqrt((0.5 * (kl_div_18(M.log(), output) + kl_div_18(M.log(), target))).sum(dim=-1))
    if divergence == "JS":
        return (0.5 * (kl_div_18(M.log(), output) + kl_div_18(M.log(), target))).sum(dim=-1)
    if divergence == "LSE":
        return torch.sum((output - target) ** 2, dim=-1)
    if divergence == "L1square":
        return (output - target).abs().sum(dim=-1).square()
    if divergence == "KL":
        return kl_div_18(output.log(), target).sum(dim=-1)
    if divergence == "KLsqrt":
        return _sqrt(kl_div_18(output.log(), target).sum(dim=-1))
    if divergence == "RKLsqrt":
        return _sqrt(kl_div_18(target.log(), output).sum(dim=-1))
    return torch.norm(output - target, dim=-1, p=float(divergence))


def track_bn_stats(model, track):
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = track


def smooth_ce(x, target, smoothing):
    logprobs = F.log_softmax(x, dim=-1)
    nll = -logprobs.gather(dim=-1, index=target.unsqueeze(1)).squeeze(1)
    return ((1.0 - smoothing) * nll + smoothing * -logprobs.mean(dim=-1)).mean()


def ref_train_wa(model, x, y, g, attack, lse, beta, ls=0.0, clip_value=0.0, soft_y=None):
    """trades_loss (lse=False) / trades_loss_LSE (lse=True); soft_y: CutMix labels."""
    model.train()
    track_bn_stats(model, False)
    batch_size = len(x)
    x_adv = x.detach() + torch.empty(x.shape).uniform_(-EPS, EPS, generator=g).detach()
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
    p_natural = soft_y if soft_y is not None else F.softmax(model(x), dim=1).detach()

    def attack_loss(out):
        if lse:
            return torch.sum((F.softmax(out, dim=1) - p_natural) ** 2)
        return kl_div_18(F.log_softmax(out, dim=1), p_natural).sum() / len(out)  # KLDivLoss(batchmean)

    if attack == "linf-pgd":
        for _ in range(STEPS):
            x_adv.requires_grad_()
            with torch.enable_grad():
                loss = attack_loss(model(x_adv))
            grad = torch.autograd.grad(loss, [x_adv])[0]
            x_adv = x_adv.detach() + ALPHA * torch.sign(grad.detach())
            x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS)
            x_adv = torch.clamp(x_adv, 0.0, 1.0)
    else:
        eps = 0.5
        delta = (0.001 * torch.randn(x.shape, generator=g)).detach().requires_grad_(True)
        optimizer_delta = optim.SGD([delta], lr=eps / STEPS * 2)
        for _ in range(STEPS):
            optimizer_delta.zero_grad()
            with torch.enable_grad():
                loss = -attack_loss(model(x + delta))
            loss.backward()
            grad_norms = delta.grad.view(batch_size, -1).norm(p=2, dim=1)
            delta.grad.div_(grad_norms.view(-1, 1, 1, 1))
            if (grad_norms == 0).any():
                delta.grad[grad_norms == 0] = torch.randn(delta.grad[grad_norms == 0].shape, generator=g)
            optimizer_delta.step()
            delta.data.add_(x)
            delta.data.clamp_(0, 1).sub_(x)
            delta.data.renorm_(p=2, dim=0, maxnorm=eps)
        x_adv = (x + delta).detach()
    model.train()
    track_bn_stats(model, True)
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.zero_grad()  # optimizer.zero_grad(): the L2 attack's backward() filled the parameters' gradients
    logits_natural, logits_adv = model(x), model(x_adv)
    target = soft_y if soft_y is not None else y
    if lse:
        y_onehot = soft_y if soft_y is not None else \
            (1 - K * ls / (K - 1)) * F.one_hot(y, num_classes=K) + ls / (K - 1)
        p_nat, p_adv = F.softmax(logits_natural, dim=1), F.softmax(logits_adv, dim=1)
        loss_natural = torch.sum((p_nat - y_onehot) ** 2, dim=-1)
        loss_robust = F.relu(torch.sum((p_adv - p_nat) ** 2, dim=-1) - clip_value)
        return loss_natural.mean() + beta * loss_robust.mean(), x_adv
    if soft_y is not None:
        loss_natural = kl_div_18(F.log_softmax(logits_natural, dim=1), target).sum() / len(x)
    else:
        loss_natural = smooth_ce(logits_natural, y, ls)
    loss_robust = kl_div_18(F.log_softmax(logits_adv, dim=1), F.softmax(logits_natural, dim=1)).sum() / len(x)
    return loss_natural + beta * loss_robust, x_adv


def ref_pgd_at_wa(model, x, y, g):
    """Trainer.adversarial_loss: core/attacks/pgd.py (uniform start) in eval mode with CrossEntropyLoss()."""
    model.eval()
    delta = torch.zeros_like(x)
    delta.uniform_(-1, 1, generator=g)
    delta = EPS * delta
    delta = torch.clamp(x + delta, 0.0, 1.0) - x
    delta.requires_grad_()
    for _ in range(STEPS):
        loss = nn.CrossEntropyLoss()(model(x + delta), y)
        grad = torch.autograd.grad(loss, [delta])[0]
        delta.data = delta.data + ALPHA * grad.sign()
        delta.data = torch.clamp(delta.data, -EPS, EPS)
        delta.data = torch.clamp(x + delta.data, 0.0, 1.0) - x
    x_adv = torch.clamp(x + delta, 0.0, 1.0).detach()
    model.train()
    return nn.CrossEntropyLoss()(model(x_adv), y), x_adv


def ref_mart(model, x, y, g, beta):
    kl = nn.KLDivLoss(reduction="none")
    model.eval()
    x_adv = x.detach() + 0.001 * torch.randn(x.shape, generator=g).detach()
    for _ in range(STEPS):
        x_adv.requires_grad_()
        with torch.enable_grad():
            loss_ce = F.cross_entropy(model(x_adv), y)
        grad = torch.autograd.grad(loss_ce, [x_adv])[0]
        x_adv = x_adv.detach() + ALPHA * torch.sign(grad.detach())
        x_adv = torch.min(torch.max(x_adv, x - EPS), x + EPS)
        x_adv = torch.clamp(x_adv, 0.0, 1.0)
    model.train()
    x_adv = torch.clamp(x_adv, 0.0, 1.0)
    logits, logits_adv = model(x), model(x_adv)
    adv_probs = F.softmax(logits_adv, dim=1)
    tmp1 = torch.argsort(adv_probs, dim=1)[:, -2:]
    new_y = torch.where(tmp1[:, -1] == y, tmp1[:, -2], tmp1[:, -1])
    loss_adv = F.cross_entropy(logits_adv, y) + F.nll_loss(torch.log(1.0001 - adv_probs + 1e-12), new_y)
    nat_probs = F.softmax(logits, dim=1)
    true_probs = torch.gather(nat_probs, 1, (y.unsqueeze(1)).long()).squeeze()
    loss_robust = (1.0 / len(x)) * torch.sum(
        torch.sum(kl(torch.log(adv_probs + 1e-12), nat_probs), dim=1) * (1.0000001 - true_probs))
    return loss_adv + float(beta) * loss_robust, x_adv


def _clip_bound(clip_loss, divergence):
    bound = torch.ones(K) * clip_loss / (K - 1)
    bound[0] = 1 - clip_loss
    target = torch.zeros(K)
    target[0] = 1
    return distance_func(bound, target, divergence).item()


def ref_train_cifar(model, x, y, g, attack, divergence, lam=6.0, clip_loss=0.0, not_clip_clean=False, ls=0.0):
    """The training step of without_DDPM/train_cifar.py (attack PGD or TRADES)."""
    clip_bound = _clip_bound(clip_loss, divergence)
    ls = ls / (K - 1)
    model.train()
    if attack == "TRADES":  # attack_trades_divergence
        model.eval()
        clean_output = F.softmax(model(x).detach(), dim=1)
        delta = 0.001 * torch.randn(x.shape, generator=g)
        delta = torch.max(torch.min(delta, 1 - x), 0 - x)
        delta.requires_grad = True
        for _ in range(STEPS):
            loss = distance_func(F.softmax(model(x + delta), dim=1), clean_output, divergence)
            grad = torch.autograd.grad(loss.mean(), delta)[0]
            d = torch.clamp(delta + ALPHA * torch.sign(grad), min=-EPS, max=EPS)
            delta.data = torch.max(torch.min(d, 1 - x), 0 - x)
        model.train()
    else:  # attack_pgd_divergence, in train mode
        onehot = F.one_hot(y, num_classes=K)
        delta = torch.zeros_like(x)
        delta.uniform_(-EPS, EPS, generator=g)
        delta = torch.max(torch.min(delta, 1 - x), 0 - x)
        delta.requires_grad = True
        for _ in range(STEPS):
            loss = distance_func(F.softmax(model(x + delta), dim=1), onehot.float(), divergence)
            grad = torch.autograd.grad(loss.mean(), delta)[0]
            delta.data = torch.clamp(delta + ALPHA * torch.sign(grad), min=-EPS, max=EPS)
            delta.data = torch.max(torch.min(delta.data, 1 - x), 0 - x)
    adv_input = torch.clamp(x + delta.detach(), min=0, max=1)
    robust_output = F.softmax(model(adv_input), dim=1)
    y_ls = (1 - K * ls) * F.one_hot(y, num_classes=K) + ls
    if attack == "TRADES":
        output = F.softmax(model(x), dim=1)
        kl_term = distance_func(robust_output, output, divergence)
        if not_clip_clean:
            kl_term = F.relu(kl_term - clip_bound)
        robust_loss = distance_func(output, y_ls.float(), divergence) + lam * kl_term
        if not not_clip_clean:
            robust_loss = F.relu(robust_loss - clip_bound)
    else:
        robust_loss = F.relu(distance_func(robust_output, y_ls.float(), divergence) - clip_bound)
    return robust_loss.mean(), adv_input


# ----------------------------------------------------------------- the comparison

@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=g)
    y = torch.randint(0, K, (8,), generator=g)
    torch.manual_seed(1)
    model = zoo.create_model("wrn-10-1-swish")
    with torch.no_grad():  # a model that has trained a little: non-trivial BatchNorm statistics and logits
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.mul_(1.5)
                m.running_mean.uniform_(-0.1, 0.1)
    return model, x, y


def _compare(batch, cfg_values, reference, atol=1e-5):
    model, x, y = batch
    ours, ref = copy.deepcopy(model), copy.deepcopy(model)
    ours.train()
    cfg = make_config({"architecture": "wrn-10-1-swish", "eps": EPS, "attack_step_size": ALPHA,
                       "attack_steps": STEPS, **cfg_values})
    out = adversarial_step(ours, ours, x, y, cfg, K, contextlib.nullcontext, torch.Generator().manual_seed(7))
    out.loss.backward()
    ref_loss, ref_x_adv = reference(ref, x, y, torch.Generator().manual_seed(7))
    ref_loss.backward()
    assert torch.allclose(out.x_adv, ref_x_adv, atol=1e-6), "adversarial examples differ"
    assert out.loss.item() == pytest.approx(ref_loss.item(), rel=1e-5, abs=1e-6)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=atol, rtol=1e-4), f"gradient of {name} differs"
    for (name, b), c in zip(ours.named_buffers(), ref.buffers()):
        assert torch.allclose(b.float(), c.float(), atol=1e-6), f"BatchNorm buffer {name} differs"
    return out


@pytest.mark.parametrize("threat", ["linf", "l2"])
@pytest.mark.parametrize("objective", ["score", "trades"])
def test_train_wa_score_and_trades_match_the_official_step(batch, objective, threat):
    lse = objective == "score"
    eps = EPS if threat == "linf" else 0.5
    values = {"objective": objective, "threat": threat, "eps": eps, "beta": 3.0 if lse else 6.0,
              "label_smoothing": 0.0 if lse else 0.1}
    _compare(batch, values, lambda m, x, y, g: ref_train_wa(m, x, y, g, f"{threat}-pgd", lse, values["beta"],
                                                             values["label_smoothing"]))


def test_train_wa_score_clip_value_and_label_smoothing(batch):
    values = {"objective": "score", "beta": 4.0, "label_smoothing": 0.1, "clip_value": 0.01}
    _compare(batch, values, lambda m, x, y, g: ref_train_wa(m, x, y, g, "linf-pgd", True, 4.0, 0.1, 0.01))


def test_train_wa_cutmix_targets_are_the_mixed_labels(batch):
    model, x, y = batch
    soft = 0.6 * F.one_hot(y, K).float() + 0.4 * F.one_hot(y.roll(1), K).float()
    for objective, lse in (("score", True), ("trades", False)):
        ours, ref = copy.deepcopy(model), copy.deepcopy(model)
        cfg = make_config({"objective": objective, "eps": EPS, "attack_step_size": ALPHA, "attack_steps": STEPS,
                           "beta": 3.0, "label_smoothing": 0.0, "cutmix": True})
        out = adversarial_step(ours, ours, x, soft, cfg, K, contextlib.nullcontext, torch.Generator().manual_seed(7))
        ref_loss, ref_x_adv = ref_train_wa(ref, x, y, torch.Generator().manual_seed(7), "linf-pgd", lse, 3.0,
                                           soft_y=soft)
        assert torch.allclose(out.x_adv, ref_x_adv, atol=1e-6)
        assert out.loss.item() == pytest.approx(ref_loss.item(), rel=1e-5)


def test_train_wa_pgd_at_matches_the_official_step(batch):
    _compare(batch, {"objective": "pgd-at"}, ref_pgd_at_wa)


def test_train_wa_mart_matches_the_official_step(batch):
    _compare(batch, {"objective": "mart", "beta": 6.0}, lambda m, x, y, g: ref_mart(m, x, y, g, 6.0))


DISTANCES = ["LSE", "JS", "JSsqrt", "L1square", "KLsqrt", "RKLsqrt", "1", "2"]


@pytest.mark.parametrize("divergence", DISTANCES + ["KL"])
@pytest.mark.parametrize("clip_loss,not_clip_clean", [(0.0, False), (0.3, False), (0.3, True)])
def test_train_cifar_trades_with_each_distance_and_clipping(batch, divergence, clip_loss, not_clip_clean):
    objective = "trades" if divergence == "KL" else "score"
    values = {"semantics": "train-cifar", "objective": objective, "distance": divergence, "beta": 6.0,
              "clip_loss": clip_loss, "not_clip_clean": not_clip_clean, "label_smoothing": 0.1}
    _compare(batch, values, lambda m, x, y, g: ref_train_cifar(m, x, y, g, "TRADES", divergence, 6.0, clip_loss,
                                                                not_clip_clean, 0.1), atol=1e-4)


@pytest.mark.parametrize("divergence", [d for d in DISTANCES if d != "RKLsqrt"] + ["KL"])
@pytest.mark.parametrize("clip_loss", [0.0, 0.4])
def test_train_cifar_pgd_at_with_each_distance_and_clipping(batch, divergence, clip_loss):
    values = {"semantics": "train-cifar", "objective": "pgd-at", "distance": divergence, "clip_loss": clip_loss}
    _compare(batch, values, lambda m, x, y, g: ref_train_cifar(m, x, y, g, "PGD", divergence, clip_loss=clip_loss),
             atol=1e-4)
