"""Time one SCORE training step against its work floor: (attack steps + 2) bare forward+backward passes.

    python bench/bench_train_step.py --arch wrn-10-1-swish --batch 128 --attack-steps 5

The ratio step / floor says how much the trainer adds on top of the passes it
cannot avoid (goal: under 1.15). Images/second is for the full training step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import zoo
from training.config import make_config
from training.ema import EMA
from training.trainer import adversarial_step, build_optimizer, step_generator


def _time_interleaved(fns, repeats: int, warmup: int) -> list[float]:
    """Median seconds of each function, timed in alternation so that load from other jobs hits all alike."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="wrn-10-1-swish")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--attack-steps", type=int, default=5)
    ap.add_argument("--objective", default="score")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    torch.manual_seed(0)
    cfg = make_config({"architecture": args.arch, "batch_size": args.batch, "attack_steps": args.attack_steps,
                       "objective": args.objective})
    model = zoo.create_model(args.arch).train()
    x = torch.rand(args.batch, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch,))
    optimizer = build_optimizer(model, cfg)
    ema = EMA(model)

    def bare():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    def train_step():
        loss, _, _ = adversarial_step(model, model, x, y, cfg, step_generator(0, 0, 0, 0, x.device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        ema.update(model, 10)

    t_fb, t_step = _time_interleaved([bare, train_step], args.repeats, args.warmup)
    passes = args.attack_steps + (2 if args.objective != "pgd-at" else 1)
    floor = passes * t_fb
    print(f"{'model':<18}{'batch':>6}{'K':>4}{'fwd+bwd s':>11}{'floor s':>9}{'step s':>9}{'ratio':>7}{'img/s':>8}")
    print(f"{args.arch:<18}{args.batch:>6}{args.attack_steps:>4}{t_fb:>11.4f}{floor:>9.4f}{t_step:>9.4f}"
          f"{t_step / floor:>7.3f}{args.batch / t_step:>8.1f}")
    print(f"threads: {torch.get_num_threads()}, torch {torch.__version__}, objective {args.objective}")


if __name__ == "__main__":
    main()
