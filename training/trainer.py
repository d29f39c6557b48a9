"""The training loop: SCORE / TRADES / PGD-AT adversarial training with EMA, resumable, DDP-aware.

Run directory layout::

    config.json        the full TrainConfig of the run
    run_info.json      versions, world size, device, start time
    checkpoint.pt      last training state (epoch ends + every `checkpoint_every` steps)
    metrics.jsonl      one record per epoch;  curves.png: the plotted curves
    model-best/        EMA model with the best held-out PGD-CW accuracy (model directory)
    model/             final EMA model (model directory; zoo.load_model(run_dir / "model"))
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
from zoo.datasets_meta import NUM_CLASSES
from zoo.errors import ConfigError, ScoreZooError
from zoo.fileio import atomic_write_json, read_json
from zoo.model_dir import make_config as make_model_config
from zoo.model_dir import save_model_dir

from . import distributed as D
from .attacks import pgd
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, make_config
from .data import BatchPlan, TrainData, random_crop_flip, to_float
from .ema import EMA
from .losses import (ce_attack_loss, cw_attack_loss, kl_attack_loss, pgd_at_objective, score_objective,
                     squared_error_attack_loss, trades_objective)
from .metrics import append_metrics, plot_metrics, read_metrics, truncate_metrics

CHECKPOINT_NAME = "checkpoint.pt"
RUN_CONFIG_NAME = "config.json"
_IGNORED_ON_RESUME = ("data_dir",)  # where the data lives may change between launches
_EVAL_STREAM = 2**31  # random stream of the held-out evaluation, apart from every epoch's


class TrainingDivergedError(ScoreZooError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------- building blocks

def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    """SGD (Nesterov) with weight decay on every parameter except BatchNorm weights and biases."""
    bn_params = {id(p) for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
                 for p in m.parameters(recurse=False)}
    decay = [p for p in model.parameters() if id(p) not in bn_params]
    no_decay = [p for p in model.parameters() if id(p) in bn_params]
    return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                            {"params": no_decay, "weight_decay": 0.0}],
                           lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0)


def lr_factor(step: int, total_steps: int, warmup_fraction: float) -> float:
    """Learning-rate multiplier: linear warm-up over warmup_fraction of the steps, then cosine to 0."""
    warmup = max(1, round(warmup_fraction * total_steps)) if warmup_fraction > 0 else 0
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def set_bn_momentum(model: nn.Module, momentum: float) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = momentum


def step_generator(seed: int, epoch: int, step: int, rank: int, device: torch.device) -> torch.Generator:
    """A generator whose seed is a pure function of (seed, epoch, step, rank): resumable randomness."""
    g = torch.Generator(device=device)
    g.manual_seed(int(np.random.SeedSequence([seed, epoch, step, rank]).generate_state(1, np.uint64)[0] >> 1))
    return g


def _autocast(cfg: TrainConfig, device: torch.device):
    on = cfg.bf16 and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=on), (torch.bfloat16 if on else None)


def adversarial_step(model: nn.Module, raw: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Forward passes of one training step; return (loss, clean logits or None, adversarial logits).

    SCORE and TRADES: the clean forward (which updates BatchNorm statistics)
    comes first and its detached softmax is the attack's target -- in train
    mode BatchNorm uses batch statistics either way, so this equals a separate
    frozen-statistics forward and saves one pass. Then the attack runs on the
    bare module (``raw``) with frozen statistics, then the adversarial forward.
    """
    ctx, dtype = _autocast(cfg, x.device)
    attack = dict(threat=cfg.threat, eps=cfg.eps, step_size=cfg.attack_step_size, steps=cfg.attack_steps,
                  generator=generator, autocast_dtype=dtype)
    if cfg.objective == "pgd-at":
        x_adv = pgd(raw, x, lambda logits: ce_attack_loss(logits, y), **attack)
        with ctx:
            logits_adv = model(x_adv)
        return pgd_at_objective(logits_adv, y, cfg.label_smoothing), None, logits_adv
    with ctx:
        logits_clean = model(x)
    p_clean = torch.softmax(logits_clean.detach().float(), dim=1)
    attack_loss = squared_error_attack_loss if cfg.objective == "score" else kl_attack_loss
    x_adv = pgd(raw, x, lambda logits: attack_loss(logits, p_clean), **attack)
    with ctx:
        logits_adv = model(x_adv)
    if cfg.objective == "score":
        loss = score_objective(logits_clean, logits_adv, y, cfg.beta, cfg.label_smoothing, cfg.clip)
    else:
        loss = trades_objective(logits_clean, logits_adv, y, cfg.beta, cfg.label_smoothing)
    return loss, logits_clean, logits_adv


