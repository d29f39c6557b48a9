"""The training loop: SCORE / TRADES / PGD-AT / MART adversarial training, resumable, DDP-aware.

Run directory layout::

    config.json        the full TrainConfig of the run
    run_info.json      versions, world size, device, start time
    checkpoint.pt      last training state (epoch ends + every `checkpoint_every` steps)
    metrics.jsonl      one record per epoch;  curves.png: the plotted curves
    model-best/        the released model: the weight average (or the live model without EMA) of the
                       epoch with the best held-out PGD-CW accuracy, ties to the later epoch (weights-best)
    model/             the model of the last epoch (weights-last)
"""

from __future__ import annotations

import math
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import zoo
from zoo import devices
from zoo.datasets_meta import NUM_CLASSES
from zoo.errors import ConfigError, ScoreZooError
from zoo.fileio import atomic_write_json, read_json
from zoo.model_dir import make_config as make_model_config
from zoo.model_dir import save_model_dir

from harness.data import load_arrays

from .augment import augment, cutmix_x4
from .bn import set_bn_momentum
from .config import TrainConfig, make_config
from .data import BatchPlan, TrainData, to_float
from .determinism import deterministic_training
from .ema import EMA
from .metrics import append_metrics, plot_metrics, read_metrics, truncate_metrics
from .objectives import adversarial_step
from .precision import autocast, memory_format, use_bf16
from .run_state import check_same_config, load_checkpoint, save_checkpoint
from .schedule import build_optimizer, build_scheduler
from .validation import accuracy

CHECKPOINT_NAME = "checkpoint.pt"
RUN_CONFIG_NAME = "config.json"
_IGNORED_ON_RESUME = ("data_dir",)  # where the data lives may change between launches
_EVAL_STREAM = 2**31  # random stream of the held-out evaluation, apart from every epoch's


