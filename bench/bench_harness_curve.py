"""The cost of a robustness curve: a 4-point nested run versus the largest eps alone.

Both runs use the harness's defaults, the same model, examples and seed. The
curve attacks each larger eps only on the examples still robust, so it costs
less than 4 separate runs; this prints how much more than the largest eps
alone, and compares the two results at the largest eps example by example
(the nested run is at least as strong: it also keeps the adversarial
examples found at smaller eps).

    python bench/bench_harness_curve.py --model cifar10-linf-tiny --n 100 --batch-size 25

``--n-iter`` (fewer attack iterations) is for a quick smoke run only.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings

from harness.evaluation import evaluate


def timed_run(args, eps: str, out: str):
    t0 = time.perf_counter()
    result = evaluate(args.model, "cifar10", "Linf", eps, args.n, batch_size=args.batch_size, version=args.version,
                      attacks=args.attacks.split(",") if args.attacks else None, seed=args.seed, device=args.device,
                      data_dir=args.data_dir, n_iter=args.n_iter, out=out, progress=False)
    return result.evaluation, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar10-linf-tiny", help="Zoo entry or model directory.")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--curve", default="1/255,2/255,4/255,8/255", help="Increasing Linf budgets; the last is the largest.")
    p.add_argument("--version", default="standard")
    p.add_argument("--attacks", default=None, help="With --version custom.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    p.add_argument("--data-dir", default=None, help="Default: the bundled CIFAR-10 subset.")
    p.add_argument("--n-iter", type=int, default=None, help="Smoke runs only: fewer attack iterations.")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    largest = args.curve.split(",")[-1]
    with tempfile.TemporaryDirectory() as tmp:
        alone, t_alone = timed_run(args, largest, os.path.join(tmp, "alone.json"))
        curve, t_curve = timed_run(args, args.curve, os.path.join(tmp, "curve.json"))
    a, c = alone.robust_flags(), curve.robust_flags(largest)
    print(f"{args.model}, {args.n} images, batch {args.batch_size}, AutoAttack {args.version}, {curve.device}"
          + (f", {args.n_iter} iterations (smoke run, not a measurement)" if args.n_iter else ""))
    print(f"largest eps alone ({largest}): {t_alone:8.1f} s, robust {alone.robust_accuracy:.2f}%")
    print(f"nested curve ({args.curve}): {t_curve:8.1f} s, robust by eps: "
          + ", ".join(f"{p['eps_text']} {p['robust_accuracy']:.2f}%" for p in curve.curve))
    print(f"cost of the {len(curve.curve)}-point curve: {t_curve / t_alone:.2f}x the largest eps alone")
    print(f"at {largest}: {sum(x == y for x, y in zip(a, c))}/{args.n} examples agree; broken only in the curve "
          f"{sum(x and not y for x, y in zip(a, c))}, only alone {sum(y and not x for x, y in zip(a, c))}")


if __name__ == "__main__":
    main()
