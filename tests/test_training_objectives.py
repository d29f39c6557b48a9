"""Distances, losses, attacks, EMA, schedules and augmentation, checked against hand-computed values and torch."""

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

import zoo
from training.attacks import advertorch_pgd, sign_pgd
from training.augment import cutmix_x4
from training.bn import frozen_bn_stats
from training.config import make_config
from training.distances import clip_bound, distance
from training.ema import EMA, ema_decay
from training.losses import cw_loss, smooth_cross_entropy, smooth_labels
from training.objectives import adversarial_step
from training.recipes import load_recipe
from training.schedule import build_optimizer, build_scheduler
from zoo.errors import ConfigError


def test_smooth_labels_and_smoothed_cross_entropy_formulas():
    assert torch.allclose(smooth_labels(torch.tensor([1]), 5, 0.1), torch.tensor([[0.025, 0.9, 0.025, 0.025, 0.025]]))
    # official SmoothCrossEntropyLoss: (1 - ls) * nll + ls * mean(-log p); logits (0, ln 3): p = (1/4, 3/4)
    ce = smooth_cross_entropy(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([0]), 0.1)
    assert ce.item() == pytest.approx(0.9 * math.log(4) + 0.1 * (math.log(4) + math.log(4 / 3)) / 2, abs=1e-6)


def test_distances_by_hand():
    p, q = torch.tensor([[0.5, 0.5]]), torch.tensor([[0.8, 0.2]])
    kl_qp = 0.8 * math.log(0.8 / 0.5) + 0.2 * math.log(0.2 / 0.5)  # KL(q || p): "KL(output=p, target=q)"
    kl_pq = 0.5 * math.log(0.5 / 0.8) + 0.5 * math.log(0.5 / 0.2)
    m = torch.tensor([0.65, 0.35])
    js = 0.5 * sum(a * math.log(a / b) for a, b in zip([0.5, 0.5], m.tolist())) + \
        0.5 * sum(a * math.log(a / b) for a, b in zip([0.8, 0.2], m.tolist()))
    expected = {"LSE": 0.18, "L1square": 0.36, "KL": kl_qp, "KLsqrt": math.sqrt(kl_qp), "RKLsqrt": math.sqrt(kl_pq),
                "JS": js, "JSsqrt": math.sqrt(js), "1": 0.6, "2": math.sqrt(0.18), "3": (2 * 0.3 ** 3) ** (1 / 3)}
    for name, value in expected.items():
        assert distance(name, p, q).item() == pytest.approx(value, rel=1e-5), name
    # 0 * log 0 = 0 for one-hot targets (torch 1.8's kl_div), and no NaN for a distance of 0
    assert distance("KL", torch.tensor([[0.25, 0.75]]), torch.tensor([[0.0, 1.0]])).item() == pytest.approx(math.log(4 / 3))
    assert torch.isfinite(distance("JSsqrt", p, p)).all()


def test_clip_bound_is_the_distance_of_the_clip_smoothed_vector_to_one_hot():
    # K = 10, clip 0.3: v = (0.7, 0.3/9, ...): LSE = 0.09 + 9 * (0.3/9)^2
    assert clip_bound("LSE", 0.3, 10) == pytest.approx(0.09 + 0.09 / 9, rel=1e-6)
    assert clip_bound("KL", 0.4, 10) == pytest.approx(-math.log(0.6), rel=1e-6)  # KL(onehot || v) = -log v_y
    assert clip_bound("KL", 0.0, 10) == 0.0


def test_cw_loss_is_the_clamped_margin_summed():
    logits = torch.tensor([[3.0, 1.0, 2.0], [0.0, 5.0, 1.0]])
    # ex1: -(3 - 2) = -1; ex2: margin 0 - 5 < 0 -> 0
    assert cw_loss(logits, torch.tensor([0, 0])).item() == pytest.approx(-1.0)


