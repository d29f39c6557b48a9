"""Re-evaluate a prefix of a result, check the claimed robust accuracy against it and re-check the
attack-failure indicators (``harness.diagnostics``) on that prefix."""

from __future__ import annotations

import numbers
import os
from dataclasses import asdict, dataclass

from scipy.stats import beta

from zoo.errors import ConfigError

from zoo.results import Evaluation, EvaluationResult

from .diagnostics import WARNING
from .engine.numerics import numerics_from_record
from .evaluation import evaluate


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact two-sided binomial confidence interval for k successes in n trials (fractions)."""
    alpha = 1 - confidence
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def consistent_with(claimed: float, k: int, n: int, confidence: float = 0.95) -> tuple[tuple[float, float], bool]:
    """The Clopper-Pearson interval of k/n in percent, and whether the ``claimed`` percentage lies inside it."""
    low, high = clopper_pearson(k, n, confidence)
    return (100 * low, 100 * high), 100 * low - 1e-9 <= claimed <= 100 * high + 1e-9


@dataclass
class VerifyReport:
    """Outcome of ``verify``: percentages, the interval used, the verdict, and the indicators recorded and re-checked.

    ``verified``: the claim is consistent, neither indicator verdict warns and a recorded verdict is the
    re-checked one.
    """

    result: str
    claimed_robust_acc: float
    n_examples: int
    n_robust: int
    measured_robust_acc: float
    interval: tuple[float, float]
    confidence: float
    method: str
    per_example_agreement: float
    consistent: bool
    numerics: dict         # the layout and precision of the re-evaluation (the original run's)
    recorded_diagnostics: str     # the result's indicator verdict in words ("not checked" when it has none)
    rechecked_diagnostics: str    # the verdict of the indicators re-run on the re-evaluated prefix
    diagnostics_problems: list[str]   # a recorded or re-checked warning, a re-checked verdict that differs

    @property
    def verified(self) -> bool:
        return self.consistent and not self.diagnostics_problems

    def to_dict(self) -> dict:
        return {**asdict(self), "verified": self.verified}

    def summary(self) -> str:
        verdict = "INCONSISTENT" if not self.consistent else "CONSISTENT" if self.verified else "FLAGGED"
        return (f"{verdict}: claimed robust accuracy {self.claimed_robust_acc:.2f}%; re-evaluated "
                f"{self.n_robust}/{self.n_examples} = {self.measured_robust_acc:.2f}% on the first {self.n_examples} "
                f"examples, {self.confidence:.0%} {self.method} interval [{self.interval[0]:.2f}%, "
                f"{self.interval[1]:.2f}%]; per-example agreement {self.per_example_agreement:.1%}; attack-failure "
                f"indicators recorded {self.recorded_diagnostics}, re-checked {self.rechecked_diagnostics}"
                + "".join(f"\n{verdict}: {p}" for p in self.diagnostics_problems))


def diagnostics_problems(recorded: Evaluation, rechecked: Evaluation) -> list[str]:
    """What the indicators say against the claim: a recorded warning, a re-checked one, verdicts that differ."""
    old, new = recorded.diagnostics_verdict(), rechecked.diagnostics_verdict()
    out = []
    if old == WARNING:
        out.append(f"the result's own indicators warn ({', '.join(recorded.fired_indicators())}): its robust "
                   "accuracy is not a robustness claim")
    if new == WARNING:
        out.append(f"the re-checked indicators warn ({', '.join(rechecked.fired_indicators())})")
    if old is not None and new != old:
        out.append(f"the re-checked verdict ({new or 'not checked'}) differs from the recorded one ({old})")
    return out


def verify(result_path: str | os.PathLike, n_examples: int | None = None, model=None, device: str | None = None,
           data_dir=None, confidence: float = 0.95, progress: bool = True, workers: int | None = None) -> VerifyReport:
    """Re-run the evaluation of ``result_path`` on its first ``n_examples`` (default min(n, 500)).

    Consistent means the claimed robust accuracy (at the result's ``eps``) lies
    inside the Clopper-Pearson interval of the re-evaluated prefix and the
    weights are the same. A curve is re-evaluated at all its eps (it is nested),
    with the original run's layout and precision settings. The prefix is attacked
    as one AutoAttack call of its own, so its survivors are pooled over fewer
    images than in the original: per-example agreement is 100% only when the
    prefix is the whole evaluation. The attack-failure indicators run again on the
    prefix (its first 32 examples, through the result's BPDA modules) and are
    compared with the recorded ones (see ``VerifyReport.verified``).
    """
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not 0 < confidence < 1:
        raise ConfigError(f"--confidence must be a probability between 0 and 1 (exclusive), e.g. 0.95; got {confidence!r}")
    claimed = EvaluationResult.from_json(result_path)
    ev = claimed.evaluation
    if ev.shard is not None:
        raise ConfigError(f"{result_path} is a shard; merge the shards first (score-harness merge)")
    spec = model or ev.model["spec"]
    if model is None and ev.model["kind"] == "module":
        raise ConfigError(f"{result_path} was made from a Python object; pass the model with --model SPEC")
    n = min(ev.n_examples, 500) if n_examples is None else n_examples
    if not 1 <= n <= ev.n_examples:
        raise ConfigError(f"--n-examples must be between 1 and {ev.n_examples} (the result's n_examples), got {n}")
    if data_dir is None and ev.data["source"] != "bundled-subset":
        data_dir = ev.data["source"]
    aa = ev.autoattack
    fresh = evaluate(spec, ev.dataset, ev.threat_model, [text for _, text in ev.eps_list()], n,
                     batch_size=ev.batch_size, version=aa["version"],
                     attacks=aa["attacks"] if aa["version"] == "custom" else None, seed=ev.seed, device=device,
                     data_dir=data_dir, n_iter=aa.get("n_iter"), progress=progress, workers=workers,
                     bpda=ev.bpda or (), diagnostics=True, **numerics_from_record(ev.numerics))
    if fresh.evaluation.weights_sha256 != ev.weights_sha256:
        raise ConfigError(f"the model's weights (sha256 {fresh.evaluation.weights_sha256}) differ from the ones in "
                          f"{result_path} ({ev.weights_sha256})")
    new = fresh.evaluation.robust_flags()
    old = ev.robust_flags()[:n]
    k = sum(new)
    agree = sum(a == b for a, b in zip(new, old)) / n if len(old) == n else float("nan")
    claim = ev.robust_accuracy
    interval, consistent = consistent_with(claim, k, n, confidence)
    return VerifyReport(str(result_path), claim, n, k, 100.0 * k / n, interval, confidence,
                        "Clopper-Pearson", agree, consistent, fresh.evaluation.numerics, ev.diagnostics_text(),
                        fresh.evaluation.diagnostics_text(), diagnostics_problems(ev, fresh.evaluation))
