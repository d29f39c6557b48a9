"""The result file: RobustBench's model_info keys plus one ``evaluation`` object.

Key names here are a contract (leaderboards, merging and the Hub's model cards
read them); change them only with a new ``format``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .fileio import atomic_write_json, read_json

RESULT_FORMAT = "score-harness/3"
FORMAT_2 = "score-harness/2"  # AutoAttack called per batch; still read (upgraded on load)
FORMAT_1 = "score-harness/1"  # one eps, no curve, no numerics, per batch; still read (upgraded on load)
# How the examples were attacked: "pooled" (format 3): each segment as one bare AutoAttack call, the
# survivors of every attack pooled over the segment; "per-batch" (formats 1 and 2): one call per batch.
POOLED, PER_BATCH = "pooled", "per-batch"
EVALUATION_KEY = "evaluation"

# Outcome of one example: None = robust after every attack at every eps, "clean" =
# misclassified without attack, else the first attack that fooled the model, at the
# smallest eps where it was fooled (``broken_at``).
Outcome = str | None
# broken_at of an example misclassified without attack.
CLEAN_BREAK = "0"


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
    external: str | None = None      # the best known robust accuracy, when a stronger evaluation lowers it
    footnote: str | None = None
    unreliable: bool = False


# The keys every result has, in order; ``external`` only where a stronger evaluation set it (as in RobustBench).
MODEL_INFO_KEYS = tuple(f.name for f in dataclasses.fields(ModelInfo) if f.name != "external")
# Fields a user may set (the rest are measured).
DESCRIPTIVE_KEYS = ("link", "name", "authors", "additional_data", "number_forward_passes", "venue",
                    "architecture", "reported", "footnote", "unreliable")


NOT_A_CLAIM = "this robust accuracy is not a robustness claim"   # said wherever the indicators warn

@dataclass
class Evaluation:
    """Provenance of a result: what was run, how, on what, and what it gave."""

    format: str
    model: dict                      # {"spec": ..., "kind": zoo|model-dir|robustbench|callable|module}
    dataset: str
    threat_model: str
    eps: float                       # the eps of the model_info keys (the standard budget if evaluated, else the largest)
    eps_text: str
    n_examples: int
    data: dict                       # {"source": the file or folder read, "official": bool, "sha256", "leaderboard_eligible"}
    autoattack: dict                 # {"version", "attacks", "n_iter"}
    seed: int
    batch_size: int
    clean_accuracy: float            # percent
    robust_accuracy: float           # percent, after all attacks, at ``eps``
    robust_accuracy_after: dict      # attack -> percent, in attack order, at ``eps``
    versions: dict                   # score-zoo, torch, pyautoattack, python
    device: str
    weights_sha256: str | None
    started_at: str
    duration_s: float
    warnings: list = field(default_factory=list)   # [{"source", "message", "count"}]
    shard: dict | None = None        # {"index", "count", "start", "stop"} for a shard file
    # {"start": int, "outcome": [Outcome, ...], "broken_at": [eps_text | CLEAN_BREAK | None, ...]}
    per_example: dict = field(default_factory=dict)
    # one point per evaluated eps, increasing: {"eps", "eps_text", "robust_accuracy", "robust_accuracy_after"}
    curve: list = field(default_factory=list)
    numerics: dict = field(default_factory=dict)     # devices.Numerics fields
    execution: dict = field(default_factory=dict)    # {"workers", "threads_per_worker", "processes"}
    randomized: bool = False                         # AutoAttack flagged the model as randomized
    pooling: str = POOLED
    # [[start, stop], ...]: the example ranges attacked as separate AutoAttack calls (one, unless the
    # evaluation grew to more images, or for merged shards one per shard)
    segments: list = field(default_factory=list)
    adversarial: dict | None = None                  # {"path", "sha256", "count"} of --save-adversarial
    extra_attacks: dict | None = None                # attacks beyond AutoAttack (see ``beyond``)
    repeats: dict | None = None                      # --repeats K of a randomized defense (see ``repeats``)
    bpda: list | None = None                         # modules attacked through with BPDA (harness.bpda)
    # attack-failure indicators: {"verdict", "n_examples", "iterations", "indicators": [records]} (harness.diagnostics);
    # merged shards: {"verdict": the worst, "shards": [each shard's section or None], "unchecked_shards": [index, ...]}
    diagnostics: dict | None = None
    # image passes and seconds per stage, check and the indicators: {"unit", "stages", "checks", "diagnostics",
    # "total"} (harness.cost); None in results written before it was counted
    cost: dict | None = None

    def config_key(self) -> dict:
        """The fields that must agree between shards of one evaluation."""
        key = {k: getattr(self, k) for k in ("model", "dataset", "threat_model", "eps", "n_examples", "data",
                                             "autoattack", "seed", "batch_size", "weights_sha256", "numerics",
                                             "pooling", "bpda")}
        key["curve"] = self.eps_list()
        return key

    def eps_list(self) -> list[tuple[float, str]]:
        """The evaluated budgets, increasing, as (value, text)."""
        return [(p["eps"], p["eps_text"]) for p in self.curve]

    def diagnostics_verdict(self) -> str | None:
        """The attack-failure indicators' verdict, "ok" or "warning"; None when they were not run."""
        return (self.diagnostics or {}).get("verdict")

    def fired_indicators(self) -> list[str]:
        """The indicators that warn (over every shard of a merged result), in order; [] when none or not run."""
        names = [r["name"] for part in self._checked_diagnostics() for r in part["indicators"] if r["verdict"] == "warning"]
        return list(dict.fromkeys(names))

    def diagnostics_text(self) -> str:
        """The verdict in words: "ok", "warning (NAMES)" or "not checked" (and merged shards left unchecked)."""
        verdict = self.diagnostics_verdict()
        if verdict is None:
            return "not checked"
        text = f"{verdict} ({', '.join(self.fired_indicators())})" if verdict == "warning" else verdict
        unchecked = self.diagnostics.get("unchecked_shards")
        return text + (f"; shard(s) {', '.join(map(str, unchecked))} not checked" if unchecked else "")

    def _checked_diagnostics(self) -> list[dict]:
        """The diagnostics sections behind the verdict: this result's, or each checked shard's of a merged one."""
        d = self.diagnostics
        if not d:
            return []
        return [s for s in d["shards"] if s] if "shards" in d else [d]

    def robust_flags(self, eps_text: str | None = None) -> list[bool]:
        """Per example: robust at ``eps_text`` (default: the result's ``eps``)?"""
        order = {text: j for j, (_, text) in enumerate(self.eps_list())}
        j = order[eps_text or self.eps_text]
        return [o != "clean" and (b is None or order[b] > j)
                for o, b in zip(self.per_example["outcome"], self.per_example["broken_at"])]


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
        if d.get("external") is None:   # RobustBench ranks by `external` wherever the key exists
            del d["external"]
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
        if not isinstance(ev, dict) or ev.get("format") not in (RESULT_FORMAT, FORMAT_2, FORMAT_1):
            raise ConfigError(f"{origin} has evaluation format {ev.get('format') if isinstance(ev, dict) else None!r}; "
                              f"this harness reads {RESULT_FORMAT}, {FORMAT_2} and {FORMAT_1}")
        try:
            info = ModelInfo(**{k: data[k] for k in (*MODEL_INFO_KEYS, "external") if k in data})
            if ev["format"] == FORMAT_1:
                ev = _upgrade_format_1(ev)
            if ev["format"] == FORMAT_2:
                ev = {**ev, "format": RESULT_FORMAT, "pooling": PER_BATCH}
            evaluation = Evaluation(**ev)
        except (TypeError, KeyError) as e:
            raise ConfigError(f"{origin} has unexpected or missing fields ({e})") from None
        return cls(info, evaluation)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "EvaluationResult":
        """Read a result file written by ``to_json``."""
        return cls.from_dict(read_json(path, "result file"), str(path))


