"""The harness with its defaults against RobustBench's own ``benchmark()`` and per-batch bare AutoAttack.

Same model, images, eps and AutoAttack seed (0) in every arm:

- robustbench: ``robustbench.eval.benchmark(model, n_examples, batch_size=...)``, RobustBench's
  own code: one pooled ``run_standard_evaluation`` on all images (through this package's
  ``autoattack`` adapter onto pyautoattack), PyTorch's default threads, the model as loaded.
  Its data loader would download CIFAR-10; here ``load_clean_dataset`` returns the same
  tensors the other arms get, and the adversarial examples it classifies are kept to
  compare per example.
- per-batch: pyautoattack's ``run_standard_evaluation`` once per batch (what the harness
  did before pooling, and what a naive loop does).
- harness: ``harness.evaluate`` with its defaults (local worker processes, channels_last,
  checks, state files, provenance).

Every arm is warmed up first (a 2-image run) so none pays first-call costs the other does
not. On CUDA every arm uses the one GPU of ``--device`` (figures are per GPU) and the
device that ran is synchronised before the clock stops.

    python bench/bench_harness_speedup.py --model cifar10-linf-tiny --n 256 --batch-size 32
    python bench/bench_harness_speedup.py --model cifar10-linf-tiny --n 1000 --batch-size 250 --device cuda:0

``--n-iter`` (fewer attack iterations, every arm) is for a quick smoke run only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import torch
from pyautoattack import AutoAttack

import zoo
from harness.engine.attack import set_iterations
from harness.data import load_tensors
from harness.evaluation import evaluate
from harness.threat_models import resolve_eps
from zoo.devices import cpu_cores, cpu_name, resolve_device


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


def robustbench_benchmark(model, x, y, args, eps: float) -> tuple[list[bool], float]:
    """Per-example robust flags and seconds of RobustBench's own ``benchmark()`` on these tensors."""
    import robustbench.eval as rb_eval

    kept: list[torch.Tensor] = []
    load, accuracy = rb_eval.load_clean_dataset, rb_eval.clean_accuracy

    def clean_accuracy(m, xs, ys, batch_size=100, device=None):
        kept.append(xs)
        return accuracy(m, xs, ys, batch_size=batch_size, device=device)

    rb_eval.load_clean_dataset = lambda *a, **k: (x, y)
    rb_eval.clean_accuracy = clean_accuracy
    try:
        with _reduced_iterations(args.n_iter):
            t0 = time.perf_counter()
            rb_eval.benchmark(model, n_examples=len(x), dataset="cifar10", threat_model=args.threat_model,
                              device=torch.device(args.device), batch_size=args.batch_size, eps=eps)
            _sync(args.device)
            seconds = time.perf_counter() - t0
    finally:
        rb_eval.load_clean_dataset, rb_eval.clean_accuracy = load, accuracy
    robust = []
    with torch.no_grad():
        for lo in range(0, len(x), args.batch_size):  # as benchmark() classifies its adversarial examples
            pred = model(kept[-1][lo:lo + args.batch_size].to(args.device)).max(1)[1].cpu()
            robust += (pred == y[lo:lo + args.batch_size]).tolist()
    return robust, seconds


class _reduced_iterations:
    """Smoke runs: every AutoAttack built meanwhile gets ``n_iter`` iterations."""

    def __init__(self, n_iter):
        self.n_iter = n_iter

    def __enter__(self):
        if self.n_iter:
            self.init = AutoAttack.__init__
            n_iter, init = self.n_iter, self.init

            def reduced(aa, *a, **k):
                init(aa, *a, **k)
                set_iterations(aa, n_iter)

            AutoAttack.__init__ = reduced

    def __exit__(self, *exc):
        if self.n_iter:
            AutoAttack.__init__ = self.init


