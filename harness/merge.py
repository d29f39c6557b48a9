"""Combine shard results (``--shard K/N``) into one result.

Each shard was attacked as its own AutoAttack call (its survivors pooled over
its own examples), so the merged result lists one segment per shard.
"""

from __future__ import annotations

import os
from pathlib import Path

from zoo.errors import ConfigError
from zoo.results import Evaluation, EvaluationResult

from .assembly import assemble, combined_fields
from .beyond import merge_extra
from .diagnostics import OK, WARNING


def merge_results(shards: list[EvaluationResult], names: list[str] | None = None) -> EvaluationResult:
    """Merge shards of one evaluation; refuse mismatched configurations, overlaps and gaps."""
    if not shards:
        raise ConfigError("no shard files to merge")
    names = names or [f"shard {i}" for i in range(len(shards))]
    for name, s in zip(names, shards):
        if s.evaluation.shard is None:
            raise ConfigError(f"{name} is not a shard result (it has no shard information)")
    first = shards[0].evaluation
    for name, s in zip(names[1:], shards[1:]):
        a, b = first.config_key(), s.evaluation.config_key()
        diff = [k for k in a if a[k] != b[k]]
        if diff:
            raise ConfigError(f"{name} is from a different evaluation than {names[0]} (differs in: {', '.join(diff)})")
    order = sorted(range(len(shards)), key=lambda i: shards[i].evaluation.shard["start"])
    pos, outcomes, broken_at = 0, [], []
    for i in order:
        sh = shards[i].evaluation.shard
        if sh["start"] < pos:
            raise ConfigError(f"{names[i]} overlaps another shard (examples {sh['start']}..{pos - 1} appear twice)")
        if sh["start"] > pos:
            raise ConfigError(f"examples {pos}..{sh['start'] - 1} are missing: no shard covers them")
        part = shards[i].evaluation.per_example
        size = sh["stop"] - sh["start"]
        if len(part.get("outcome", [])) != size or len(part.get("broken_at", [])) != size:
            raise ConfigError(f"{names[i]} holds {len(part.get('outcome', []))} per-example results for examples "
                              f"{sh['start']}..{sh['stop'] - 1}")
        outcomes += part["outcome"]
        broken_at += part["broken_at"]
        pos = sh["stop"]
    if pos != first.n_examples:
        raise ConfigError(f"examples {pos}..{first.n_examples - 1} are missing: no shard covers them")
    fields = combined_fields(shards)
    fields.update(started_at=min(s.evaluation.started_at for s in shards),
                  device="; ".join(sorted({s.evaluation.device for s in shards})) + f" ({len(shards)} shards)",
                  shard=None, segments=[seg for i in order for seg in shards[i].evaluation.segments if seg[1] > seg[0]],
                  extra_attacks=merge_extra([shards[i].evaluation.extra_attacks for i in order],
                                            [names[i] for i in order], outcomes),
                  diagnostics=merge_diagnostics([shards[i].evaluation for i in order]))
    return assemble(None, None, outcome=outcomes, broken_at=broken_at, eps_list=first.eps_list(),
                    randomized=any(s.evaluation.randomized for s in shards), per_example_start=0,
                    base=shards[0].model_info, **fields)


def merge_diagnostics(shards: list[Evaluation]) -> dict | None:
    """Every shard's indicators (in example order) under the worst verdict; None when no shard ran them.

    ``unchecked_shards`` names the shards with examples but no indicators (run with ``--no-diagnostics``).
    """
    sections = [ev.diagnostics for ev in shards]
    checked = [ev.diagnostics_verdict() for ev in shards if ev.diagnostics_verdict() is not None]
    if not checked:
        return None
    return {"verdict": WARNING if WARNING in checked else OK, "shards": sections,
            "unchecked_shards": [ev.shard["index"] for ev in shards
                                 if ev.diagnostics is None and ev.shard["stop"] > ev.shard["start"]]}


def merge_files(paths: list[str | os.PathLike], out: str | os.PathLike | None = None) -> EvaluationResult:
    """Read shard files, merge them and (with ``out``) write the result atomically (and its curve plots)."""
    if out is not None and Path(out).resolve() in {Path(p).resolve() for p in paths}:
        raise ConfigError(f"--out {out} is one of the shards to merge and would be overwritten; choose another file")
    result = merge_results([EvaluationResult.from_json(p) for p in paths], [str(p) for p in paths])
    if out is not None:
        result.to_json(out)
        if len(result.evaluation.curve) > 1:
            from .curves import write_result_plots

            write_result_plots(result, out)
    return result