@pytest.mark.parametrize("attack", ["sign_pgd", "advertorch_linf", "advertorch_l2"])
def test_attacks_stay_in_the_ball_and_raise_their_loss(attack):
    torch.manual_seed(0)
    model = zoo.create_model("wrn-10-1-swish").eval()
    x = torch.rand(8, 3, 32, 32)
    x[:, :, :4] = 0.0  # pixels at the box edges
    x[:, :, -4:] = 1.0
    y = torch.randint(0, 10, (8,))
    g = torch.Generator().manual_seed(1)
    ce = lambda logits: nn.functional.cross_entropy(logits, y)  # noqa: E731
    if attack == "sign_pgd":
        eps, adv = 8 / 255, sign_pgd(model, x, ce, 8 / 255, 2 / 255, 5, "uniform", g)
    elif attack == "advertorch_linf":
        eps, adv = 8 / 255, advertorch_pgd(model, x, ce, "linf", 8 / 255, 2 / 255, 5, g)
    else:
        eps, adv = 0.5, advertorch_pgd(model, x, ce, "l2", 0.5, 0.1, 5, g)
    assert adv.min() >= 0 and adv.max() <= 1
    delta = (adv - x).flatten(1)
    assert (delta.abs().max() if eps < 0.1 else delta.norm(dim=1).max()) <= eps + 1e-5
    assert ce(model(adv)) > ce(model(x)) + 1e-4
    assert all(p.grad is None for p in model.parameters())


def test_frozen_bn_uses_batch_statistics_without_updating_them():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(3).train()
    x = torch.randn(4, 3, 5, 5) * 3 + 2
    expected = bn(x)
    state = {k: v.clone() for k, v in bn.state_dict().items()}
    with frozen_bn_stats(bn):
        out = bn(x)
    assert torch.allclose(out, expected)
    assert all(torch.equal(state[k], bn.state_dict()[k]) for k in state)


def _official_ema_update(wa, model, global_step, decay_rate, warmup_steps):
    """gowal21uncovering/utils/watrain.py: ema_update (dynamic decay)."""
    factor = int(global_step >= warmup_steps)
    delta = global_step - warmup_steps
    decay = min(decay_rate, (1.0 + delta) / (10.0 + delta)) if 10.0 + delta != 0 else decay_rate
    decay *= factor
    for p_swa, p_model in zip(wa.parameters(), model.parameters()):
        p_swa.data *= decay
        p_swa.data += p_model.data * (1 - decay)


def test_ema_matches_the_official_update_over_a_run():
    torch.manual_seed(0)
    live = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    warmup = 0.025 * 400 * 97  # the paper recipe's float warm-up: 0.025 * epochs * update_steps
    ours, ref = EMA(live, 0.995, warmup), EMA(live, 0.995, warmup).model
    for t in range(1, 1200):
        with torch.no_grad():
            for p in live.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        ours.update(live, t)
        _official_ema_update(ref, live, t, 0.995, warmup)
    for a, b in zip(ours.model.parameters(), ref.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert ema_decay(969, 0.995, warmup) == 0.0 and ema_decay(970, 0.995, warmup) == pytest.approx(0.1)
    assert ema_decay(970, 0.995, 969.5) == pytest.approx(1.5 / 10.5)  # a fractional warm-up
    assert ema_decay(10_000, 0.995, warmup) == 0.995
    live[1].running_mean.fill_(7.0)
    ours.copy_buffers(live)
    assert ours.model[1].running_mean.eq(7.0).all()


@pytest.mark.parametrize("objective,updates", [("score", 2), ("trades", 2), ("pgd-at", 1), ("mart", 2)])
def test_train_wa_step_updates_bn_statistics_only_in_the_loss_passes(objective, updates):
    torch.manual_seed(0)
    cfg = make_config({"architecture": "wrn-10-1-swish", "objective": objective, "attack_steps": 2})
    model = zoo.create_model("wrn-10-1-swish").train()
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    out = adversarial_step(model, model, x, y, cfg, 10, contextlib.nullcontext, torch.Generator().manual_seed(0))
    assert model.batchnorm.num_batches_tracked.item() == updates
    assert torch.isfinite(out.loss) and out.loss.requires_grad and model.training


def _per_epoch(recipe, steps_per_epoch):
    cfg = load_recipe(recipe)
    model = zoo.create_model("wrn-10-1-swish")
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch)
    lrs, moms = [], []
    for _ in range(cfg.epochs):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        for _ in range(steps_per_epoch if cfg.lr_schedule_unit == "step" else 1):
            opt.step()
            sched.step()
    return cfg, lrs, moms, opt


