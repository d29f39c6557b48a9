"""DDP training with 2 real gloo processes synchronises gradients: after one optimiser step both ranks hold the
same weights, which are the average of the two half-batch updates and not one rank's own update."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

import zoo
from training import train
from training.augment import augment
from training.data import BatchPlan, to_float
from training.objectives import adversarial_step
from training.randomness import step_generator
from training.schedule import build_optimizer, build_scheduler
from training_helpers import bundled_images, tiny_config, tiny_data

WORLD = 2
CFG = dict(epochs=1, batch_size=32, attack_steps=1, eval_attack_steps=1)


def _data():
    return tiny_data(bundled_images(), n=96, holdout=32)


def _params(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _rank_main(rank: int, port: int, out: Path) -> None:
    """One torchrun-style process: train one step; save the weights before and after the optimiser step."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)

    def snapshot(name):
        def hook(optimizer, args, kwargs):
            torch.save([p.detach().clone() for p in _params(optimizer)], out / f"{name}-{rank}.pt")
        return hook

    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    register_optimizer_step_pre_hook(snapshot("before"))
    register_optimizer_step_post_hook(snapshot("after"))
    train(tiny_config(**CFG), out / "run", data=_data(), device="cpu", progress=False, stop_after_steps=1)


def _alone(rank: int, start: list[torch.Tensor]) -> list[torch.Tensor]:
    """Rank ``rank``'s first step on its own half-batch, without any other process: the same batch slice,
    augmentation and attack randomness, optimiser and learning rate as in the run."""
    cfg, data = tiny_config(**CFG), _data()
    plan = BatchPlan(data, cfg.batch_size, cfg.generated_fraction, cfg.seed)
    model = zoo.create_model(cfg.architecture, dataset=cfg.dataset).train()
    optimizer = build_optimizer(model, cfg)
    build_scheduler(optimizer, cfg, plan.steps_per_epoch)  # sets the first step's lr
    with torch.no_grad():
        for p, v in zip(_params(optimizer), start):
            p.copy_(v)
    x_u8, y = plan.batch(0, 0, rank, WORLD)
    gen = step_generator(cfg.seed, 0, 0, rank, torch.device("cpu"))
    out = adversarial_step(model, model, augment(to_float(x_u8), cfg.augmentation_name, gen), y, cfg, 10,
                           contextlib.nullcontext, gen)
    out.loss.backward()
    optimizer.step()
    return [p.detach().clone() for p in _params(optimizer)]


def test_two_gloo_ranks_average_their_gradients(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(port, tmp_path), nprocs=WORLD, join=True)
    before = [torch.load(tmp_path / f"before-{r}.pt") for r in range(WORLD)]
    after = [torch.load(tmp_path / f"after-{r}.pt") for r in range(WORLD)]
    assert all(torch.equal(a, b) for a, b in zip(*before))  # DDP gave rank 1 the weights of rank 0
    assert all(torch.equal(a, b) for a, b in zip(*after))   # and the ranks stayed equal after the step
    alone = [_alone(r, before[0]) for r in range(WORLD)]
    moved = max((a - s).abs().max().item() for a, s in zip(after[0], before[0]))
    differs = max((a - b).abs().max().item() for a, b in zip(after[0], alone[0]))
    assert differs > 0.1 * moved  # not what rank 0 alone would have done
    # the first SGD step is linear in the gradient, so the averaged gradient gives the averaged update
    for a, s, u0, u1 in zip(after[0], before[0], *alone):
        torch.testing.assert_close(a - s, ((u0 - s) + (u1 - s)) / 2, rtol=1e-4, atol=1e-6)
