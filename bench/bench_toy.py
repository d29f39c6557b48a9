"""Time `score-train toy` (all four objectives, default settings) against the official script's loop.

    python bench/bench_toy.py --iterations 5

Both sides run the same number of iterations of every objective at the
official size (50,000 + 10,000 points per draw): ours is ``run_toy`` with its
defaults (one worker process per objective, one thread each; C once; the
figures and JSON), the reference is the official generate_toy_demo.py
transcribed in tests/test_toy_parity.py, run as the script runs it: one
objective after the other, each with its own C, PyTorch's default threads.
Reported: both wall times, seconds per iteration of all four objectives, and
the speed-up. Fixed costs (process start, C, figures) are in both totals, so a
few iterations understate the speed-up of a 500-iteration run.
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

from training.toy import run_toy  # noqa: E402
from training.toy_settings import OBJECTIVES, ToySettings  # noqa: E402
from training.toy_problem import COUNTS  # noqa: E402


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=5, help="Iterations of each objective, both sides.")
    p.add_argument("--objectives", default=",".join(OBJECTIVES))
    p.add_argument("--seed", type=int, default=2)
    args = p.parse_args()
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
