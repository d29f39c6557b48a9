"""What a training run releases: the weight average carries the live model's BatchNorm statistics, and a resumed
run continues the global random stream that the model's own randomness draws from."""

from __future__ import annotations

import functools

import pytest
import torch
from safetensors.torch import load_file

import zoo
from training import train
from training.run_state import load_checkpoint
from training_helpers import bundled_images, tiny_config, tiny_data


@pytest.fixture(scope="module")
def cifar():
    return bundled_images()


def _bn_stats(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def test_released_average_has_the_live_models_batchnorm_statistics(cifar, tmp_path):
    data = tiny_data(cifar, n=96, holdout=32)            # 2 steps, one epoch
    run = train(tiny_config(epochs=1, test_clean_every=0), tmp_path / "run", data=data, progress=False)
    live = _bn_stats(load_checkpoint(run / "checkpoint.pt")["model"])
    released = _bn_stats(load_file(run / "model" / "model.safetensors"))
    fresh = _bn_stats(zoo.create_model("wrn-10-1-swish").state_dict())
    assert live and released.keys() == live.keys()
    # training moved the statistics away from their initial values (BatchNorm starts at mean 0, variance 1)
    assert all(not torch.equal(live[k], fresh[k]) for k in live)
    assert all(torch.equal(released[k], live[k]) for k in live)
    # and the released model is what zoo.load_model gives, in eval mode, using them
    model = zoo.load_model(run / "model")
    assert not model.training
    assert all(torch.equal(v, live[k]) for k, v in _bn_stats(model.state_dict()).items())


def test_resume_continues_the_global_random_stream_of_a_model_with_dropout(cifar, tmp_path, monkeypatch):
    # the architecture with dropout before its classifier: each training step draws from torch's global generator
    monkeypatch.setattr(zoo, "create_model", functools.partial(zoo.create_model, drop_rate=0.5))
    data = tiny_data(cifar, n=96, holdout=32)             # 2 steps, one epoch
    cfg = tiny_config(epochs=1, test_clean_every=0, checkpoint_every=1)
    straight = train(cfg, tmp_path / "a", data=data, progress=False)
    train(cfg, tmp_path / "b", data=data, progress=False, stop_after_steps=1)
    torch.manual_seed(12345)                               # whatever the caller's generator holds meanwhile
    torch.rand(10)
    resumed = train(cfg, tmp_path / "b", data=data, progress=False, resume=True)
    a, b = load_checkpoint(straight / "checkpoint.pt"), load_checkpoint(resumed / "checkpoint.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert torch.equal(a["rng"][0]["torch"], b["rng"][0]["torch"])
    # the released weights too (the dropout masks after the resume are those of the uninterrupted run)
    fa = load_file(straight / "model" / "model.safetensors")
    fb = load_file(resumed / "model" / "model.safetensors")
    assert all(torch.equal(fa[k], fb[k]) for k in fa)
