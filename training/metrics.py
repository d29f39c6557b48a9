"""Per-epoch metrics: a JSONL log and a PNG plot of the curves."""

from __future__ import annotations

import json
import os
from pathlib import Path

from zoo.fileio import atomic_path, atomic_write_text


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
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
