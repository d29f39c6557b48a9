"""Start-up cost of the packages: fresh-interpreter import times against the bare libraries.

    python bench/bench_startup.py --runs 5

Each line is the median wall time of ``python -c "import ..."`` over ``--runs``
fresh interpreters: ``torch`` alone (the floor every command pays), ``zoo``,
``timm`` alone, ``harness`` and ``training``, and ``zoo`` + ``timm`` (what registering with timm
costs once timm is imported). ``harness`` and ``training`` are measured through
the modules their commands load (``harness.evaluation``, ``training.trainer``):
``import harness`` itself is lazy.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

IMPORTS = ["torch", "timm", "zoo", "zoo, timm", "harness.evaluation", "training.trainer"]


def import_seconds(modules: str, runs: int) -> float:
    """Median seconds for a fresh interpreter to ``import modules`` and exit."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", f"import {modules}"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    floor = import_seconds("torch", args.runs)
    print(f"{'import':<20}{'seconds':>9}{'x torch':>9}")
    for modules in IMPORTS:
        s = floor if modules == "torch" else import_seconds(modules, args.runs)
        print(f"{modules:<20}{s:>9.2f}{s / floor:>9.2f}")
    print(f"median of {args.runs} fresh interpreters, python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