@pytest.mark.parametrize("recipe", ["cifar10-linf-wrn28-10", "cifar10-linf-wrn70-16", "cifar10-l2-wrn28-10",
                                    "cifar100-linf-wrn28-10", "cifar100-linf-wrn70-16", "svhn-linf-wrn28-10"])
def test_paper_recipes_follow_one_cycle_per_epoch(recipe):
    cfg, lrs, moms, opt = _per_epoch(recipe, steps_per_epoch=1)
    ref_opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=cfg.lr, momentum=0.9, nesterov=True)
    ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=cfg.lr, pct_start=0.025, total_steps=cfg.epochs)
    for epoch in range(cfg.epochs):
        assert lrs[epoch] == pytest.approx(ref_opt.param_groups[0]["lr"], rel=1e-12)
        assert moms[epoch] == pytest.approx(ref_opt.param_groups[0]["momentum"], rel=1e-12)
        ref_opt.step()
        ref.step()
    assert max(lrs) == pytest.approx(cfg.lr) and lrs.index(max(lrs)) == 9  # peak after 2.5% of 400 epochs
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85)
    assert opt.param_groups[0]["nesterov"] and opt.param_groups[1]["weight_decay"] == 0.0  # BN without decay


@pytest.mark.parametrize("recipe", ["cifar10-linf-preact18-pgdat-kl", "cifar10-linf-preact18-trades-kl",
                                    "cifar10-linf-preact18-pgdat-lse", "cifar10-linf-preact18-trades-lse"])
def test_without_ddpm_recipes_follow_train_cifar_lr_per_step(recipe):
    cfg = load_recipe(recipe)
    n = 7  # batches per epoch
    model = zoo.create_model(cfg.architecture)
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, n)

    def official(t):  # train_cifar.py lr_schedule, evaluated at epoch + (i + 1) / n
        return cfg.lr if t < 100 else cfg.lr / 10 if t < 105 else cfg.lr / 100

    for epoch in range(cfg.epochs):
        for i in range(n):
            assert opt.param_groups[0]["lr"] == pytest.approx(official(epoch + (i + 1) / n), rel=1e-9), (epoch, i)
            assert opt.param_groups[0]["momentum"] == 0.9
            opt.step()
            sched.step()
    assert len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 5e-4
    assert not opt.param_groups[0]["nesterov"] and cfg.epochs == 110 and cfg.batch_size == 128


def test_cutmix_mixes_labels_by_the_pasted_area():
    x = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 3, 32, 32).contiguous()  # image i is constant i
    y = torch.tensor([0, 1])
    xs, ys = cutmix_x4(x, y, 10, np.random.default_rng(0))
    assert xs.shape == (8, 3, 32, 32) and ys.shape == (8, 10)
    assert torch.allclose(ys.sum(1), torch.ones(8))
    for img, lab, source in zip(xs, ys, [0, 1] * 4):
        other = 1 - source
        pasted = (img[0] == other).float().mean().item()  # share of pixels from the partner image
        assert lab[other].item() == pytest.approx(pasted, abs=1e-6)


def _coordinate_images(n: int) -> torch.Tensor:
    """Images whose pixels hold their own coordinates: channel 0 = (column + 1) / 64, channel 1 = (row + 1) / 64,
    channel 2 = 1 (zero where the augmentation fills in)."""
    idx = torch.arange(32, dtype=torch.float32)
    cols, rows = (idx + 1).view(1, 32).expand(32, 32) / 64, (idx + 1).view(32, 1).expand(32, 32) / 64
    return torch.stack([cols, rows, torch.ones(32, 32)]).expand(n, 3, 32, 32).contiguous()


