"""End-to-end training runs on real CIFAR-10 images: loss goes down, resume is exact, bad input is refused."""

import json
import math
import re
import tomllib

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import zoo
from harness.data import to_float_tensor
from training import TrainingDivergedError, load_recipe, train
from training.data import BatchPlan, TrainData, load_generated
from training.recipes import RECIPE_DIR
from training.run_state import load_checkpoint
from training_helpers import bundled_images, metrics_records, tiny_config, tiny_data
from zoo.errors import ConfigError, DataError
from zoo.locking import output_lock


@pytest.fixture(scope="module")
def cifar():
    return bundled_images()


def test_short_run_lowers_loss_and_writes_a_loadable_model(cifar, tmp_path):
    data = tiny_data(cifar, n=352, holdout=32)
    run = train(tiny_config(epochs=4, batch_size=64, lr=0.2), tmp_path / "run", data=data, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2, 3]
    assert records[-1]["train_loss"] < records[0]["train_loss"] - 0.01
    model = zoo.load_model(run / "model")  # the released model of the last epoch, evaluated on the held-out images
    with torch.no_grad():
        correct = (model(to_float_tensor(data.holdout_x.numpy())).argmax(1) == data.holdout_y).sum().item()
    assert records[-1]["holdout_clean_acc"] == pytest.approx(100 * correct / len(data.holdout_y))
    assert all(r["holdout_robust_acc"] <= r["holdout_clean_acc"] for r in records)
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert zoo.read_config(run / "model")["threat_model"] == "Linf"
    assert (run / "model-best" / "model.safetensors").is_file() and (run / "curves.png").stat().st_size > 1000
    assert json.loads((run / "config.json").read_text())["architecture"] == "wrn-10-1-swish"


@pytest.mark.parametrize("values", [
    {"objective": "mart", "beta": 6.0},
    {"semantics": "train-cifar", "objective": "score", "distance": "LSE", "beta": 6.0, "clip_loss": 0.3,
     "ema": False, "bn_first_batch_init": False},
    {"semantics": "train-cifar", "objective": "pgd-at", "distance": "KL", "ema": False},
    {"objective": "trades", "beta": 6.0, "label_smoothing": 0.1, "cutmix": True},
    {"objective": "score", "distance": "JSsqrt"},
], ids=["mart", "train-cifar-score-lse-clip", "train-cifar-pgd-at", "trades-cutmix", "score-jssqrt"])
def test_each_new_objective_lowers_its_loss(cifar, tmp_path, values):
    data = tiny_data(cifar, n=288, holdout=32)
    run = train(tiny_config(epochs=3, batch_size=64, lr=0.2, eval_every=3, test_clean_every=0, **values), tmp_path / "run",
                data=data, progress=False)
    losses = [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_first_step_sets_bn_statistics_from_its_own_batches(cifar, tmp_path):
    """All forwards of global step 0 run with BatchNorm momentum 1.0 (train-wa.py), later ones with 0.01."""
    from training.augment import augment
    from training.objectives import adversarial_step
    from training.randomness import step_generator
    from training.data import to_float

    data = tiny_data(cifar, n=96, holdout=32)
    cfg = tiny_config(epochs=1, batch_size=32)
    train(cfg, tmp_path / "run", data=data, progress=False, stop_after_steps=1)
    trained = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]

    def replay(momentum):
        torch.manual_seed(cfg.seed)
        model = zoo.create_model(cfg.architecture).train()
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = momentum
        x_u8, y = BatchPlan(data, cfg.batch_size, 0.0, cfg.seed).batch(0, 0)
        gen = step_generator(cfg.seed, 0, 0, 0, torch.device("cpu"))
        x = augment(to_float(x_u8), cfg.augmentation_name, gen)
        import contextlib
        adversarial_step(model, model, x, y, cfg, 10, contextlib.nullcontext, gen)
        return model.state_dict()

    key = "layer.0.block.0.batchnorm_0.running_mean"
    assert torch.allclose(trained[key], replay(1.0)[key], atol=1e-6)
    assert not torch.allclose(trained[key], replay(0.01)[key], atol=1e-3)


