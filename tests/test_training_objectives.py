"""SCORE / TRADES / PGD-AT objectives, the training attacks and the EMA, checked against hand-computed values."""

import math

import pytest
import torch
import torch.nn as nn

import zoo
from training.attacks import frozen_bn_stats, pgd
from training.ema import EMA, ema_decay
from training.trainer import _first_step, adversarial_step
from training.config import make_config
from training.losses import (ce_attack_loss, cw_attack_loss, kl_attack_loss, pgd_at_objective, score_objective, smooth_labels,
                             squared_error_attack_loss, trades_objective)

LN2 = math.log(2.0)


def test_smooth_labels_formula():
    t = smooth_labels(torch.tensor([1]), 5, 0.1)
    assert torch.allclose(t, torch.tensor([[0.025, 0.9, 0.025, 0.025, 0.025]]))


def test_score_objective_by_hand():
    # example 1: p_clean = (0.5, 0.5), y = 0, p_adv = (0.2, 0.8) (logits 0, ln 4)
    # example 2: p_clean = (0.8, 0.2), y = 1, p_adv = p_clean
    lc = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    la = torch.tensor([[0.0, math.log(4.0)], [math.log(4.0), 0.0]])
    y = torch.tensor([0, 1])
    # clean: ex1 (0.5-1)^2 + 0.5^2 = 0.5; ex2 0.8^2 + (0.2-1)^2 = 1.28 -> mean 0.89
    # robust: ex1 (0.3^2 + 0.3^2) = 0.18; ex2 0 -> mean 0.09
    assert score_objective(lc, la, y, beta=3.0).item() == pytest.approx(0.89 + 3 * 0.09, abs=1e-6)
    # clip 0.1: relu(0.18 - 0.1) = 0.08, relu(-0.1) = 0 -> mean 0.04
    assert score_objective(lc, la, y, beta=3.0, clip=0.1).item() == pytest.approx(0.89 + 3 * 0.04, abs=1e-6)
    # label smoothing 0.2 with K=2: targets (0.8, 0.2) / (0.2, 0.8): ex1 0.09+0.09, ex2 0.36+0.36 -> mean 0.45
    assert score_objective(lc, la, y, beta=0.0, label_smoothing=0.2).item() == pytest.approx(0.45, abs=1e-6)


def test_trades_and_pgd_at_by_hand():
    lc = torch.tensor([[0.0, 0.0]])
    la = torch.tensor([[0.0, math.log(4.0)]])
    y = torch.tensor([0])
    ce = LN2  # -log 0.5
    kl = 0.5 * math.log(0.5 / 0.2) + 0.5 * math.log(0.5 / 0.8)
    assert trades_objective(lc, la, y, beta=6.0).item() == pytest.approx(ce + 6 * kl, abs=1e-6)
    # label smoothing 0.1, K=2: targets (0.9, 0.1); CE = -(0.9 ln .5 + 0.1 ln .5) = ln 2
    assert trades_objective(lc, la, y, beta=0.0, label_smoothing=0.1).item() == pytest.approx(LN2, abs=1e-6)
    assert pgd_at_objective(la, y).item() == pytest.approx(-math.log(0.2), abs=1e-6)


def test_attack_losses_by_hand():
    la = torch.tensor([[0.0, math.log(4.0)], [math.log(3.0), 0.0]])
    target = torch.tensor([[0.5, 0.5], [0.75, 0.25]])
    assert squared_error_attack_loss(la, target).item() == pytest.approx(0.18, abs=1e-6)  # 0.18 + 0
    kl = 0.5 * math.log(0.5 / 0.2) + 0.5 * math.log(0.5 / 0.8)  # second row: p_adv == target, KL 0
    assert kl_attack_loss(la, target).item() == pytest.approx(kl, abs=1e-6)
    y = torch.tensor([0, 0])
    assert ce_attack_loss(la, y).item() == pytest.approx(-math.log(0.2) - math.log(0.75), abs=1e-6)
    assert cw_attack_loss(la, y).item() == pytest.approx(math.log(4.0) - math.log(3.0), abs=1e-6)


def _linear_model(w0, w1):
    """Two-class linear model on 1x2x2 images: f_k(x) = <W_k, x>."""
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([w0, w1]))
    return nn.Sequential(nn.Flatten(), lin)


def test_linf_pgd_by_hand():
    # CE gradient w.r.t. x for label 0 is p_1 (W_1 - W_0): its sign is sign(W_1 - W_0) = (+, -, +, -)
    model = _linear_model([0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0])
    x = torch.tensor([0.5, 0.5, 0.95, 0.02]).view(1, 1, 2, 2)
    y = torch.tensor([0])
    adv = pgd(model, x, lambda l: ce_attack_loss(l, y), "linf", eps=0.25, step_size=0.1, steps=1, random_init=False)
    assert torch.allclose(adv.flatten(), torch.tensor([0.6, 0.4, 1.0, 0.0]))
    adv = pgd(model, x, lambda l: ce_attack_loss(l, y), "linf", eps=0.25, step_size=0.1, steps=3, random_init=False)
    assert torch.allclose(adv.flatten(), torch.tensor([0.75, 0.25, 1.0, 0.0]))


