"""One process versus two (torchrun, one thread each) on the same evaluation.

    python bench/bench_harness_shards.py --n 64 --batch-size 16
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo / "tests")}
    common = ["evaluate", "harness_helpers:centroid_model", "--n-examples", str(args.n), "--batch-size",
              str(args.batch_size), "--version", "custom", "--attacks", "apgd-ce,apgd-t", "--device", "cpu"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    with tempfile.TemporaryDirectory() as tmp:
        one = run([sys.executable, "-m", "harness", *common, "--out", f"{tmp}/one.json"], env)
        two = run([torchrun, "--nproc-per-node", "2", "-m", "harness", *common, "--out", f"{tmp}/two.json"], env)
        same = (Path(f"{tmp}/one.json").read_text().split('"per_example"')[1]
                == Path(f"{tmp}/two.json").read_text().split('"per_example"')[1])
    print(f"{args.n} images, batch {args.batch_size}, apgd-ce+apgd-t 100 iter, 1 thread per process")
    print(f"1 process {one:.1f} s, torchrun 2 processes {two:.1f} s, speedup {one / two:.2f}x; per-example identical: {same}")


if __name__ == "__main__":
    main()