def test_selection_uses_the_first_training_images_and_keeps_the_later_of_tied_epochs(cifar, tmp_path):
    x, y = cifar
    data = TrainData.from_arrays(x[:96], y[:96], "cifar10", holdout_size=32)
    assert torch.equal(data.holdout_x, torch.from_numpy(x[:32])) and torch.equal(data.real_x, torch.from_numpy(x[32:96]))
    test_file = tmp_path / "cifar10_test.npz"
    np.savez(test_file, x=x[-64:], y=y[-64:])
    cfg = tiny_config(epochs=3, lr=1e-6, eval_attack_steps=1, test_data=str(test_file), test_clean_every=1,
               test_robust_every=2)
    run = train(cfg, tmp_path / "run", data=data, progress=False)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = max(r["holdout_robust_acc"] for r in records)
    later = max(r["epoch"] for r in records if r["holdout_robust_acc"] == best)
    assert zoo.read_config(run / "model-best")["training"]["epoch"] == later
    assert [("test_clean_acc" in r, "test_robust_acc" in r) for r in records] == [(True, False), (True, True),
                                                                                   (True, True)]
    assert json.loads((run / "run_info.json").read_text())["test_images"] == 64


def test_resume_reaches_the_same_weights(cifar, tmp_path):
    data = tiny_data(cifar, n=160, holdout=32)  # 5 steps per epoch, 10 in all
    cfg = tiny_config(checkpoint_every=3)
    straight = train(cfg, tmp_path / "a", data=data, progress=False)
    # stop mid-epoch 2 (after step 6), then resume in a fresh call
    train(cfg, tmp_path / "b", data=data, progress=False, stop_after_steps=6)
    assert not (tmp_path / "b" / "model").exists()
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["global_step"] == 6
    resumed = train(cfg, tmp_path / "b", data=data, progress=False, resume=True)
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(resumed / "checkpoint.pt")
    for key in ("model", "ema"):
        assert all(torch.equal(a[key][k], b[key][k]) for k in a[key])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    fa, fb = load_file(straight / "model" / "model.safetensors"), load_file(resumed / "model" / "model.safetensors")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
    records = metrics_records(straight / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [0, 1] and metrics_records(resumed / "metrics.jsonl") == records


def test_run_directory_rules(cifar, tmp_path):
    data = tiny_data(cifar, n=96, holdout=32)
    cfg = tiny_config(epochs=1)
    train(cfg, tmp_path / "run", data=data, progress=False, stop_after_steps=1)
    with pytest.raises(ConfigError, match="already exists; pass --resume"):
        train(cfg, tmp_path / "run", data=data, progress=False)
    with pytest.raises(ConfigError, match=r"different config \(beta: 3.0 -> 4.0"):
        train(tiny_config(epochs=1, beta=4.0), tmp_path / "run", data=data, progress=False, resume=True)


def test_a_second_launch_on_a_run_directory_in_use_is_refused(cifar, tmp_path):
    data = tiny_data(cifar, n=96, holdout=32)
    run = tmp_path / "run"
    with output_lock(run, "training run", directory=True):  # as the first launch holds it while it trains
        for resume in (False, True):
            with pytest.raises(ConfigError, match=f"another training run is writing {re.escape(str(run))}"):
                train(tiny_config(epochs=1), run, data=data, progress=False, resume=resume)
    assert not run.exists()
    (tmp_path / ".run.lock").write_text("99999\n")  # the lock file of a killed launch holds no lock
    train(tiny_config(epochs=1), run, data=data, progress=False, stop_after_steps=1)
    assert load_checkpoint(run / "checkpoint.pt")["global_step"] == 1


def test_resume_of_a_missing_run_directory_is_refused(cifar, tmp_path):
    typo = tmp_path / "typo"
    with pytest.raises(ConfigError, match=f"cannot resume {re.escape(str(typo))}: there is no run there"):
        train(tiny_config(epochs=1), typo, data=tiny_data(cifar, n=96, holdout=32), progress=False, resume=True)
    assert not typo.exists()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(cifar, tmp_path):
    data = tiny_data(cifar, n=160, holdout=32)
    cfg = tiny_config(lr=1e30, warmup_fraction=0.0, checkpoint_every=1, objective="pgd-at")
    with pytest.raises(TrainingDivergedError, match="the loss became nan.*last good checkpoint is .*checkpoint.pt"):
        train(cfg, tmp_path / "run", data=data, progress=False)
    ckpt = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["global_step"] >= 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def _write_npz(path, image, label):
    np.savez(path, image=image, label=label)
    return str(path)


@pytest.mark.parametrize("image,label,match", [
    (np.zeros((4, 32, 32), np.uint8), np.zeros(4, np.int64), "uint8 of shape"),
    (np.zeros((4, 32, 32, 3), np.float32), np.zeros(4, np.int64), "uint8 of shape"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.array([0, 1, 2, 10]), "labels must lie in 0..9"),
    (np.zeros((4, 32, 32, 3), np.uint8), np.zeros(3, np.int64), "must have shape"),
])
def test_malformed_generated_data_is_refused(tmp_path, image, label, match):
    path = _write_npz(tmp_path / "gen.npz", image, label)
    with pytest.raises(DataError, match=match):
        load_generated(path, "cifar10")


def test_generated_data_is_mixed_at_the_given_fraction(cifar, tmp_path):
    rng = np.random.default_rng(0)
    path = _write_npz(tmp_path / "gen.npz", rng.integers(0, 256, (50, 32, 32, 3), dtype=np.uint8),
                      rng.integers(0, 10, 50))
    data = tiny_data(cifar, n=96, holdout=32, generated=path)
    plan = BatchPlan(data, batch_size=32, generated_fraction=0.75, seed=0)
    # the official sampler: 32 - int(32 * 0.75) = 8 real images per batch, ceil((64 + 32 held out) / 32) = 3 batches
    real, gen, order = plan.indices(epoch=0, step=1)
    assert len(real) == 8 and len(gen) == 24 and plan.steps_per_epoch == 3
    assert sorted(order.tolist()) == list(range(32)) and order.tolist() != list(range(32))  # shuffled within the batch
    x, y = plan.batch(0, 1)
    assert torch.equal(x, torch.cat([data.real_x[real], data.generated.take(gen)[0]])[torch.from_numpy(order)])
    # real images of consecutive batches come from one permutation per pass (no repeats within a pass)
    first, _, _ = plan.indices(0, 0)
    assert not set(first.tolist()) & set(real.tolist())
    again = BatchPlan(data, batch_size=32, generated_fraction=0.75, seed=0).indices(0, 1)  # a pure function
    assert all(np.array_equal(a, b) for a, b in zip(again, (real, gen, order)))
    x0, _ = plan.batch(0, 1, rank=0, world_size=2)
    x1, _ = plan.batch(0, 1, rank=1, world_size=2)
    assert len(x0) == len(x1) == 16 and torch.equal(torch.cat([x0, x1]).sort(0)[0], x.sort(0)[0])
    run = train(tiny_config(epochs=1, generated_data=path, generated_fraction=0.5), tmp_path / "run", data=data, progress=False)
    assert (run / "model" / "model.safetensors").is_file()


def test_recipes_load_and_unknown_keys_are_refused(tmp_path):
    tiny = load_recipe("cifar10-linf-tiny")
    assert tiny.objective == "score" and tiny.eps == pytest.approx(8 / 255) and tiny.epochs >= 1
    assert load_recipe("cifar10-linf-tiny-trades").objective == "trades"
    paper = load_recipe("cifar10-linf-wrn28-10")
    assert (paper.beta, paper.lr, paper.batch_size, paper.epochs, paper.generated_fraction) == (3.0, 0.2, 512, 400, 0.7)
    assert load_recipe("cifar10-l2-wrn28-10").threat == "l2"
    bad = tmp_path / "typo.toml"
    bad.write_text('base = "cifar10-linf-tiny"\nbeta = 3.0\nlabel_smothing = 0.1\n')
    with pytest.raises(ConfigError, match="unknown key.*label_smothing.*Did you mean: label_smoothing.*Valid keys: dataset"):
        load_recipe(str(bad))
    with pytest.raises(ConfigError, match="must be an integer"):
        load_recipe("cifar10-linf-tiny", {"epochs": "many"})


def test_every_recipe_value_says_where_it_comes_from():
    """Each value line of every shipped recipe carries [official], [paper] or [ours] in its comment."""
    for path in sorted(RECIPE_DIR.glob("*.toml")):
        lines = path.read_text().splitlines()
        keys = [k for k in tomllib.loads(path.read_text()) if k not in ("base", "description")]
        assert keys, path.name
        for key in keys:
            [line] = [ln for ln in lines if re.match(rf"{key}\s*=", ln)]
            assert re.search(r"#.*\[(official|paper|ours)\]", line), f"{path.name}: {line}"


def test_without_generated_data_batches_are_shuffled_passes_with_a_short_last_chunk(cifar):
    plan = BatchPlan(tiny_data(cifar, n=96, holdout=32), batch_size=24, generated_fraction=0.0, seed=3)
    batches = [plan.indices(0, s)[0] for s in range(plan.steps_per_epoch)]  # ceil((64 + 32 held out) / 24) = 4
    assert [len(b) for b in batches] == [24, 24, 16, 24]  # the fourth batch starts a new pass
    assert sorted(np.concatenate(batches[:3]).tolist()) == list(range(64))
    assert not np.array_equal(np.concatenate(batches), np.concatenate([plan.indices(1, s)[0] for s in range(3)]))

