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

import contextlib
import functools
import math
import numbers
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

import zoo
from zoo import devices, distributed
from zoo.datasets_meta import NUM_CLASSES
from zoo.errors import ConfigError, ScoreZooError
from zoo.fileio import atomic_write_json, read_json
from zoo.locking import output_lock
from zoo.model_dir import make_config as make_model_config
from zoo.model_dir import save_model_dir

from .augment import augment, cutmix_x4
from .bn import set_bn_momentum
from .config import TrainConfig, make_config
from .data import BatchPlan, TrainData, to_float
from .determinism import deterministic_training
from .ema import EMA
from .metrics import EpochStats, append_metrics, batch_totals, epoch_line, plot_metrics, read_metrics, truncate_metrics
from .objectives import adversarial_step
from .precision import autocast, memory_format, use_bf16
from .randomness import rng_state, set_rng_state, step_generator
from .run_state import check_same_config, load_checkpoint, save_checkpoint
from .schedule import build_optimizer, build_scheduler
from .tracking import RunLogger, resolve_log_dir
from .validation import epoch_accuracies, load_test_split

CHECKPOINT_NAME = "checkpoint.pt"
RUN_CONFIG_NAME = "config.json"
_IGNORED_ON_RESUME = ("data_dir",)  # where the data lives may change between launches


class TrainingDivergedError(ScoreZooError):
    """The loss became NaN or infinite."""


def train(config: TrainConfig | dict, out_dir: str | Path, resume: bool = False, data: TrainData | None = None,
          device: str | None = None, stop_after_steps: int | None = None, progress: bool = True,
          log_dir: str | Path | None = None, wandb_project: str | None = None) -> Path:
    """Train a model as ``config`` says; write the run into ``out_dir``; return ``out_dir``.

    ``resume`` continues from ``out_dir/checkpoint.pt`` (the config must match);
    a second run on the same ``out_dir`` is refused while this one runs.
    ``data`` supplies the images directly (else they are loaded from the
    config's data_dir). ``stop_after_steps`` ends the launch after that many
    optimiser steps in total, with a checkpoint, as a time-limited job would.
    ``log_dir`` is the TensorBoard folder (default: RUN_DIR/tensorboard where
    tensorboard is installed; "off": none), ``wandb_project`` also logs to W&B.
    Under torchrun every process calls this; only rank 0 writes files.
    """
    cfg = config if isinstance(config, TrainConfig) else make_config(config)
    if stop_after_steps is not None and (isinstance(stop_after_steps, bool)
                                         or not isinstance(stop_after_steps, numbers.Integral) or stop_after_steps < 1):
        raise ConfigError(f"--stop-after-steps must be a whole number of at least 1, not {stop_after_steps!r}")
    run_dir = Path(out_dir)
    where = devices.placement(device)  # decided without starting CUDA, so determinism can still set cuBLAS up
    with deterministic_training(cfg.deterministic, where.is_cuda) as determinism, distributed.joined(where) as group, \
            (output_lock(run_dir, "training run", directory=True) if group.is_main else contextlib.nullcontext()):
        ckpt = _prepare_run_dir(run_dir, cfg, resume)
        group.barrier()  # every rank has checked the run directory before rank 0 writes into it
        run = _Run(_launch_config(cfg, run_dir, resume, group.world_size), run_dir, group, data, ckpt,
                   stop_after_steps, progress)
        run.write_run_info(determinism)
        if group.is_main:
            run.logger = RunLogger(resolve_log_dir(log_dir, run_dir), wandb_project, run.cfg.to_dict(), run_dir,
                                   run.global_step)
        try:
            while run.epoch < run.cfg.epochs:
                if not run.train_epoch():
                    return run_dir  # stopped inside the epoch (checkpoint written)
                run.end_epoch()
                if run.stopping and run.epoch < run.cfg.epochs:
                    return run_dir  # stopped at the epoch's end
            run.finish()
        finally:
            if run.logger is not None:
                run.logger.close()
    return run_dir


def final_model_config(cfg: TrainConfig, **extra: Any) -> dict:
    """config.json of the EMA model directory written at the end of a run."""
    return make_model_config(cfg.architecture, NUM_CLASSES[cfg.dataset], cfg.dataset,
                             threat_model={"linf": "Linf", "l2": "L2"}[cfg.threat], eps=cfg.eps,
                             training={"objective": cfg.objective, "recipe": cfg.to_dict(), **extra})


