"""The result file: RobustBench's model_info keys plus one ``evaluation`` object.

Key names here are a contract (leaderboards, merging and the Hub's model cards
read them); change them only with a new ``format``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from zoo.errors import ConfigError
from zoo.fileio import atomic_write_json, read_json

RESULT_FORMAT = "score-harness/1"
EVALUATION_KEY = "evaluation"

# Outcome of one example: None = robust after every attack, "clean" = misclassified
# without attack, else the name of the first attack that fooled the model.
Outcome = str | None


@dataclass
class ModelInfo:
    """RobustBench's model_info fields, in RobustBench's order and formats."""

    link: str = ""
    name: str = ""
    authors: str = ""
    additional_data: bool = False
    number_forward_passes: int = 1
    dataset: str = "cifar10"
    venue: str = ""
    architecture: str = ""
    eps: str = "8/255"
    clean_acc: str = ""
    reported: str = ""
    autoattack_acc: str = ""
    footnote: str | None = None
    unreliable: bool = False


MODEL_INFO_KEYS = tuple(f.name for f in dataclasses.fields(ModelInfo))
# Fields a user may set (the rest are measured).
DESCRIPTIVE_KEYS = ("link", "name", "authors", "additional_data", "number_forward_passes", "venue",
                    "architecture", "reported", "footnote", "unreliable")


@dataclass
class Evaluation:
    """Provenance of a result: what was run, how, on what, and what it gave."""

    format: str
    model: dict                      # {"spec": ..., "kind": zoo|model-dir|robustbench|callable|module}
    dataset: str
    threat_model: str
    eps: float
    eps_text: str
    n_examples: int
    data: dict                       # {"source": ..., "sha256": ..., "leaderboard_eligible": bool}
    autoattack: dict                 # {"version", "attacks", "n_iter"}
    seed: int
    batch_size: int
    clean_accuracy: float            # percent
    robust_accuracy: float           # percent, after all attacks
    robust_accuracy_after: dict      # attack -> percent, in attack order
    versions: dict                   # score-zoo, torch, pyautoattack, python
    device: str
    weights_sha256: str | None
    started_at: str
    duration_s: float
    warnings: list = field(default_factory=list)   # [{"source", "message", "count"}]
    shard: dict | None = None        # {"index", "count", "start", "stop"} for a shard file
    per_example: dict = field(default_factory=dict)  # {"start": int, "outcome": [Outcome, ...]}

    def config_key(self) -> dict:
        """The fields that must agree between shards of one evaluation."""
        return {k: getattr(self, k) for k in ("model", "dataset", "threat_model", "eps", "n_examples", "data",
                                              "autoattack", "seed", "batch_size", "weights_sha256")}


@dataclass
class EvaluationResult:
    """One evaluation: ``model_info`` (RobustBench) and ``evaluation`` (provenance)."""

    model_info: ModelInfo
    evaluation: Evaluation

    @property
    def clean_acc(self) -> float:
        """Clean accuracy in percent."""
        return self.evaluation.clean_accuracy

    @property
    def robust_acc(self) -> float:
        """Robust (AutoAttack) accuracy in percent."""
        return self.evaluation.robust_accuracy

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self.model_info)
        d[EVALUATION_KEY] = dataclasses.asdict(self.evaluation)
        return d

    def to_json(self, path: str | os.PathLike) -> None:
        """Write the result atomically."""
        atomic_write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict, origin: str = "result") -> "EvaluationResult":
        if not isinstance(data, dict) or EVALUATION_KEY not in data:
            raise ConfigError(f"{origin} is not a score-harness result (no '{EVALUATION_KEY}' object)")
        ev = data[EVALUATION_KEY]
        if not isinstance(ev, dict) or ev.get("format") != RESULT_FORMAT:
            raise ConfigError(f"{origin} has evaluation format {ev.get('format') if isinstance(ev, dict) else None!r}, "
                              f"expected {RESULT_FORMAT}")
        try:
            info = ModelInfo(**{k: data[k] for k in MODEL_INFO_KEYS if k in data})
            evaluation = Evaluation(**ev)
        except TypeError as e:
            raise ConfigError(f"{origin} has unexpected or missing fields ({e})") from None
        return cls(info, evaluation)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "EvaluationResult":
        """Read a result file written by ``to_json``."""
        return cls.from_dict(read_json(path, "result file"), str(path))


def percent(n_correct: int, n: int) -> float:
    """Accuracy in percent, rounded to 4 decimals (exact enough for any n <= 10^6)."""
    return round(100.0 * n_correct / n, 4) if n else 0.0


def fmt_acc(value: float) -> str:
    """RobustBench's accuracy string: two decimals."""
    return f"{value:.2f}"


def accuracies(outcomes: list[Outcome], attacks: list[str]) -> tuple[float, dict[str, float], float]:
    """Return (clean %, {attack: robust % after it}, final robust %) from per-example outcomes."""
    n = len(outcomes)
    clean = sum(o != "clean" for o in outcomes)
    after, remaining = {}, clean
    for attack in attacks:
        remaining -= sum(o == attack for o in outcomes)
        after[attack] = percent(remaining, n)
    return percent(clean, n), after, percent(remaining, n)
