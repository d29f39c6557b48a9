"""Live training logs: TensorBoard's SummaryWriter and, optionally, Weights & Biases, through one hook.

Rank 0 logs, per optimiser step, the loss, learning rate and images per
second, and per epoch the epoch's metrics record (training loss and
accuracies, clean and PGD accuracy on the held-out and test splits, lr,
momentum, epoch time and throughput). TensorBoard writes into ``log_dir``
(by default ``RUN_DIR/tensorboard`` when tensorboard is installed); a resumed
run purges the events after its checkpoint, so every step is logged once.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError

AUTO = "auto"
OFF = "off"
TENSORBOARD_DIR = "tensorboard"
# metrics.jsonl keys -> TensorBoard tags
EPOCH_TAGS = {"train_loss": "train/loss", "train_clean_acc": "train/clean_acc", "train_adv_acc": "train/adv_acc",
              "holdout_clean_acc": "holdout/clean_acc", "holdout_robust_acc": "holdout/pgd_acc",
              "test_clean_acc": "test/clean_acc", "test_robust_acc": "test/pgd_acc", "lr": "epoch/lr",
              "momentum": "epoch/momentum", "epoch_seconds": "epoch/seconds",
              "images_per_second": "epoch/images_per_second"}


def tensorboard_available() -> bool:
    """Whether tensorboard (the ``tensorboard`` extra) is installed."""
    return importlib.util.find_spec("tensorboard") is not None


def resolve_log_dir(log_dir: str | Path | None, run_dir: Path) -> Path | None:
    """The TensorBoard folder: ``auto`` (or None) -> RUN_DIR/tensorboard where tensorboard is installed,
    ``off`` -> none, else the folder given (which then needs tensorboard)."""
    if log_dir is None or str(log_dir) == AUTO:
        return run_dir / TENSORBOARD_DIR if tensorboard_available() else None
    if str(log_dir) == OFF:
        return None
    if not tensorboard_available():
        raise ConfigError(f"--log-dir {log_dir} needs tensorboard: pip install 'score-zoo[tensorboard]' "
                          "(or --log-dir off)")
    return Path(log_dir)


class RunLogger:
    """TensorBoard (``log_dir``) and W&B (``wandb_project``) writers of one run; a no-op without either."""

    def __init__(self, log_dir: Path | None, wandb_project: str | None, config: dict[str, Any], run_dir: Path,
                 first_step: int):
        self.writer = self.wandb = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(log_dir), purge_step=first_step or None)
        if wandb_project:
            if importlib.util.find_spec("wandb") is None:
                raise ConfigError(f"--wandb {wandb_project} needs wandb: pip install wandb")
            import wandb

            run_id = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:16]  # a resumed run continues it
            self.wandb = wandb.init(project=wandb_project, name=run_dir.name, dir=str(run_dir), config=config,
                                    id=run_id, resume="allow")

    def _log(self, values: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def step(self, global_step: int, loss: float, lr: float, images_per_second: float) -> None:
        """One optimiser step (``global_step`` counted from 1)."""
        self._log({"step/loss": loss, "step/lr": lr, "step/images_per_second": images_per_second}, global_step)

    def epoch(self, record: dict[str, Any]) -> None:
        """An epoch's metrics record, at its last global step; flushed to disk."""
        self._log({tag: float(record[key]) for key, tag in EPOCH_TAGS.items() if record.get(key) is not None},
                  int(record["global_step"]))
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.wandb is not None:
            self.wandb.finish()