def _prepare_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool) -> dict | None:
    """Validate the run directory; return the checkpoint to resume from (or None)."""
    config_path = run_dir / RUN_CONFIG_NAME
    exists = run_dir.exists() and any(run_dir.iterdir())
    if exists and not resume:
        raise ConfigError(f"run directory {run_dir} already exists; pass --resume to continue it, or choose a new --out")
    if not exists and resume:
        raise ConfigError(f"cannot resume {run_dir}: there is no run there; check the path, or leave out --resume "
                          "to start a new run")
    if not exists:
        return None
    if not config_path.is_file():
        raise ConfigError(f"{run_dir} is not a training run directory (no {RUN_CONFIG_NAME}); choose a new --out")
    check_same_config(config_path, cfg.to_dict(), run_dir, "a different config",
                      "use the original recipe and --set values, or a new --out", ignored=_IGNORED_ON_RESUME)
    ckpt_path = run_dir / CHECKPOINT_NAME
    return load_checkpoint(ckpt_path) if ckpt_path.is_file() else None


def _launch_config(cfg: TrainConfig, run_dir: Path, resume: bool, world_size: int) -> TrainConfig:
    """``cfg`` for this launch: a resumed run without data_dir keeps the stored one; checked against the world size."""
    if resume and run_dir.joinpath(RUN_CONFIG_NAME).is_file() and not cfg.data_dir:
        cfg = make_config({**cfg.to_dict(), "data_dir": read_json(run_dir / RUN_CONFIG_NAME, "run config").get("data_dir", "")})
    if cfg.batch_size % world_size:
        raise ConfigError(f"batch_size={cfg.batch_size} must be divisible by the number of processes ({world_size})")
    if cfg.generated_fraction > 0 and not cfg.generated_data:
        raise ConfigError(f"this recipe mixes generated images (generated_fraction={cfg.generated_fraction}); "
                          "pass --set generated_data=PATH to an .npz with image and label arrays "
                          "(or --set generated_fraction=0)")
    return cfg


