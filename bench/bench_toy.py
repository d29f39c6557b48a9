"""Time `score-train toy` (all four objectives, default settings) against the official script's loop.

    python bench/bench_toy.py --iterations 5
    python bench/bench_toy.py --profile

Both sides run the same number of iterations of every objective at the
official size (50,000 + 10,000 points per draw): ours is ``run_toy`` with its
defaults (one worker process per objective, one thread each; C once; the
figures and JSON), the reference is the official generate_toy_demo.py
transcribed in tests/test_toy_parity.py, run as the script runs it: one
objective after the other, each with its own C, PyTorch's default threads.
Reported: both wall times, seconds per iteration of all four objectives, and
the speed-up. Fixed costs (process start, C, figures) are in both totals, so a
few iterations understate the speed-up of a 500-iteration run.

``--profile`` instead profiles one R_SCORE measurement (the 10-step attack
every objective runs each iteration over the whole draw) on one thread and
reports the share of its time that goes to the model's own arithmetic (tanh
and its backward, the matrix products), which any exact run must pay, and the
share of everything else.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import test_toy_parity as official  # noqa: E402  (the transcription of generate_toy_demo.py)

from training.toy import OBJECTIVES, ToySettings, run_toy  # noqa: E402
from training.toy.problem import COUNTS  # noqa: E402


def official_seconds(objectives, iterations: int, seed: int) -> float:
    """Wall seconds of the transcribed script: C, then ``iterations`` iterations, for each objective in turn."""
    official.half_bs_0, official.half_bs_1 = COUNTS
    t0 = time.perf_counter()
    for demo in objectives:
        official.official_main(demo, "KL", "L1", iterations, seed, torch.Generator().manual_seed(seed))
    return time.perf_counter() - t0


def ours_seconds(objectives, iterations: int, seed: int) -> float:
    """Wall seconds of ``run_toy`` with the default workers, into a temporary folder."""
    settings = ToySettings(objectives=tuple(objectives), iterations=iterations, seed=seed)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        run_toy(settings, out, progress=False)
        return time.perf_counter() - t0


MODEL_OPS = {"tanh": ("aten::tanh", "aten::tanh_backward"), "matrix products": ("aten::addmm", "aten::mm")}


def profile_measurement(seed: int) -> None:
    """Print the shares of one official-size R_SCORE measurement's CPU time (one thread) by kind of operation."""
    from torch.profiler import profile

    from training.toy.objectives import ToyMLP, measure
    from training.toy.problem import Problem, seeded

    torch.set_num_threads(1)
    s = ToySettings(seed=seed)
    problem = Problem(s.counts)
    model, samples, attacks = seeded(seed, lambda: ToyMLP(s.width))
    x = problem.sample(samples)
    measure(model, problem, x, attacks, s)  # warm-up
    t0 = time.perf_counter()
    measure(model, problem, x, attacks, s)
    wall = time.perf_counter() - t0
    with profile() as prof:
        measure(model, problem, x, attacks, s)
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    print(f"one R_SCORE measurement over {len(x):,} points, 10 steps, 1 thread: {wall:.2f} s; "
          "shares of the profiled CPU time:")
    shown = 0.0
    for kind, ops in MODEL_OPS.items():
        share = sum(self_us.get(op, 0.0) for op in ops) / total
        shown += share
        print(f"  {kind:<18} {100 * share:5.1f} %  ({', '.join(ops)})")
    print(f"  {'everything else':<18} {100 * (1 - shown):5.1f} %")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=5, help="Iterations of each objective, both sides.")
    p.add_argument("--objectives", default=",".join(OBJECTIVES))
    p.add_argument("--seed", type=int, default=2)
    p.add_argument("--profile", action="store_true", help="Profile one R_SCORE measurement instead of timing runs.")
    args = p.parse_args()
    if args.profile:
        return profile_measurement(args.seed)
    objectives = args.objectives.split(",")
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}; {args.iterations} iterations of {', '.join(objectives)}")
    ours = ours_seconds(objectives, args.iterations, args.seed)
    print(f"score-train toy          {ours:8.1f} s  ({ours / args.iterations:.2f} s per iteration of all objectives)",
          flush=True)
    ref = official_seconds(objectives, args.iterations, args.seed)
    print(f"official loop, in turn   {ref:8.1f} s  ({ref / args.iterations:.2f} s per iteration of all objectives)")
    print(f"speed-up                 {ref / ours:8.2f}x")


if __name__ == "__main__":
    main()