class TrainingDivergedError(ScoreZooError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------- building blocks

def step_generator(seed: int, epoch: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """A generator whose seed is a pure function of (seed, epoch, step, rank): resumable randomness."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1, np.uint64)[0] >> 1))
    return g


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _prepare_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool) -> dict | None:
    """Validate the run directory; return the checkpoint to resume from (or None)."""
    config_path = run_dir / RUN_CONFIG_NAME
    exists = run_dir.exists() and any(run_dir.iterdir())
    if exists and not resume:
        raise ConfigError(f"run directory {run_dir} already exists; pass --resume to continue it, or choose a new --out")
    if not exists:
        return None
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a training run directory (no {RUN_CONFIG_NAME}); choose a new --out")
    check_same_config(config_path, cfg.to_dict(), run_dir, "a different config",
                      "use the original recipe and --set values, or a new --out", ignored=_IGNORED_ON_RESUME)
    ckpt_path = run_dir / CHECKPOINT_NAME
    return load_checkpoint(ckpt_path) if ckpt_path.is_file() else None


def final_model_config(cfg: TrainConfig, **extra: Any) -> dict:
    """config.json of the EMA model directory written at the end of a run."""
    return make_model_config(cfg.architecture, NUM_CLASSES[cfg.dataset], cfg.dataset,
                             threat_model={"linf": "Linf", "l2": "L2"}[cfg.threat], eps=cfg.eps,
                             training={"objective": cfg.objective, "recipe": cfg.to_dict(), **extra})


# ---------------------------------------------------------------- the loop

@dataclass
class _EpochStats:
    loss: float = 0.0
    clean: float = 0.0
    adv: float = 0.0
    n: float = 0.0

    def add(self, t: torch.Tensor) -> None:
        self.loss += t[0].item()
        self.clean += t[1].item()
        self.adv += t[2].item()
        self.n += t[3].item()

    def as_dict(self) -> dict[str, float]:
        return {"loss": self.loss, "clean": self.clean, "adv": self.adv, "n": self.n}


def train(config: TrainConfig | dict, out_dir: str | Path, resume: bool = False, data: TrainData | None = None,
          device: str | None = None, stop_after_steps: int | None = None, progress: bool = True) -> Path:
    """Train a model as ``config`` says; write the run into ``out_dir``; return ``out_dir``.

    ``resume`` continues from ``out_dir/checkpoint.pt`` (the config must match).
    ``data`` supplies the images directly (else they are loaded from the
    config's data_dir). ``stop_after_steps`` ends the launch after that many
    optimiser steps in total, with a checkpoint, as a time-limited job would.
    Under torchrun every process calls this; only rank 0 writes files.
    """
    cfg = config if isinstance(config, TrainConfig) else make_config(config)
    run_dir = Path(out_dir)
    where = devices.placement(device)  # decided without starting CUDA, so determinism can still set cuBLAS up
    with deterministic_training(cfg.deterministic, where.is_cuda) as determinism, devices.joined(where) as group:
        return _train(cfg, run_dir, resume, data, group, stop_after_steps, progress, determinism)


def load_test_split(cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The test split logged during training: ``test_data``, else the test split next to the training data."""
    if not (cfg.test_clean_every or cfg.test_robust_every):
        return None
    if cfg.test_data:
        x, y = load_arrays(cfg.dataset, "test", cfg.test_data)
    else:  # best effort: the training data's folder may hold no test split
        try:
            where = Path(cfg.resolved_data_dir())
            x, y = load_arrays(cfg.dataset, "test", where if where.is_dir() else where.parent)
        except ScoreZooError:
            return None
    if cfg.test_size:
        x, y = x[:cfg.test_size], y[:cfg.test_size]
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))


def _epoch_evaluation(cfg: TrainConfig, model: nn.Module, data: TrainData, test: tuple | None, epoch: int,
                      group: devices.Group) -> dict[str, float]:
    """Held-out selection accuracies (every ``eval_every`` epochs and the last) and the test-split logs."""
    out: dict[str, float] = {}
    last = epoch + 1 == cfg.epochs

    def due(every: int) -> bool:
        return bool(every) and ((epoch + 1) % every == 0 or last)

    if due(cfg.eval_every):
        gen = step_generator(cfg.seed, _EVAL_STREAM, 0, group.rank, torch.device(group.where.device))
        out["holdout_clean_acc"], out["holdout_robust_acc"] = accuracy(
            model, data.holdout_x, data.holdout_y, cfg, group, gen, cfg.eval_attack_steps)
    if test is not None and (due(cfg.test_clean_every) or due(cfg.test_robust_every)):
        gen = step_generator(cfg.seed, _EVAL_STREAM, 1, group.rank, torch.device(group.where.device))
        clean, robust = accuracy(model, test[0], test[1], cfg, group, gen,
                                 cfg.eval_attack_steps if due(cfg.test_robust_every) else 0)
        out["test_clean_acc"] = clean
        if robust is not None:
            out["test_robust_acc"] = robust
    return out


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, data: TrainData | None, group: devices.Group,
           stop_after_steps: int | None, progress: bool, determinism: dict) -> Path:
    device = torch.device(group.where.device)
    ckpt = _prepare_run_dir(run_dir, cfg, resume)
    group.barrier()  # every rank has checked the run directory before rank 0 writes into it
    if resume and run_dir.joinpath(RUN_CONFIG_NAME).is_file() and not cfg.data_dir:
        cfg = make_config({**cfg.to_dict(), "data_dir": read_json(run_dir / RUN_CONFIG_NAME, "run config").get("data_dir", "")})
    if cfg.batch_size % group.world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({group.world_size})")
    if cfg.generated_fraction > 0 and not cfg.generated_data:
        raise ConfigError(f"this recipe mixes generated images (generated_fraction={cfg.generated_fraction}); "
                          "pass --set generated_data=PATH to an .npz with image and label arrays "
                          "(or --set generated_fraction=0)")
    torch.manual_seed(cfg.seed + group.rank)

    if data is None:
        data = TrainData.load(cfg.dataset, cfg.resolved_data_dir(), cfg.train_subset, cfg.holdout_size, cfg.generated_data)
    test = load_test_split(cfg)
    plan = BatchPlan(data, cfg.batch_size, cfg.generated_fraction, cfg.seed)
    num_classes = NUM_CLASSES[cfg.dataset]
    bf16 = use_bf16(cfg.bf16, device, emulate=cfg.bf16_emulate)
    layout = memory_format(cfg.channels_last)

    def amp():
        return autocast(device, bf16)

    raw = zoo.create_model(cfg.architecture, dataset=cfg.dataset).to(device, memory_format=layout)
    if ckpt is not None:
        raw.load_state_dict(ckpt["model"])
    # DDP gives every rank rank 0's weights; the weight average copies them after that
    model = DistributedDataParallel(raw, device_ids=[device] if device.type == "cuda" else None) \
        if group.enabled else raw
    optimizer = build_optimizer(raw, cfg)
    scheduler = build_scheduler(optimizer, cfg, plan.steps_per_epoch)
    ema = EMA(raw, cfg.ema_decay, cfg.ema_warmup_fraction * cfg.epochs * plan.steps_per_epoch, cfg.ema_dynamic) \
        if cfg.ema else None

    epoch, start_step, global_step = 0, 0, 0
    best = {"holdout_robust_acc": -1.0, "epoch": -1}
    stats = _EpochStats()
    resumed_lr = None  # (lr, momentum) at the start of the epoch a mid-epoch checkpoint resumes into
    if ckpt is not None:
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"][min(group.rank, len(ckpt["rng"]) - 1)], device)
        epoch, start_step, global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        best = dict(ckpt["best"])
        stats = _EpochStats(**ckpt["epoch_stats"])
        resumed_lr = ckpt.get("epoch_lr")
    released = ema.model if ema is not None else raw
    # the very first step initialises BatchNorm's running statistics (momentum 1.0 for all its forwards)
    first_step_init = cfg.bn_first_batch_init and global_step == 0
    set_bn_momentum(raw, 1.0 if first_step_init else cfg.bn_momentum)

    if group.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / RUN_CONFIG_NAME, cfg.to_dict())
        atomic_write_json(run_dir / "run_info.json", {
            "torch": torch.__version__, "python": platform.python_version(), "score_zoo": zoo.__version__,
            "world_size": group.world_size, "device": str(device), "bf16": bf16, "determinism": determinism,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_from_step": global_step, "train_images": len(data.real_x), "steps_per_epoch": plan.steps_per_epoch,
            "generated_images": 0 if data.gen_x is None else len(data.gen_x), "holdout_images": len(data.holdout_x),
            "test_images": 0 if test is None else len(test[1])})
        truncate_metrics(run_dir / "metrics.jsonl", epoch)

    def checkpoint(next_epoch: int, next_step: int) -> None:
        rng = group.all_gather_object(_rng_state(device))  # every rank resumes its own random state
        if group.is_main:
            save_checkpoint(run_dir / CHECKPOINT_NAME, {
                "format": "score-train/2", "config": cfg.to_dict(), "epoch": next_epoch, "step": next_step,
                "global_step": global_step, "model": raw.state_dict(),
                "ema": ema.state_dict() if ema is not None else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                "best": best, "epoch_stats": stats.as_dict(), "epoch_lr": [epoch_lr, epoch_momentum]})

    while epoch < cfg.epochs:
        raw.train()
        bar = tqdm(total=plan.steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   file=sys.stderr, disable=not (progress and group.is_main), dynamic_ncols=True, leave=True)
        epoch_start = time.time()
        epoch_lr, epoch_momentum = resumed_lr if start_step and resumed_lr else (
            optimizer.param_groups[0]["lr"], optimizer.param_groups[0].get("momentum"))
        for step in range(start_step, plan.steps_per_epoch):
            x_u8, y = plan.batch(epoch, step, group.rank, group.world_size)
            gen = step_generator(cfg.seed, epoch, step, group.rank, torch.device("cpu"))
            x = augment(to_float(x_u8, device), cfg.augmentation_name, gen)
            y = y.to(device)
            if cfg.cutmix:
                x, y = cutmix_x4(x, y, num_classes, np.random.default_rng([cfg.seed, epoch, step, group.rank, 3]))
            x = x.contiguous(memory_format=layout)
            attack_gen = gen if device.type == "cpu" else step_generator(cfg.seed, epoch, step, group.rank, device)
            out = adversarial_step(model, raw, x, y, cfg, num_classes, amp, attack_gen)
            hard = y.dim() == 1
            nan = torch.tensor(float("nan"), device=y.device)
            batch_stats = torch.stack([
                out.loss.detach().float() * len(y),
                (out.logits_clean.argmax(1) == y).sum().float() if out.logits_clean is not None and hard else nan,
                (out.logits_adv.argmax(1) == y).sum().float() if hard else nan,
                torch.tensor(float(len(y)), device=y.device)]).double()
            group.all_reduce_sum(batch_stats)
            if not math.isfinite(batch_stats[0].item()):
                bar.close()
                last = run_dir / CHECKPOINT_NAME
                raise TrainingDivergedError(
                    f"the loss became {batch_stats[0].item()} at epoch {epoch + 1}, step {step + 1} (global step {global_step + 1}); "
                    f"the last good checkpoint is {last if last.is_file() else 'not written yet'}: lower lr (now {cfg.lr}) "
                    "or set grad_clip, then start a new run")
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
            optimizer.step()
            if cfg.lr_schedule_unit == "step":
                scheduler.step()
            global_step += 1
            if first_step_init and global_step == 1:
                set_bn_momentum(raw, cfg.bn_momentum)
            if ema is not None:
                ema.update(raw, global_step)
            stats.add(batch_stats)
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss / stats.n:.4f}", clean=f"{100 * stats.clean / stats.n:.1f}",
                            adv=f"{100 * stats.adv / stats.n:.1f}", lr=f"{optimizer.param_groups[0]['lr']:.3g}")
            last_in_epoch = step + 1 == plan.steps_per_epoch
            stopping = stop_after_steps is not None and global_step >= stop_after_steps
            if not last_in_epoch and ((cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0) or stopping):
                checkpoint(epoch, step + 1)
            if stopping and not last_in_epoch:
                bar.close()
                return run_dir
        bar.close()
        if cfg.lr_schedule_unit == "epoch":
            scheduler.step()

        # epoch end: BatchNorm buffers of the average from the live model, evaluate, checkpoint
        group.broadcast_from_main(raw.buffers())
        if ema is not None:
            ema.copy_buffers(raw)
        record: dict[str, Any] = {
            "epoch": epoch, "global_step": global_step, "lr": epoch_lr, "momentum": epoch_momentum,
            "train_loss": stats.loss / stats.n, "train_clean_acc": _percent(stats.clean, stats.n),
            "train_adv_acc": _percent(stats.adv, stats.n), "epoch_seconds": round(time.time() - epoch_start, 2)}
        record.update(_epoch_evaluation(cfg, released, data, test, epoch, group))
        if "holdout_robust_acc" in record and record["holdout_robust_acc"] >= best["holdout_robust_acc"]:
            best = {"holdout_robust_acc": record["holdout_robust_acc"], "holdout_clean_acc": record["holdout_clean_acc"],
                    "epoch": epoch}
            if group.is_main:
                save_model_dir(released, run_dir / "model-best", final_model_config(cfg, selected="best", **best),
                               overwrite=True)
        if group.is_main:
            append_metrics(run_dir / "metrics.jsonl", record)
            plot_metrics(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png")
            print(_epoch_line(cfg, epoch, record), file=sys.stderr)
        epoch, start_step, stats = epoch + 1, 0, _EpochStats()
        checkpoint(epoch, 0)
        if stop_after_steps is not None and global_step >= stop_after_steps and epoch < cfg.epochs:
            return run_dir

    if group.is_main:
        save_model_dir(released, run_dir / "model", final_model_config(cfg, selected="last", best=best), overwrite=True)
    group.barrier()
    return run_dir


def _percent(count: float, n: float) -> float | None:
    return None if not math.isfinite(count) or not n else 100.0 * count / n


def _epoch_line(cfg: TrainConfig, epoch: int, record: dict) -> str:
    parts = [f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f}"]
    if record["train_adv_acc"] is not None:
        parts.append(f"train adv acc {record['train_adv_acc']:.1f}%")
    if "holdout_robust_acc" in record:
        parts.append(f"held-out clean {record['holdout_clean_acc']:.1f}% / PGD-CW {record['holdout_robust_acc']:.1f}%")
    if "test_clean_acc" in record:
        parts.append(f"test clean {record['test_clean_acc']:.1f}%" + (
            f" / PGD-CW {record['test_robust_acc']:.1f}%" if "test_robust_acc" in record else ""))
    return ", ".join(parts)
