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
  checks, state files, provenance, the attack-failure indicators).
- floor: the model alone doing the harness run's image passes (its ``evaluation.cost``) in
  batches of ``--batch-size`` on random images, over the harness's workers and threads: how
  close the engine comes to pure model compute (``harness / floor``).

Every arm is warmed up first (a 2-image run) so none pays first-call costs the other does
not. On CUDA every arm uses the one GPU of ``--device`` (figures are per GPU) and the
device that ran is synchronised before the clock stops.

    python bench/bench_harness_speedup.py --model cifar10-linf-tiny --n 1000 --batch-size 50 --skip-per-batch
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
from harness.engine.autoattack_setup import set_iterations
from harness.data import load_tensors
from harness.cost import profile_table
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


def harness_run(args, eps_text: str, n: int):
    """The harness with its defaults: (per-example robust flags, seconds, result)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = evaluate(args.model, "cifar10", args.threat_model, eps_text, n, batch_size=args.batch_size,
                          seed=0, device=args.device, data_dir=args.data_dir, n_iter=args.n_iter,
                          out=os.path.join(tmp, "r.json"), progress=False)
        _sync(args.device)
        seconds = time.perf_counter() - t0
    return result.evaluation.robust_flags(), seconds, result


def _replay_share(model_spec: str, device: str, threads: int, channels_last: bool, work: list[tuple[int, int, int]],
                  batch_size: int) -> float:
    """One worker's share of the floor: ``work`` holds (forward, forward_grad, backward) image passes per stage,
    replayed in batches of ``batch_size`` on random images; returns the seconds of the replay alone."""
    torch.set_num_threads(threads)
    model = zoo.load_model(model_spec, device=device).eval()
    if channels_last:   # the weights, as the harness places them (its inputs stay NCHW)
        model = model.to(memory_format=torch.channels_last)

    def batch(n: int, grad: bool) -> torch.Tensor:
        return torch.rand(n, 3, 32, 32, device=device).requires_grad_(grad)

    def sizes(total: int):
        return [min(batch_size, total - lo) for lo in range(0, total, batch_size)]

    with torch.no_grad():   # warm-up
        model(batch(min(batch_size, 8), False))
    _sync(device)
    t0 = time.perf_counter()
    for forward, forward_grad, backward in work:
        with torch.no_grad():
            for n in sizes(forward):
                model(batch(n, False))
        pairs = min(forward_grad, backward)
        for n in sizes(pairs):   # the input gradient alone, as the attacks take it (torch.autograd.grad)
            x = batch(n, True)
            torch.autograd.grad(model(x).sum(), x)
        for n in sizes(forward_grad - pairs):
            model(batch(n, True))
        for n in sizes(backward - pairs):   # more backward than forward passes
            x = batch(n, True)
            torch.autograd.grad(model(x).sum(), x)
    _sync(device)
    return time.perf_counter() - t0


def floor_replay(args, result) -> float:
    """The floor: the model alone doing the harness run's image passes (``evaluation.cost``), in batches of
    ``--batch-size``, over the same workers and threads; the slowest worker's seconds."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing

    ev = result.evaluation
    workers, threads = ev.execution["workers"], ev.execution["threads_per_worker"]
    parts = [*ev.cost["stages"], *ev.cost["checks"].values(), *([ev.cost["diagnostics"]] if ev.cost["diagnostics"]
                                                                 else [])]
    shares = [[(p["forward"] // workers, p["forward_grad"] // workers, p["backward"] // workers) for p in parts]
              for _ in range(workers)]
    channels_last = ev.numerics.get("channels_last", False)
    if workers == 1:
        return _replay_share(args.model, args.device, threads, channels_last, shares[0], args.batch_size)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_replay_share, args.model, args.device, threads, channels_last, share, args.batch_size)
                   for share in shares]
        return max(f.result() for f in futures)


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
    p.add_argument("--skip-floor", action="store_true", help="Leave out the model-only replay of the passes.")
    p.add_argument("--skip-robustbench", action="store_true", help="Leave out RobustBench's benchmark().")
    p.add_argument("--n-iter", type=int, default=None, help="Smoke runs only: fewer attack iterations.")
    args = p.parse_args()
    args.device = resolve_device(args.device)
    eps, eps_text = resolve_eps(args.threat_model, None)
    warnings.simplefilter("ignore")
    x, y = load_tensors("cifar10", "test", args.data_dir, args.n)
    model = zoo.load_model(args.model, device=args.device)

    arms = {} if args.skip_robustbench else {
        "robustbench benchmark()": lambda xs, ys: robustbench_benchmark(model, xs, ys, args, eps)}
    if not args.skip_per_batch:
        arms["per-batch bare calls"] = lambda xs, ys: per_batch(model, xs, ys, args, eps)
    for fn in arms.values():  # warm-up
        fn(x[:2], y[:2])
    harness_run(args, eps_text, 2)

    flags, times = {}, {name: [] for name in [*arms, "harness (defaults)"]}
    floors: list[float] = []
    for _ in range(args.repeats):
        for name, fn in arms.items():
            flags[name], seconds = fn(x, y)
            times[name].append(seconds)
        flags["harness (defaults)"], seconds, result = harness_run(args, eps_text, args.n)
        times["harness (defaults)"].append(seconds)
        if not args.skip_floor:
            floors.append(floor_replay(args, result))
        label = result.evaluation.device

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
    if floors:
        total = result.evaluation.cost["total"]
        print(f"floor (the model alone doing the harness's {total['forward']:,} forward, {total['forward_grad']:,} "
              f"forward-with-grad and {total['backward']:,} backward image passes, same workers and threads): "
              f"{statistics.median(floors):.1f} s; harness / floor = {base / statistics.median(floors):.2f}x")
    print("where the harness's time went (its last run):")
    print("\n".join(profile_table(result.evaluation.cost)))


if __name__ == "__main__":
    main()
