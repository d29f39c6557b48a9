"""One process versus two (--workers 2, torchrun, or two --shard processes + merge) on the same evaluation.

    python bench/bench_harness_shards.py --model cifar10-linf-tiny --n 100 --batch-size 25

Every process uses one thread; the single process is also timed with two
threads. Per-example results must be identical in every layout that pools the
whole evaluation (one process, --workers, torchrun); two shards are two separate
AutoAttack calls, so their merged result may differ example by example.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _start(cmd: list[str], threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(*cmds: list[str], threads: int = 1) -> float:
    """Run the commands in parallel; return the wall time until all finished."""
    t0 = time.perf_counter()
    procs = [_start(cmd, threads) for cmd in cmds]
    if any(p.wait() for p in procs):
        raise SystemExit(f"a benchmark command failed: {cmds}")
    return time.perf_counter() - t0


def outcomes(path: str) -> list:
    return json.loads(Path(path).read_text())["evaluation"]["per_example"]["outcome"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="cifar10-linf-tiny")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=25)
    args = p.parse_args()
    harness = [sys.executable, "-m", "harness"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    common = ["evaluate", args.model, "--n-examples", str(args.n), "--batch-size", str(args.batch_size),
              "--device", "cpu"]
    single = [*common, "--workers", "1"]
    with tempfile.TemporaryDirectory() as tmp:
        one = timed([*harness, *single, "--out", f"{tmp}/one.json"])
        one2 = timed([*harness, *single, "--out", f"{tmp}/one2.json"], threads=2)
        local = timed([*harness, *common, "--workers", "2", "--out", f"{tmp}/local.json"], threads=2)
        two = timed([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "harness", *common,
                     "--out", f"{tmp}/two.json"])
        shards = timed(*[[*harness, *single, "--shard", f"{k}/2", "--out", f"{tmp}/s{k}.json"] for k in (0, 1)])
        subprocess.run([*harness, "merge", f"{tmp}/s0.json", f"{tmp}/s1.json", "--out", f"{tmp}/merged.json"],
                       check=True, stdout=subprocess.DEVNULL)
        same = outcomes(f"{tmp}/one.json") == outcomes(f"{tmp}/one2.json") == outcomes(f"{tmp}/local.json") \
            == outcomes(f"{tmp}/two.json")
        merged = outcomes(f"{tmp}/merged.json")
        shard_agree = sum(a == b for a, b in zip(merged, outcomes(f"{tmp}/one.json")))
    print(f"{args.model}, {args.n} images, batch {args.batch_size}, AutoAttack standard Linf 8/255")
    print(f"1 process x 1 thread  {one:7.1f} s")
    print(f"1 process x 2 threads {one2:7.1f} s  ({one / one2:.2f}x)")
    print(f"--workers 2 (1 thread) {local:7.1f} s  ({one / local:.2f}x vs 1x1, {one2 / local:.2f}x vs 1x2)")
    print(f"torchrun 2 x 1 thread {two:7.1f} s  ({one / two:.2f}x vs 1x1, {one2 / two:.2f}x vs 1x2)")
    print(f"--shard 2 x 1 thread  {shards:7.1f} s  ({one / shards:.2f}x vs 1x1, {one2 / shards:.2f}x vs 1x2)")
    print(f"per-example results identical in the pooled layouts (1 process, workers, torchrun): {same}")
    print(f"merged shards (a separate AutoAttack call per shard): {shard_agree}/{args.n} outcomes as in one process")


if __name__ == "__main__":
    main()
