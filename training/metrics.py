"""Per-epoch metrics: an epoch's training totals, a JSONL log of the records, a one-line summary, a PNG plot."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from zoo.fileio import atomic_file, atomic_write_text


def batch_totals(loss: torch.Tensor, logits_clean: torch.Tensor | None, logits_adv: torch.Tensor,
                 y: torch.Tensor) -> torch.Tensor:
    """[loss x n, clean hits, adversarial hits, n] of one batch (float64, to be summed over ranks).

    Hits are NaN where they do not exist: soft labels (CutMix) or an objective without clean logits.
    """
    hard = y.dim() == 1
    nan = torch.tensor(float("nan"), device=y.device)
    return torch.stack([
        loss.detach().float() * len(y),
        (logits_clean.argmax(1) == y).sum().float() if logits_clean is not None and hard else nan,
        (logits_adv.argmax(1) == y).sum().float() if hard else nan,
        torch.tensor(float(len(y)), device=y.device)]).double()


@dataclass
class EpochStats:
    """The sums of :func:`batch_totals` over the steps of an epoch so far (saved in checkpoints)."""

    loss: float = 0.0
    clean: float = 0.0
    adv: float = 0.0
    n: float = 0.0

    def add(self, totals: torch.Tensor) -> None:
        self.loss += totals[0].item()
        self.clean += totals[1].item()
        self.adv += totals[2].item()
        self.n += totals[3].item()

    def as_dict(self) -> dict[str, float]:
        return {"loss": self.loss, "clean": self.clean, "adv": self.adv, "n": self.n}

    def train_record(self) -> dict[str, float | None]:
        """Mean loss and accuracies in % (None where the hits do not exist) of the epoch's metrics record."""
        return {"train_loss": self.loss / self.n, "train_clean_acc": _percent(self.clean, self.n),
                "train_adv_acc": _percent(self.adv, self.n)}


def _percent(count: float, n: float) -> float | None:
    return None if not math.isfinite(count) or not n else 100.0 * count / n


def epoch_line(record: dict, epochs: int) -> str:
    """One line summing up an epoch's record, e.g. "epoch 3/10: loss 1.2345, train adv acc 40.1%, held-out ..."."""
    parts = [f"epoch {record['epoch'] + 1}/{epochs}: loss {record['train_loss']:.4f}"]
    if record["train_adv_acc"] is not None:
        parts.append(f"train adv acc {record['train_adv_acc']:.1f}%")
    if "holdout_robust_acc" in record:
        parts.append(f"held-out clean {record['holdout_clean_acc']:.1f}% / PGD-CW {record['holdout_robust_acc']:.1f}%")
    if "test_clean_acc" in record:
        parts.append(f"test clean {record['test_clean_acc']:.1f}%" + (
            f" / PGD-CW {record['test_robust_acc']:.1f}%" if "test_robust_acc" in record else ""))
    return ", ".join(parts)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Return the records of a metrics.jsonl (a torn last line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_metrics(path: str | os.PathLike, before_epoch: int) -> None:
    """Keep only the records of epochs < ``before_epoch`` (used when a run resumes)."""
    kept = [r for r in read_metrics(path) if r.get("epoch", 0) < before_epoch]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def append_metrics(path: str | os.PathLike, record: dict) -> None:
    """Append one record as a JSON line."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def plot_metrics(records: list[dict], path: str | os.PathLike) -> None:
    """Draw training loss and train/held-out accuracies per epoch into a PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] + 1 for r in records]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r["train_loss"] for r in records], marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    for key, label in (("train_clean_acc", "train clean"), ("train_adv_acc", "train adversarial"),
                       ("holdout_clean_acc", "held-out clean (EMA)"), ("holdout_robust_acc", "held-out PGD-CW (EMA)")):
        pts = [(r["epoch"] + 1, r[key]) for r in records if r.get(key) is not None]
        if pts:
            ax_acc.plot(*zip(*pts), marker="o", label=label)
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_acc.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100)
    plt.close(fig)