def _measured_geometry(out: torch.Tensor) -> tuple[list[float], list[bool], list[tuple[float, float]], float]:
    """Per image: rotation angle (degrees), mirrored or not, and shift of the map from output pixel to source
    pixel, fitted by least squares over the pixels that come from the image; and the largest misfit (pixels)."""
    angles, mirrored, shifts, misfit = [], [], [], 0.0
    for img in out.double():
        rows, cols = (img[2] == 1).nonzero(as_tuple=True)
        source = torch.stack([img[0, rows, cols], img[1, rows, cols]], 1) * 64 - 1    # (column, row) read back
        design = torch.stack([cols.double() - 15.5, rows.double() - 15.5, torch.ones(len(rows), dtype=torch.float64)], 1)
        coef = torch.linalg.lstsq(design, source).solution                            # source = A @ (col, row) + t
        misfit = max(misfit, (design @ coef - source).abs().max().item())
        a, shift = coef[:2].T, coef[2] - 15.5
        flip = a.det().item() < 0
        if flip:
            a = a @ torch.diag(torch.tensor([-1.0, 1.0], dtype=torch.float64))   # undo the horizontal mirror
        angles.append(math.degrees(math.atan2(a[1, 0].item(), a[0, 0].item())))
        mirrored.append(flip)
        shifts.append((shift[0].item(), shift[1].item()))
    return angles, mirrored, shifts, misfit


def test_augmentation_per_dataset_measured_on_the_images():
    """CIFAR-10: crop (padding 4) + flip, no rotation; CIFAR-100: the same plus a rotation of up to 15 degrees,
    spread over the whole range; SVHN: none. The geometry is read back from the augmented pixels."""
    from training.augment import augment

    x = _coordinate_images(256)

    def run(dataset):
        name = make_config({"dataset": dataset}).augmentation_name
        return augment(x, name, torch.Generator().manual_seed(0))

    assert torch.equal(run("svhn"), x)
    angles, mirrored, shifts, misfit = _measured_geometry(run("cifar10"))
    assert misfit < 1e-6 and max(abs(a) for a in angles) < 0.01  # every pixel is its source pixel, shifted
    assert 0.35 < sum(mirrored) / len(mirrored) < 0.65
    assert {round(s) for shift in shifts for s in shift} == set(range(-4, 5))  # shifts of -4..4 pixels each way
    angles, mirrored, _, misfit = _measured_geometry(run("cifar100"))
    assert misfit < 1.0  # nearest-pixel sampling
    magnitudes = sorted(abs(a) for a in angles)
    assert magnitudes[-1] <= 15.2 and magnitudes[-1] > 14.0  # up to 15 degrees, and the range is used
    assert 0.35 < sum(a > 0 for a in angles) / len(angles) < 0.65 and 0.35 < sum(mirrored) / len(mirrored) < 0.65
    assert 6.0 < magnitudes[len(magnitudes) // 2] < 9.0  # uniform over [-15, 15]: median magnitude 7.5


def test_semantic_combinations_the_official_code_does_not_define_are_refused():
    for values, match in [({"objective": "score", "distance": "KL"}, "is TRADES"),
                          ({"objective": "trades", "distance": "LSE"}, "uses KL"),
                          ({"objective": "mart", "threat": "l2"}, "mart exists"),
                          ({"semantics": "train-cifar", "threat": "l2"}, "train-cifar"),
                          ({"objective": "pgd-at", "distance": "RKLsqrt"}, "infinite"),
                          ({"objective": "pgd-at", "distance": "RKLsqrt", "label_smoothing": 0.1}, "infinite"),
                          ({"objective": "score", "distance": "RKLsqrt"}, "infinite"),
                          ({"objective": "pgd-at", "cutmix": True}, "cutmix"),
                          ({"objective": "trades", "clip_value": 0.1}, "clip_value"),
                          ({"distance": "L7x"}, "unknown distance")]:
        with pytest.raises(ConfigError, match=match):
            make_config(values)
    # RKLsqrt to smoothed labels is finite: SCORE with label smoothing accepts it
    assert make_config({"objective": "score", "distance": "RKLsqrt", "label_smoothing": 0.1}).distance_name == "RKLsqrt"
