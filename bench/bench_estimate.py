"""``estimate`` against the real run: project an evaluation from its sample, then run it and compare.

Both with the harness's defaults (workers, layout) and the same options; the
real run's wall time is measured around ``evaluate`` (model loading included,
as the projection includes it), its passes read from its ``evaluation.cost``.

    python bench/bench_estimate.py --model cifar10-linf-tiny --n 200 --batch-size 50

Figures on the bundled subset (JPEG-decoded test copy) are not leaderboard figures.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from harness.estimate import estimate
from harness.evaluation import evaluate
from zoo.devices import cpu_name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="cifar10-linf-tiny")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--sample", type=int, default=None)
    args = p.parse_args()
    warnings.simplefilter("ignore")
    options = dict(n_examples=args.n, batch_size=args.batch_size, progress=False)
    t0 = time.perf_counter()
    report = estimate(args.model, sample=args.sample, **options)
    estimate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = evaluate(args.model, **options)
    run_s = time.perf_counter() - t0
    s, measured = report["seconds"], result.evaluation.cost["total"]
    print(f"{args.model}, {args.n} bundled images, batch {args.batch_size}, {report['workers']} worker(s), torch "
          f"{torch.__version__}, {cpu_name()}")
    print(f"estimate: sample of {report['n_sample']} images took {estimate_s:.1f} s; projected "
          f"{s['expected']:.1f} s ({s['low']:.1f} to {s['high']:.1f} s)")
    print(f"real run: {run_s:.1f} s; projection / real = {s['expected'] / run_s:.3f} "
          f"(error {100 * (s['expected'] - run_s) / run_s:+.1f} %); real inside the range: "
          f"{s['low'] <= run_s <= s['high']}")
    for kind in ("forward", "forward_grad", "backward"):
        print(f"{kind} image passes: projected {report['passes'][kind]:,}, real {measured[kind]:,} "
              f"({100 * (report['passes'][kind] - measured[kind]) / max(1, measured[kind]):+.1f} %)")


if __name__ == "__main__":
    main()