class _Run:
    """One process's part of a training launch: the data, model, optimiser, weight average and position."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, group: distributed.Group, data: TrainData | None,
                 ckpt: dict | None, stop_after_steps: int | None, progress: bool):
        self.cfg, self.run_dir, self.group = cfg, run_dir, group
        self.stop_after_steps, self.progress = stop_after_steps, progress
        self.device = torch.device(group.where.device)
        torch.manual_seed(cfg.seed + group.rank)
        self.data = data if data is not None else TrainData.load(
            cfg.dataset, cfg.resolved_data_dir(), cfg.train_subset, cfg.holdout_size, cfg.generated_data)
        self.test = load_test_split(cfg)
        self.plan = BatchPlan(self.data, cfg.batch_size, cfg.generated_fraction, cfg.seed)
        self.num_classes = NUM_CLASSES[cfg.dataset]
        self.bf16 = use_bf16(cfg.bf16, self.device, emulate=cfg.bf16_emulate)
        self.layout = memory_format(cfg.channels_last)
        self.amp = functools.partial(autocast, self.device, self.bf16)
        self._build_model(None if ckpt is None else ckpt["model"])
        self.epoch, self.start_step, self.global_step = 0, 0, 0
        self.best = {"holdout_robust_acc": -1.0, "epoch": -1}
        self.stats = EpochStats()
        self.resumed_lr = None  # (lr, momentum) at the start of the epoch a mid-epoch checkpoint resumes into
        self.epoch_lr = self.epoch_momentum = None  # (lr, momentum) at the start of the current epoch
        self.epoch_start = 0.0
        self.logger: RunLogger | None = None  # rank 0's TensorBoard / W&B writers
        if ckpt is not None:
            self._resume(ckpt)
        # the very first step initialises BatchNorm's running statistics (momentum 1.0 for all its forwards)
        self.first_step_init = cfg.bn_first_batch_init and self.global_step == 0
        set_bn_momentum(self.raw, 1.0 if self.first_step_init else cfg.bn_momentum)

    def _build_model(self, weights: dict | None) -> None:
        """The model (``weights`` loaded, DDP-wrapped under torchrun), optimiser, schedule and weight average."""
        cfg = self.cfg
        self.raw = zoo.create_model(cfg.architecture, dataset=cfg.dataset).to(self.device, memory_format=self.layout)
        if weights is not None:
            self.raw.load_state_dict(weights)
        # DDP gives every rank rank 0's weights; the weight average copies them after that
        ddp_devices = [self.device] if self.device.type == "cuda" else None
        self.model = DistributedDataParallel(self.raw, device_ids=ddp_devices) if self.group.enabled else self.raw
        self.optimizer = build_optimizer(self.raw, cfg)
        self.scheduler = build_scheduler(self.optimizer, cfg, self.plan.steps_per_epoch)
        self.ema = EMA(self.raw, cfg.ema_decay, cfg.ema_warmup_fraction * cfg.epochs * self.plan.steps_per_epoch,
                       cfg.ema_dynamic) if cfg.ema else None

    def _resume(self, ckpt: dict) -> None:
        """Take the training state and position from a checkpoint (the model weights are already loaded)."""
        if self.ema is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"][min(self.group.rank, len(ckpt["rng"]) - 1)], self.device)
        self.epoch, self.start_step, self.global_step = ckpt["epoch"], ckpt["step"], ckpt["global_step"]
        self.best = dict(ckpt["best"])
        self.stats = EpochStats(**ckpt["epoch_stats"])
        self.resumed_lr = ckpt.get("epoch_lr")

    @property
    def released(self) -> nn.Module:
        """The model that is evaluated and released: the weight average, or the live model without EMA."""
        return self.ema.model if self.ema is not None else self.raw

    @property
    def stopping(self) -> bool:
        """Whether this launch has taken its ``stop_after_steps`` optimiser steps."""
        return self.stop_after_steps is not None and self.global_step >= self.stop_after_steps

    def write_run_info(self, determinism: dict) -> None:
        """Rank 0: config.json and run_info.json of this launch; metrics of epochs not yet done dropped."""
        if not self.group.is_main:
            return
        data, test = self.data, self.test
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.run_dir / RUN_CONFIG_NAME, self.cfg.to_dict())
        atomic_write_json(self.run_dir / "run_info.json", {
            "torch": torch.__version__, "python": platform.python_version(), "score_zoo": zoo.__version__,
            "world_size": self.group.world_size, "device": str(self.device), "bf16": self.bf16,
            "determinism": determinism, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed_from_step": self.global_step, "train_images": len(data.real_x),
            "steps_per_epoch": self.plan.steps_per_epoch,
            "generated_images": 0 if data.generated is None else len(data.generated),
            "generated_data": [] if data.generated is None else data.generated.provenance(),
            "holdout_images": len(data.holdout_x), "test_images": 0 if test is None else len(test[1])})
        truncate_metrics(self.run_dir / "metrics.jsonl", self.epoch)

    def save_checkpoint(self, next_epoch: int, next_step: int) -> None:
        """Checkpoint the run to resume at (``next_epoch``, ``next_step``); every rank's random state included."""
        rng = self.group.all_gather_object(rng_state(self.device))  # every rank resumes its own random state
        if self.group.is_main:
            save_checkpoint(self.run_dir / CHECKPOINT_NAME, {
                "format": "score-train/2", "config": self.cfg.to_dict(), "epoch": next_epoch, "step": next_step,
                "global_step": self.global_step, "model": self.raw.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng,
                "best": self.best, "epoch_stats": self.stats.as_dict(),
                "epoch_lr": [self.epoch_lr, self.epoch_momentum]})

    def train_epoch(self) -> bool:
        """Train the steps left in the current epoch; False when the launch stops inside it (with a checkpoint)."""
        cfg, steps = self.cfg, self.plan.steps_per_epoch
        self.raw.train()
        with tqdm(total=steps, initial=self.start_step, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", file=sys.stderr,
                  disable=not (self.progress and self.group.is_main), dynamic_ncols=True, leave=True) as bar:
            self.epoch_start = time.time()
            params = self.optimizer.param_groups[0]
            self.epoch_lr, self.epoch_momentum = self.resumed_lr if self.start_step and self.resumed_lr else (
                params["lr"], params.get("momentum"))
            for step in range(self.start_step, steps):
                self._step(step)
                s = self.stats
                bar.update(1)
                bar.set_postfix(loss=f"{s.loss / s.n:.4f}", clean=f"{100 * s.clean / s.n:.1f}",
                                adv=f"{100 * s.adv / s.n:.1f}", lr=f"{self.optimizer.param_groups[0]['lr']:.3g}")
                due = bool(cfg.checkpoint_every) and self.global_step % cfg.checkpoint_every == 0
                if step + 1 < steps and (due or self.stopping):
                    self.save_checkpoint(self.epoch, step + 1)
                    if self.stopping:
                        return False
        if cfg.lr_schedule_unit == "epoch":
            self.scheduler.step()
        return True

    def _inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        """Batch ``step`` of the current epoch on the device, augmented, and the generator of its attack."""
        cfg, rank = self.cfg, self.group.rank
        x_u8, y = self.plan.batch(self.epoch, step, rank, self.group.world_size)
        gen = step_generator(cfg.seed, self.epoch, step, rank, torch.device("cpu"))
        x = augment(to_float(x_u8, self.device), cfg.augmentation_name, gen)
        y = y.to(self.device)
        if cfg.cutmix:
            x, y = cutmix_x4(x, y, self.num_classes, np.random.default_rng([cfg.seed, self.epoch, step, rank, 3]))
        x = x.contiguous(memory_format=self.layout)
        attack_gen = gen if self.device.type == "cpu" else step_generator(cfg.seed, self.epoch, step, rank, self.device)
        return x, y, attack_gen

    def _step(self, step: int) -> None:
        """One optimiser step on batch ``step``; the weight average follows and ``stats`` adds the batch's totals."""
        cfg = self.cfg
        started = time.perf_counter()
        x, y, attack_gen = self._inputs(step)
        out = adversarial_step(self.model, self.raw, x, y, cfg, self.num_classes, self.amp, attack_gen)
        totals = batch_totals(out.loss, out.logits_clean, out.logits_adv, y)
        self.group.all_reduce_sum(totals)
        if not math.isfinite(totals[0].item()):
            last = self.run_dir / CHECKPOINT_NAME
            raise TrainingDivergedError(
                f"the loss became {totals[0].item()} at epoch {self.epoch + 1}, step {step + 1} "
                f"(global step {self.global_step + 1}); "
                f"the last good checkpoint is {last if last.is_file() else 'not written yet'}: lower lr (now {cfg.lr}) "
                "or set grad_clip, then start a new run")
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.raw.parameters(), cfg.grad_clip)
        self.optimizer.step()
        if cfg.lr_schedule_unit == "step":
            self.scheduler.step()
        self.global_step += 1
        if self.first_step_init and self.global_step == 1:
            set_bn_momentum(self.raw, cfg.bn_momentum)
        if self.ema is not None:
            self.ema.update(self.raw, self.global_step)
        self.stats.add(totals)
        if self.logger is not None:
            self.logger.step(self.global_step, totals[0].item() / totals[3].item(), self.optimizer.param_groups[0]["lr"],
                             totals[3].item() / (time.perf_counter() - started))

    def end_epoch(self) -> None:
        """BatchNorm buffers of the average from the live model, evaluation, selection, metrics, then a checkpoint."""
        self.group.broadcast_from_main(self.raw.buffers())
        if self.ema is not None:
            self.ema.copy_buffers(self.raw)
        record: dict[str, Any] = {"epoch": self.epoch, "global_step": self.global_step, "lr": self.epoch_lr,
                                  "momentum": self.epoch_momentum, **self.stats.train_record(),
                                  "epoch_seconds": round(time.time() - self.epoch_start, 2)}
        record.update(epoch_accuracies(self.cfg, self.released, self.data, self.test, self.epoch, self.group))
        self._select(record)
        if self.group.is_main:
            append_metrics(self.run_dir / "metrics.jsonl", record)
            plot_metrics(read_metrics(self.run_dir / "metrics.jsonl"), self.run_dir / "curves.png")
            print(epoch_line(record, self.cfg.epochs), file=sys.stderr)
            if self.logger is not None:
                self.logger.epoch({**record, "images_per_second": self.stats.n / max(record["epoch_seconds"], 1e-9)})
        self.epoch, self.start_step, self.stats = self.epoch + 1, 0, EpochStats()
        self.save_checkpoint(self.epoch, 0)

    def _select(self, record: dict) -> None:
        """Write model-best if this epoch's held-out robust accuracy is the best so far (ties: the later epoch)."""
        if "holdout_robust_acc" in record and record["holdout_robust_acc"] >= self.best["holdout_robust_acc"]:
            self.best = {"holdout_robust_acc": record["holdout_robust_acc"],
                         "holdout_clean_acc": record["holdout_clean_acc"], "epoch": self.epoch}
            if self.group.is_main:
                save_model_dir(self.released, self.run_dir / "model-best",
                               final_model_config(self.cfg, selected="best", **self.best), overwrite=True)

    def finish(self) -> None:
        """Rank 0 writes the last epoch's model (weights-last); every rank waits for it."""
        if self.group.is_main:
            save_model_dir(self.released, self.run_dir / "model",
                           final_model_config(self.cfg, selected="last", best=self.best), overwrite=True)
        self.group.barrier()
