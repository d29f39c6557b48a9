"""Nothing half-written: a writer that fails or is killed between writing and renaming leaves the old file intact.

Two ways of breaking a write: a failure injected where the finished temporary file would be renamed into
place (``os.replace`` raising, in this process), and a real SIGKILL of an evaluation while it writes a
state file (in a child process). A writer that writes in place has already destroyed the old file (or
left a truncated one) when either happens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from harness import evaluate
from zoo.results import EvaluationResult
from training.run_state import load_checkpoint, save_checkpoint
from zoo.errors import WriteError
from zoo.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text

TESTS = Path(__file__).parent
OLD = b'{"old": "intact"}\n'


def _fail_at_rename(monkeypatch):
    def refuse(src, dst):
        raise OSError(28, "No space left on device (injected)")

    monkeypatch.setattr(os, "replace", refuse)


def _small_result() -> EvaluationResult:
    return EvaluationResult.from_json(TESTS / "data" / "score-harness-format1-result.json")


WRITERS = {
    "atomic_write_json": lambda p: atomic_write_json(p, {"new": list(range(1000))}),
    "atomic_write_text": lambda p: atomic_write_text(p, "new text\n" * 1000),
    "atomic_write_bytes": lambda p: atomic_write_bytes(p, b"\0" * 100_000),
    "training checkpoint": lambda p: save_checkpoint(p, {"model": {"w": torch.zeros(1000)}, "global_step": 7}),
    "result JSON": lambda p: _small_result().to_json(p),
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_a_failure_between_write_and_rename_keeps_the_old_file(tmp_path, monkeypatch, writer):
    target = tmp_path / "file"
    target.write_bytes(OLD)
    _fail_at_rename(monkeypatch)
    with pytest.raises(WriteError, match="no space left on device \\(injected\\); free some space") as caught:
        WRITERS[writer](target)
    assert str(target) in str(caught.value)
    assert target.read_bytes() == OLD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]        # no temporary file left behind
    monkeypatch.undo()
    WRITERS[writer](target)                                              # without the failure: the new content
    assert target.read_bytes() != OLD
    if writer == "training checkpoint":
        assert load_checkpoint(target)["global_step"] == 7


KW = dict(n_examples=24, batch_size=8, eps="2/255", version="custom", attacks=["apgd-ce", "apgd-t"], n_iter=1,
          progress=False, workers=1, device="cpu", seed=0)

# The child evaluates; its third state file write is cut short: half of the bytes reach the file, then SIGKILL.
CHILD = textwrap.dedent("""
    import io, os, signal, sys, warnings
    import torch
    warnings.simplefilter("ignore")
    real_save, calls = torch.save, []

    def dying_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) < 3:
            return real_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        out = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f   # a path, or the writer's open file
        out.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        out.flush()
        os.fsync(out.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = dying_save
    from harness import evaluate
    evaluate("harness_helpers:centroid_model", out=sys.argv[1], **KW)
""")


def test_an_evaluation_killed_while_writing_a_state_file_resumes(tmp_path):
    out = tmp_path / "r.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", f"KW = {KW!r}\n" + CHILD, str(out)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    state = tmp_path / "r.state"
    finished = sorted(p.name for p in state.glob("*.pt"))
    assert len(finished) == 2 and not out.exists()       # two whole chunk files; the third never took its name
    for name in finished:
        torch.load(state / name, weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = evaluate("harness_helpers:centroid_model", out=out, **KW)
        straight = evaluate("harness_helpers:centroid_model", out=tmp_path / "straight.json", **KW)
    assert any("resumed: 2 chunk task(s)" in w["message"] for w in resumed.evaluation.warnings)
    assert resumed.evaluation.per_example == straight.evaluation.per_example
    assert json.loads(out.read_text())["autoattack_acc"] == json.loads((tmp_path / "straight.json").read_text())[
        "autoattack_acc"]