@torch.no_grad()
def evaluate_robust(model: nn.Module, x_u8: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                    info: D.DistInfo) -> tuple[float, float]:
    """Clean and PGD (CW loss) accuracy in % of ``model`` (eval mode) on uint8 images, sharded over ranks."""
    model.eval()
    steps = cfg.eval_attack_steps
    step_size = cfg.eval_attack_step_size or 2.5 * cfg.eps / max(1, steps)
    x_u8, y = x_u8[info.rank::info.world_size], y[info.rank::info.world_size]
    gen = step_generator(cfg.seed, _EVAL_STREAM, 0, info.rank, info.device)
    counts = torch.zeros(3, dtype=torch.float64, device=info.device)
    for i in range(0, len(y), cfg.eval_batch_size):
        xb = to_float(x_u8[i:i + cfg.eval_batch_size], info.device)
        yb = y[i:i + cfg.eval_batch_size].to(info.device)
        counts[0] += (model(xb).argmax(1) == yb).sum()
        if steps:
            xb = pgd(model, xb, lambda logits: cw_attack_loss(logits, yb), cfg.threat, cfg.eps, step_size, steps,
                     generator=gen)
        counts[1] += (model(xb).argmax(1) == yb).sum()
        counts[2] += len(yb)
    D.all_reduce_sum(counts, info)
    n = max(1.0, counts[2].item())
    return 100.0 * counts[0].item() / n, 100.0 * counts[1].item() / n


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _comparable(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in _IGNORED_ON_RESUME}


