"""Image passes in every result: the counter, the work of one bare AutoAttack call, resume and merge, --profile,
the leaderboard's detail.

The reference for the attacks' work is pyautoattack alone: one ``run_standard_evaluation`` call on the same images
with the same batch size, its model wrapped in a module that counts what reaches it (its own tally, forward and
backward), so "the same answers" (tests/test_harness_pooled.py) becomes "the same work".
"""

from __future__ import annotations

import json
import re
import warnings

import pytest
import torch
import torch.nn as nn
from click.testing import CliRunner

from harness.cli import main
from harness.data import load_tensors
from harness.engine.passes import KINDS, counting_passes
from harness.evaluation import evaluate
from harness.leaderboard import leaderboard
from harness.merge import merge_files
from harness_helpers import bare_autoattack, centroid_model
from zoo.errors import ConfigError
from zoo.results import EvaluationResult

N, BATCH = 12, 5
KW = dict(n_examples=N, batch_size=BATCH, version="custom", attacks=["apgd-ce", "apgd-t"], n_iter=4, seed=1,
          progress=False, workers=1, device="cpu")


def _evaluate(model=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(model if model is not None else centroid_model(), **{**KW, **kw})


def _passes(part: dict) -> dict:
    return {k: part[k] for k in KINDS}


def test_the_counter_counts_images_not_calls_with_and_without_grad_and_each_backward():
    """Breaks when the hook counts calls instead of images, ignores grad mode, or counts a backward at the forward
    (the last call's output is never backpropagated; one output is backpropagated twice)."""
    model = nn.Linear(4, 3)
    with counting_passes(model, "main") as meter:
        with torch.no_grad():
            model(torch.zeros(3, 4))
            model(torch.zeros(5, 4))
        model(torch.zeros(4, 4)).sum().backward()
        twice = model(torch.zeros(2, 4)).sum()
        twice.backward(retain_graph=True)
        twice.backward()
        with meter.part("check"):
            model(torch.zeros(7, 4))
    model(torch.zeros(9, 4))    # after the block: not counted
    parts = meter.parts()
    assert _passes(parts["main"]) == {"forward": 3 + 5, "forward_grad": 4 + 2, "backward": 4 + 2 + 2}
    assert _passes(parts["check"]) == {"forward": 0, "forward_grad": 7, "backward": 0}


class _Tally(nn.Module):
    """The model, with a tally of the images of every forward (with or without grad) and every backward that
    reaches its output: the reference count, independent of the harness's hooks."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.tally = dict.fromkeys(KINDS, 0)

    def forward(self, x):
        self.tally["forward_grad" if torch.is_grad_enabled() else "forward"] += len(x)
        out = self.inner(x)
        return _CountBackward.apply(out, self.tally) if out.requires_grad else out


class _CountBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out, tally):
        ctx.tally = tally
        return out.view_as(out)

    @staticmethod
    def backward(ctx, grad):
        ctx.tally["backward"] += len(grad)
        return grad, None


@pytest.mark.parametrize("version, attacks, n_iter", [("custom", ["apgd-ce", "apgd-t"], 4), ("standard", None, 2)])
def test_the_attacks_do_the_passes_of_one_bare_autoattack_call(version, attacks, n_iter):
    """The stages plus AutoAttack's own checks are the passes of one bare call, kind by kind; the harness's
    checks (the first-chunk check, the second classification) are apart. Breaks when the hook counts calls, when
    the second classification counts as attack work (its ``meter.part("determinism")`` dropped in ``run_task``),
    or when AutoAttack's dynamic check runs without gradients (its ``torch.enable_grad()`` dropped)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, N)
        reference = _Tally(centroid_model())
        bare_autoattack(reference, x, y, version=version, attacks=attacks, n_iter=n_iter, seed=1, batch_size=BATCH)
    cost = _evaluate(version=version, attacks=attacks, n_iter=n_iter, diagnostics=False).evaluation.cost
    attack_work = [*cost["stages"], cost["checks"]["autoattack"]]
    assert {k: sum(part[k] for part in attack_work) for k in KINDS} == reference.tally
    assert cost["stages"][0]["images"] == N and [s["stage"] for s in cost["stages"]][0] == "clean"
    attacked = sum(s["images"] for s in cost["stages"][1:])
    assert _passes(cost["checks"]["determinism"]) == {"forward": attacked, "forward_grad": 0, "backward": 0}
    assert _passes(cost["checks"]["model"]) == {"forward": BATCH, "forward_grad": 0, "backward": 0}


class _Stop(Exception):
    """An interruption."""


class _Interrupted(nn.Module):
    """The centroid model, which raises at its ``fail_at``-th call (an interruption in the middle of a run)."""

    def __init__(self, fail_at: int | None):
        super().__init__()
        self.inner = centroid_model()
        self.fail_at, self.calls = fail_at, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise _Stop
        return self.inner(x)


def test_a_resumed_run_and_merged_shards_count_every_task_once(tmp_path):
    """Interrupted in APGD-T and resumed, the run reports the passes of an uninterrupted one; two shards merge into
    their sum. Breaks when the cost counts only the tasks the last run did (resumed records skipped in
    ``evaluation_cost``), or when merging keeps the first shard's cost (``combined_fields`` not summing)."""
    straight = _evaluate(_Interrupted(None)).evaluation.cost
    with pytest.raises(_Stop):
        _evaluate(_Interrupted(60), out=tmp_path / "r.json")
    assert len(list((tmp_path / "r.state").glob("*-L002-*.pt"))) < 1 < len(list((tmp_path / "r.state").glob("*.pt")))
    resumed = _evaluate(_Interrupted(None), out=tmp_path / "r.json").evaluation
    assert any("resumed" in w["message"] for w in resumed.warnings)
    assert [_passes(s) for s in resumed.cost["stages"]] == [_passes(s) for s in straight["stages"]]
    assert _passes(resumed.cost["total"]) == _passes(straight["total"])

    shards = [_evaluate(shard=f"{k}/2", out=tmp_path / f"s{k}.json").evaluation.cost for k in range(2)]
    merged = merge_files([tmp_path / "s0.json", tmp_path / "s1.json"], tmp_path / "m.json").evaluation.cost
    for kind in KINDS:
        assert merged["total"][kind] == shards[0]["total"][kind] + shards[1]["total"][kind]
    assert [s["images"] for s in merged["stages"]] == [a["images"] + b["images"]
                                                        for a, b in zip(shards[0]["stages"], shards[1]["stages"])]


def test_profile_prints_a_row_per_stage_whose_shares_add_up(tmp_path):
    """``--profile`` prints the table (stages, checks, the indicators, total) and the summary its total. Breaks when
    a share is taken of the stages' time alone (the checks' and the indicators' left out of the whole)."""
    args = ["evaluate", "harness_helpers:centroid_model", "--n-examples", str(N), "--batch-size", str(BATCH),
            "--version", "custom", "--attacks", "apgd-ce,apgd-t", "--n-iter", "4", "--workers", "1", "--device", "cpu",
            "--out", str(tmp_path / "r.json")]
    res = CliRunner().invoke(main, [*args, "--profile"])
    assert res.exit_code == 0, res.output
    rows = {m.group(1).strip(): float(m.group(2)) for m in re.finditer(r"^(\S.*?)\s+[\d,]+\s+[\d,]+\s+[\d,]+\s+"
                                                                          r"[\d.]+\s+\S+\s+([\d.]+)%$", res.output, re.M)}
    assert list(rows) == ["clean", "apgd-ce 8/255", "apgd-t 8/255", "check: model", "check: autoattack",
                          "check: determinism", "diagnostics", "total"]
    assert rows["total"] == 100.0 and abs(sum(rows.values()) - 200.0) < 1.0
    total = EvaluationResult.from_json(tmp_path / "r.json").evaluation.cost["total"]
    assert f"cost: {sum(total[k] for k in KINDS):,} image passes" in res.output
    assert "share" not in CliRunner().invoke(main, args).output


def test_the_leaderboard_shows_a_rows_passes_and_reads_results_without_them(tmp_path):
    """The HTML detail of a row holds its total passes; a result written before passes were counted still reads
    and renders. Breaks when the detail line is dropped or reads a key older results lack."""
    (tmp_path / "lb").mkdir()
    result = _evaluate(n_iter=1, diagnostics=False, out=tmp_path / "lb" / "new.json")
    old = json.loads((tmp_path / "lb" / "new.json").read_text())
    del old["evaluation"]["cost"]
    (tmp_path / "lb" / "old.json").write_text(json.dumps(old))
    assert EvaluationResult.from_json(tmp_path / "lb" / "old.json").evaluation.cost is None
    page = leaderboard(tmp_path / "lb", fmt="html")
    total = result.evaluation.cost["total"]
    assert page.count(f"cost: {sum(total[k] for k in KINDS):,} image passes ({total['forward']:,} forward") == 1


def test_a_torchscript_model_is_one_line_and_evaluates_wrapped():
    """TorchScript modules take no forward hooks: one line saying to wrap it, and the wrapped module evaluates.
    Breaks when the hook is registered unchecked (TorchScript's own RuntimeError)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(centroid_model())
    with pytest.raises(ConfigError, match="wrap it in an nn.Module"):
        _evaluate(scripted, n_iter=1, diagnostics=False)
    wrapped = nn.Sequential(scripted)
    assert _evaluate(wrapped, n_iter=1, diagnostics=False).evaluation.cost["stages"][0]["forward"] == N
