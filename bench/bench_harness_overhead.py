"""Plain pyautoattack versus the harness on the same model, examples and seeds.

Prints whether per-example results are identical and the wall-time overhead.
Plain = one ``run_standard_evaluation`` call per batch with the harness's
per-batch seed (the harness's unit of work), no checks, no state; the harness
adds data loading, adversarial-example checks, per-batch state files and
provenance.

    python bench/bench_harness_overhead.py --model cifar10-linf-tiny --n 100 --batch-size 50
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

import torch
from pyautoattack import AutoAttack

import zoo
from harness.data import load_tensors
from harness.evaluation import batch_seed, evaluate
from harness.threat_models import attacks_for


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="cifar10-linf-tiny", help="Zoo entry or model directory.")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--version", default="standard")
    args = p.parse_args()
    model = zoo.load_model(args.model)
    warnings.simplefilter("ignore")
    x, y = load_tensors("cifar10", "test", None, args.n)
    eps = 8 / 255

    t0 = time.perf_counter()
    plain = []
    for b, lo in enumerate(range(0, args.n, args.batch_size)):
        xb, yb = x[lo:lo + args.batch_size].contiguous(), y[lo:lo + args.batch_size].contiguous()
        aa = AutoAttack(model, norm="Linf", eps=eps, seed=batch_seed(0, b), version=args.version, device="cpu")
        _, y_adv = aa.run_standard_evaluation(xb, yb, batch_size=len(xb))
        plain += (y_adv == yb).tolist()
    t_plain = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = evaluate(args.model, n_examples=args.n, batch_size=args.batch_size, version=args.version, seed=0,
                          device="cpu", out=f"{tmp}/r.json", progress=False)
        t_harness = time.perf_counter() - t0
    ours = [o is None for o in result.evaluation.per_example["outcome"]]
    print(f"{args.model}, {args.n} CIFAR-10 images, batch {args.batch_size}, Linf 8/255, AutoAttack {args.version} "
          f"({','.join(attacks_for(args.version, 'Linf', None))}), {torch.get_num_threads()} threads")
    print(f"per-example robust flags identical: {plain == ours} ({sum(ours)}/{args.n} robust)")
    print(f"plain pyautoattack {t_plain:.2f} s, harness {t_harness:.2f} s, overhead {100 * (t_harness / t_plain - 1):+.1f}%")


if __name__ == "__main__":
    main()