def per_batch(model, x, y, args, eps: float) -> tuple[list[bool], float]:
    """Per-example robust flags and seconds of one pyautoattack call per batch (seed 0 each)."""
    robust = []
    t0 = time.perf_counter()
    for lo in range(0, len(x), args.batch_size):
        xb, yb = x[lo:lo + args.batch_size].contiguous(), y[lo:lo + args.batch_size].contiguous()
        aa = AutoAttack(model, norm=args.threat_model, eps=eps, seed=0, version="standard", device=args.device)
        if args.n_iter:
            set_iterations(aa, args.n_iter)
        _, y_adv = aa.run_standard_evaluation(xb.to(args.device), yb.to(args.device), batch_size=len(xb))
        robust += (y_adv.cpu() == yb).tolist()
    _sync(args.device)
    return robust, time.perf_counter() - t0


def harness_run(args, eps_text: str, n: int) -> tuple[list[bool], float, str]:
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = evaluate(args.model, "cifar10", args.threat_model, eps_text, n, batch_size=args.batch_size,
                          seed=0, device=args.device, data_dir=args.data_dir, n_iter=args.n_iter,
                          out=os.path.join(tmp, "r.json"), progress=False)
        _sync(args.device)
        seconds = time.perf_counter() - t0
    return result.evaluation.robust_flags(), seconds, result.evaluation.device


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar10-linf-tiny", help="Zoo entry or model directory.")
    p.add_argument("--n", type=int, default=256, help="Examples (the first N of the test data).")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threat-model", default="Linf")
    p.add_argument("--device", default=None, help="cpu or cuda:K (default: cuda:0 if available).")
    p.add_argument("--data-dir", default=None, help="Default: the bundled CIFAR-10 subset.")
    p.add_argument("--repeats", type=int, default=1, help="Timed runs of each arm (median and range reported).")
    p.add_argument("--skip-per-batch", action="store_true", help="Leave out the per-batch arm.")
    p.add_argument("--n-iter", type=int, default=None, help="Smoke runs only: fewer attack iterations.")
    args = p.parse_args()
    args.device = resolve_device(args.device)
    eps, eps_text = resolve_eps(args.threat_model, None)
    warnings.simplefilter("ignore")
    x, y = load_tensors("cifar10", "test", args.data_dir, args.n)
    model = zoo.load_model(args.model, device=args.device)

    arms = {"robustbench benchmark()": lambda xs, ys: robustbench_benchmark(model, xs, ys, args, eps)}
    if not args.skip_per_batch:
        arms["per-batch bare calls"] = lambda xs, ys: per_batch(model, xs, ys, args, eps)
    for fn in arms.values():  # warm-up
        fn(x[:2], y[:2])
    harness_run(args, eps_text, 2)

    flags, times = {}, {name: [] for name in [*arms, "harness (defaults)"]}
    label = ""
    for _ in range(args.repeats):
        for name, fn in arms.items():
            flags[name], seconds = fn(x, y)
            times[name].append(seconds)
        flags["harness (defaults)"], seconds, label = harness_run(args, eps_text, args.n)
        times["harness (defaults)"].append(seconds)

    where = (torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda")
             else f"{cpu_name()}, {cpu_cores()} cores")
    print(f"{args.model}, {args.n} images ({'bundled subset' if args.data_dir is None else args.data_dir}), "
          f"batch {args.batch_size}, {args.threat_model} {eps_text}, AutoAttack standard"
          + (f", {args.n_iter} iterations (smoke run, not a measurement)" if args.n_iter else ""))
    print(f"device: {args.device} ({where}), torch {torch.__version__}, {args.repeats} timed run(s) per arm")
    ours = flags["harness (defaults)"]
    for name, secs in times.items():
        spread = f" (range {min(secs):.1f}-{max(secs):.1f})" if len(secs) > 1 else ""
        agree = sum(a == b for a, b in zip(flags[name], ours))
        print(f"{name:24s} {statistics.median(secs):8.1f} s{spread}  robust {sum(flags[name])}/{args.n}, "
              f"agreement with the harness {agree}/{args.n}")
    print(f"harness: {label}")
    base = statistics.median(times["harness (defaults)"])
    for name in arms:
        print(f"speed-up over {name}: {statistics.median(times[name]) / base:.2f}x")


if __name__ == "__main__":
    main()
