"""The harness with its defaults versus bare pyautoattack: per-example agreement and wall-time speed-up.

Same model, examples, eps and seeds on both sides. Bare = pyautoattack's
``run_standard_evaluation``, one call per batch of ``--batch-size`` with the
harness's per-batch seed (seed + batch index: what makes per-example agreement
checkable), PyTorch's default threads and backend flags, the model as loaded.
Harness = ``harness.evaluate`` with its defaults (local worker processes,
channels_last for convolutional models, checks, state files, provenance).

    python bench/bench_harness_speedup.py --model cifar10-linf-tiny --n 100 --batch-size 25
    python bench/bench_harness_speedup.py --model cifar10-linf-tiny --n 1000 --batch-size 250 --device cuda

``--n-iter`` (fewer attack iterations, both sides) is for a quick smoke run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings

import torch
from pyautoattack import AutoAttack

import zoo
from harness.attack import batch_seed, set_iterations
from harness.data import load_tensors
from harness.devices import cpu_cores, resolve_device
from harness.evaluation import evaluate
from harness.threat_models import attacks_for, resolve_eps


def bare_pyautoattack(model, x, y, args, eps: float) -> tuple[list[bool], float]:
    """Per-example robust flags and wall seconds of plain run_standard_evaluation calls, one per batch."""
    attacks = args.attacks.split(",") if args.attacks else None
    model = model.to(args.device)
    robust = []
    t0 = time.perf_counter()
    for b, lo in enumerate(range(0, len(x), args.batch_size)):
        xb, yb = x[lo:lo + args.batch_size].contiguous(), y[lo:lo + args.batch_size].contiguous()
        aa = AutoAttack(model, norm=args.threat_model, eps=eps, seed=batch_seed(args.seed, b), version=args.version,
                        attacks=attacks, device=args.device)
        if args.n_iter:
            set_iterations(aa, args.n_iter)
        _, y_adv = aa.run_standard_evaluation(xb.to(args.device), yb.to(args.device), batch_size=len(xb))
        robust += (y_adv.cpu() == yb).tolist()
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return robust, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar10-linf-tiny", help="Zoo entry or model directory.")
    p.add_argument("--n", type=int, default=100, help="Examples (the first N of the test data).")
    p.add_argument("--batch-size", type=int, default=25)
    p.add_argument("--threat-model", default="Linf")
    p.add_argument("--eps", default=None, help="Default: the standard budget.")
    p.add_argument("--version", default="standard")
    p.add_argument("--attacks", default=None, help="With --version custom.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available).")
    p.add_argument("--data-dir", default=None, help="Default: the bundled CIFAR-10 subset.")
    p.add_argument("--n-iter", type=int, default=None, help="Smoke runs only: fewer attack iterations.")
    args = p.parse_args()
    args.device = resolve_device(args.device)
    eps, eps_text = resolve_eps(args.threat_model, args.eps)
    attack_list = attacks_for(args.version, args.threat_model, args.attacks.split(",") if args.attacks else None)
    warnings.simplefilter("ignore")
    x, y = load_tensors("cifar10", "test", args.data_dir, args.n)

    bare, t_bare = bare_pyautoattack(zoo.load_model(args.model), x, y, args, eps)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = evaluate(args.model, "cifar10", args.threat_model, eps_text, args.n, batch_size=args.batch_size,
                          version=args.version, attacks=attack_list if args.version == "custom" else None,
                          seed=args.seed, device=args.device, data_dir=args.data_dir, n_iter=args.n_iter,
                          out=os.path.join(tmp, "r.json"), progress=False)
        t_harness = time.perf_counter() - t0
    ev = result.evaluation
    ours = ev.robust_flags()
    agree = sum(a == b for a, b in zip(bare, ours))
    where = (torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda")
             else f"{platform.processor() or platform.machine()}, {cpu_cores()} cores")
    print(f"{args.model}, {args.n} images ({'bundled subset' if args.data_dir is None else args.data_dir}), "
          f"batch {args.batch_size}, {args.threat_model} {eps_text}, AutoAttack {args.version} ({','.join(attack_list)})"
          + (f", {args.n_iter} iterations (smoke run, not a measurement)" if args.n_iter else ""))
    print(f"device: {args.device} ({where}), torch {torch.__version__}")
    print(f"bare pyautoattack : {t_bare:8.1f} s  (run_standard_evaluation per batch, {torch.get_num_threads()} threads, "
          "PyTorch default flags)")
    print(f"harness (defaults): {t_harness:8.1f} s  ({ev.device}; numerics {ev.numerics})")
    print(f"agreement: {100 * agree / args.n:.2f}% ({agree}/{args.n} examples; robust: bare {sum(bare)}, "
          f"harness {sum(ours)})")
    print(f"speed-up: {t_bare / t_harness:.2f}x (bare wall time / harness wall time)")


if __name__ == "__main__":
    main()