def test_l2_pgd_by_hand():
    model = _linear_model([0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0])  # direction (0.6, 0.8, 0, 0)
    x = torch.full((1, 1, 2, 2), 0.5)
    y = torch.tensor([0])
    adv = pgd(model, x, lambda l: ce_attack_loss(l, y), "l2", eps=0.25, step_size=0.1, steps=1, random_init=False)
    assert torch.allclose(adv.flatten(), torch.tensor([0.56, 0.58, 0.5, 0.5]), atol=1e-6)
    adv = pgd(model, x, lambda l: ce_attack_loss(l, y), "l2", eps=0.25, step_size=0.1, steps=4, random_init=False)
    assert torch.allclose(adv.flatten(), torch.tensor([0.65, 0.7, 0.5, 0.5]), atol=1e-6)  # projected to norm 0.25


@pytest.mark.parametrize("threat,eps", [("linf", 8 / 255), ("l2", 0.5)])
def test_attack_stays_in_ball_and_keeps_bn_statistics(threat, eps):
    torch.manual_seed(0)
    model = zoo.create_model("wrn-10-1-swish").train()
    x = torch.rand(8, 3, 32, 32)
    x[:, :, :4] = 0.0  # pixels at the box edges
    x[:, :, -4:] = 1.0
    p = torch.softmax(model(x).detach(), 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adv = pgd(model, x, lambda l: squared_error_attack_loss(l, p), threat, eps, 2.5 * eps / 3, 3,
              generator=torch.Generator().manual_seed(1))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats and num_batches_tracked
    assert all(p.grad is None for p in model.parameters())
    assert model.training and all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert adv.min() >= 0 and adv.max() <= 1
    delta = (adv - x).flatten(1)
    if threat == "linf":
        assert delta.abs().max() <= eps + 1e-6
    else:
        assert delta.norm(dim=1).max() <= eps + 1e-5
    assert delta.abs().max() > 0
    with frozen_bn_stats(model):  # the attack raised its objective (which is 0 at x itself)
        assert squared_error_attack_loss(model(adv), p) > squared_error_attack_loss(model(x), p) + 1e-6


def test_frozen_bn_uses_batch_statistics():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).train()
    x = torch.randn(4, 3, 5, 5) * 3 + 2
    expected = bn(x)  # train mode: normalised with batch statistics (and updates the running ones)
    state = {k: v.clone() for k, v in bn.state_dict().items()}
    with frozen_bn_stats(bn):
        out = bn(x)
    assert torch.allclose(out, expected)
    assert all(torch.equal(state[k], bn.state_dict()[k]) for k in state)


def test_ema_decay_schedule_and_arithmetic():
    assert ema_decay(3, 0.995, warmup_steps=5) == 0.0
    assert ema_decay(5, 0.995, warmup_steps=5) == 0.995
    assert ema_decay(6, 0.995, warmup_steps=5) == pytest.approx(2 / 11)
    assert ema_decay(10_000, 0.995, warmup_steps=5) == 0.995
    assert ema_decay(7, 0.9, warmup_steps=0, dynamic=False) == 0.9

    live = nn.Sequential(nn.Linear(2, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        live[0].weight.fill_(1.0)
    ema = EMA(live, tau=0.995, warmup_steps=1)
    with torch.no_grad():
        live[0].weight.fill_(4.0)
    assert ema.update(live, 0) == 0.0
    assert torch.equal(ema.model[0].weight, torch.full((1, 2), 4.0))  # warm-up copies
    with torch.no_grad():
        live[0].weight.fill_(2.0)
    ema.update(live, 2)  # t = 1: decay min(0.995, 2/11)
    assert torch.allclose(ema.model[0].weight, torch.full((1, 2), 4.0 * 2 / 11 + 2.0 * 9 / 11))
    live[1].running_mean.fill_(7.0)
    assert ema.model[1].running_mean.item() == 0.0
    ema.copy_buffers(live)
    assert ema.model[1].running_mean.item() == 7.0


@pytest.mark.parametrize("objective,updates", [("score", 2), ("trades", 2), ("pgd-at", 1)])
def test_training_step_updates_bn_statistics_only_in_the_loss_passes(objective, updates):
    torch.manual_seed(0)
    cfg = make_config({"architecture": "wrn-10-1-swish", "objective": objective, "attack_steps": 2})
    model = zoo.create_model("wrn-10-1-swish").train()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    loss, _, _ = adversarial_step(model, model, x, y, cfg, torch.Generator().manual_seed(0))
    assert model.batchnorm.num_batches_tracked.item() == updates
    assert torch.isfinite(loss) and loss.requires_grad


def test_first_step_initialises_bn_statistics_from_the_first_batch():
    torch.manual_seed(0)
    cfg = make_config({"architecture": "wrn-10-1-swish", "objective": "score", "attack_steps": 1, "bn_momentum": 0.01})
    model = zoo.create_model("wrn-10-1-swish").train()
    x, y = torch.rand(8, 3, 32, 32) * 0.2 + 0.7, torch.randint(0, 10, (8,))
    _first_step(model, model, x, y, cfg, torch.Generator().manual_seed(0))
    bn = model.layer[0].block[0].batchnorm_0  # sees the normalised input conv: its mean moved fully, not by 1%
    with torch.no_grad(), frozen_bn_stats(model):
        feats = model.init_conv((x - model.mean) / model.std)
    # momentum 1.0 for the clean pass, then 0.01 for the adversarial pass
    assert torch.allclose(bn.running_mean, feats.mean((0, 2, 3)), rtol=0.05, atol=0.02)
    assert all(m.momentum == 0.01 for m in model.modules() if isinstance(m, nn.BatchNorm2d))