def as_float(value) -> float | None:
    """A model_info figure ("57.80" or 57.8) as a float; None when absent or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def percent(n_correct: int, n: int) -> float:
    """Accuracy in percent, rounded to 4 decimals (exact enough for any n <= 10^6)."""
    return round(100.0 * n_correct / n, 4) if n else 0.0


def fmt_acc(value: float) -> str:
    """RobustBench's accuracy string: two decimals."""
    return f"{value:.2f}"


def curve_points(outcome: list[Outcome], broken_at: list[str | None], eps: list[tuple[float, str]],
                 attacks: list[str]) -> tuple[float, list[dict]]:
    """Clean accuracy % and, per eps, robust accuracy % (overall and after each attack)."""
    n = len(outcome)
    order = {text: j for j, (_, text) in enumerate(eps)}
    clean = sum(o != "clean" for o in outcome)
    points = []
    for j, (value, text) in enumerate(eps):
        remaining = clean - sum(1 for o, b in zip(outcome, broken_at) if o != "clean" and b is not None
                                and order[b] < j)
        after = {}
        for attack in attacks:
            remaining -= sum(1 for o, b in zip(outcome, broken_at) if b == text and o == attack)
            after[attack] = percent(remaining, n)
        points.append({"eps": value, "eps_text": text, "robust_accuracy": percent(remaining, n),
                       "robust_accuracy_after": after})
    return percent(clean, n), points


def _upgrade_format_1(ev: dict) -> dict:
    """A format-1 evaluation (one eps) in the current layout."""
    per_example = dict(ev.get("per_example") or {})
    outcome = per_example.get("outcome", [])
    per_example["broken_at"] = [None if o is None else CLEAN_BREAK if o == "clean" else ev["eps_text"] for o in outcome]
    curve = [{"eps": ev["eps"], "eps_text": ev["eps_text"], "robust_accuracy": ev["robust_accuracy"],
              "robust_accuracy_after": ev["robust_accuracy_after"]}]
    return {**ev, "format": FORMAT_2, "per_example": per_example, "curve": curve}