def _check_same_config(stored: dict, cfg: TrainConfig, run_dir: Path) -> None:
    new = cfg.to_dict()
    diffs = [f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(_comparable(stored)) | set(_comparable(new)))
             if stored.get(k) != new.get(k)]
    if diffs:
        raise ConfigError(f"cannot resume {run_dir} with a different config ({'; '.join(diffs[:4])}"
                          f"{' ...' if len(diffs) > 4 else ''}); use the original recipe and --set values, or a new --out")


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
    try:
        stored = read_json(config_path, "run config")
    except ValueError as e:
        raise ConfigError(f"{config_path} is not valid JSON ({e}); choose a new --out") from None
    _check_same_config(stored, cfg, run_dir)
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
    info = D.setup(device)
    try:
        return _train(cfg, run_dir, resume, data, info, stop_after_steps, progress)
    finally:
        D.teardown(info)


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, data: TrainData | None, info: D.DistInfo,
           stop_after_steps: int | None, progress: bool) -> Path:
    ckpt = _prepare_run_dir(run_dir, cfg, resume)
    D.barrier(info)  # every rank has checked the run directory before rank 0 writes into it
    if resume and run_dir.joinpath(RUN_CONFIG_NAME).is_file() and not cfg.data_dir:
        cfg = make_config({**cfg.to_dict(), "data_dir": read_json(run_dir / RUN_CONFIG_NAME, "run config").get("data_dir", "")})
    if cfg.batch_size % info.world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({info.world_size})")
    if cfg.generated_fraction > 0 and not cfg.generated_data:
        raise ConfigError(f"this recipe mixes generated images (generated_fraction={cfg.generated_fraction}); "
                          "pass --set generated_data=PATH to an .npz with image and label arrays "
                          "(or --set generated_fraction=0)")
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        if info.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
    torch.manual_seed(cfg.seed + info.rank)

    if data is None:
        data = TrainData.load(cfg.dataset, cfg.resolved_data_dir(), cfg.train_subset, cfg.holdout_size, cfg.generated_data)
    plan = BatchPlan(data, cfg.batch_size, cfg.generated_fraction, cfg.seed)
    total_steps = cfg.epochs * plan.steps_per_epoch

    raw = zoo.create_model(cfg.architecture, dataset=cfg.dataset).to(info.device)
    set_bn_momentum(raw, cfg.bn_momentum)
    memory_format = torch.channels_last if cfg.channels_last and info.device.type == "cuda" else torch.contiguous_format
    raw = raw.to(memory_format=memory_format)
    optimizer = build_optimizer(raw, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg.warmup_fraction))
    ema = EMA(raw, cfg.ema_decay, round(cfg.ema_warmup_fraction * total_steps), cfg.ema_dynamic)

    epoch, start_step, global_step = 0, 0, 0
    best = {"holdout_robust_acc": -1.0, "epoch": -1}
    stats = _EpochStats()
    if ckpt is not None:
        raw.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"][min(info.rank, len(ckpt["rng"]) - 1)], info.device)
        epoch, start_step, global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        best = dict(ckpt["best"])
        stats = _EpochStats(**ckpt["epoch_stats"])
    model = DistributedDataParallel(raw, device_ids=[info.device] if info.device.type == "cuda" else None) \
        if info.enabled else raw

    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / RUN_CONFIG_NAME, cfg.to_dict())
        atomic_write_json(run_dir / "run_info.json", {
            "torch": torch.__version__, "python": platform.python_version(), "score_zoo": zoo.__version__,
            "world_size": info.world_size, "device": str(info.device), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_from_step": global_step, "train_images": len(data.real_x),
            "generated_images": 0 if data.gen_x is None else len(data.gen_x), "holdout_images": len(data.holdout_x)})
        truncate_metrics(run_dir / "metrics.jsonl", epoch)

    def checkpoint(next_epoch: int, next_step: int) -> None:
        rng = [_rng_state(info.device)]
        if info.enabled:  # gather every rank's RNG state so each resumes its own
            gathered: list[Any] = [None] * info.world_size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        if info.is_main:
            save_checkpoint(run_dir / CHECKPOINT_NAME, {
                "format": "score-train/1", "config": cfg.to_dict(), "epoch": next_epoch, "step": next_step,
                "global_step": global_step, "model": raw.state_dict(), "ema": ema.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng,
                "best": best, "epoch_stats": stats.as_dict()})

    while epoch < cfg.epochs:
        raw.train()
        bar = tqdm(total=plan.steps_per_epoch, initial=start_step, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   file=sys.stderr, disable=not (progress and info.is_main), dynamic_ncols=True, leave=True)
        epoch_start = time.time()
        for step in range(start_step, plan.steps_per_epoch):
            x_u8, y = plan.batch(epoch, step, info.rank, info.world_size)
            gen = step_generator(cfg.seed, epoch, step, info.rank, torch.device("cpu"))
            x = to_float(x_u8, info.device)
            if cfg.augment:
                x = random_crop_flip(x, gen)
            x, y = x.contiguous(memory_format=memory_format), y.to(info.device)
            attack_gen = gen if info.device.type == "cpu" else step_generator(cfg.seed, epoch, step, info.rank, info.device)
            loss, logits_clean, logits_adv = adversarial_step(model, raw, x, y, cfg, attack_gen) \
                if global_step else _first_step(model, raw, x, y, cfg, attack_gen)
            batch_stats = torch.stack([
                loss.detach().float() * len(y),
                (logits_clean.argmax(1) == y).sum().float() if logits_clean is not None else torch.tensor(float("nan"), device=y.device),
                (logits_adv.argmax(1) == y).sum().float(),
                torch.tensor(float(len(y)), device=y.device)]).double()
            D.all_reduce_sum(batch_stats, info)
            if not math.isfinite(batch_stats[0].item()):
                bar.close()
                last = run_dir / CHECKPOINT_NAME
                raise TrainingDivergedError(
                    f"the loss became {batch_stats[0].item()} at epoch {epoch + 1}, step {step + 1} (global step {global_step + 1}); "
                    f"the last good checkpoint is {last if last.is_file() else 'not written yet'}: lower lr (now {cfg.lr}) "
                    "or set grad_clip, then start a new run")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(raw.parameters(), cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            ema.update(raw, global_step)
            global_step += 1
            stats.add(batch_stats)
            bar.update(1)
            bar.set_postfix(loss=f"{stats.loss / stats.n:.4f}", clean=f"{100 * stats.clean / stats.n:.1f}",
                            adv=f"{100 * stats.adv / stats.n:.1f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
            last_in_epoch = step + 1 == plan.steps_per_epoch
            stopping = stop_after_steps is not None and global_step >= stop_after_steps
            if not last_in_epoch and ((cfg.checkpoint_every and global_step % cfg.checkpoint_every == 0) or stopping):
                checkpoint(epoch, step + 1)
            if stopping and not last_in_epoch:
                bar.close()
                return run_dir
        bar.close()

        # epoch end: BatchNorm buffers of the average from the live model, evaluate, checkpoint
        D.broadcast_buffers(raw, info)
        ema.copy_buffers(raw)
        record: dict[str, Any] = {
            "epoch": epoch, "global_step": global_step, "lr": scheduler.get_last_lr()[0],
            "train_loss": stats.loss / stats.n, "train_clean_acc": 100 * stats.clean / stats.n if cfg.objective != "pgd-at" else None,
            "train_adv_acc": 100 * stats.adv / stats.n, "epoch_seconds": round(time.time() - epoch_start, 2)}
        if (epoch + 1) % max(1, cfg.eval_every) == 0 or epoch + 1 == cfg.epochs:
            clean_acc, robust_acc = evaluate_robust(ema.model, data.holdout_x, data.holdout_y, cfg, info)
            record.update(holdout_clean_acc=clean_acc, holdout_robust_acc=robust_acc)
            if robust_acc > best["holdout_robust_acc"]:
                best = {"holdout_robust_acc": robust_acc, "holdout_clean_acc": clean_acc, "epoch": epoch}
                if info.is_main:
                    save_model_dir(ema.model, run_dir / "model-best", final_model_config(cfg, selected="best", **best),
                                   overwrite=True)
        if info.is_main:
            append_metrics(run_dir / "metrics.jsonl", record)
            plot_metrics(read_metrics(run_dir / "metrics.jsonl"), run_dir / "curves.png")
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['train_loss']:.4f}, train adv acc "
                  f"{record['train_adv_acc']:.1f}%" + (f", held-out clean {record['holdout_clean_acc']:.1f}% / PGD-CW "
                  f"{record['holdout_robust_acc']:.1f}%" if "holdout_robust_acc" in record else ""), file=sys.stderr)
        epoch, start_step, stats = epoch + 1, 0, _EpochStats()
        checkpoint(epoch, 0)
        if stop_after_steps is not None and global_step >= stop_after_steps and epoch < cfg.epochs:
            return run_dir

    if info.is_main:
        save_model_dir(ema.model, run_dir / "model", final_model_config(cfg, selected="last", best=best), overwrite=True)
    D.barrier(info)
    return run_dir


def _first_step(model, raw, x, y, cfg, gen):
    """Global step 0: BatchNorm momentum 1.0 for the first statistics-updating forward, then the recipe's value."""
    bns = [m for m in raw.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def restore(*_):
        if not bns or bns[0].track_running_stats:  # not an attack forward (those freeze the statistics)
            set_bn_momentum(raw, cfg.bn_momentum)

    set_bn_momentum(raw, 1.0)  # the first batch initialises the running statistics
    handle = raw.register_forward_hook(restore)
    try:
        return adversarial_step(model, raw, x, y, cfg, gen)
    finally:
        handle.remove()
        set_bn_momentum(raw, cfg.bn_momentum)
