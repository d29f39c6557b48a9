"""Time one full training step (attack + loss + optimiser + EMA) in fp32 and in bf16 + channels_last.

    python bench/bench_train_step.py --arch wrn-10-1-swish --batch 128 --attack-steps 3

Both variants train copies of the same model on the same batch; the steps are
timed in alternation so that load from other jobs hits both alike. Reported:
seconds and images/s per variant, the speed-up fp32 / (bf16 + channels_last),
and the fp32 step against its work floor, (attack steps + 2) bare fp32
forward+backward passes. bf16 needs native support (CPU with AVX512-BF16 or
AMX, or a CUDA GPU); elsewhere the bf16 variant falls back to fp32 with a warning.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import zoo
from zoo.devices import resolve_device
from training.config import make_config
from training.ema import EMA
from training.objectives import adversarial_step
from training.precision import autocast, memory_format, use_bf16
from training.randomness import step_generator
from training.schedule import build_optimizer


def _time_interleaved(fns, repeats: int, warmup: int, device: torch.device) -> list[float]:
    """Median seconds of each function, timed in alternation."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # the device that ran, not the current one
            times[i].append(time.perf_counter() - t)
    return [statistics.median(t) for t in times]


def _step_fn(model, x, y, cfg, device, bf16: bool, channels_last: bool):
    layout = memory_format(channels_last)
    model = model.to(memory_format=layout)
    x = x.contiguous(memory_format=layout)
    optimizer = build_optimizer(model, cfg)
    ema = EMA(model)
    enabled = use_bf16(bf16, device)

    def amp():
        return autocast(device, enabled)

    def step():
        out = adversarial_step(model, model, x, y, cfg, 10, amp, step_generator(0, 0, 0, 0, device))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        ema.update(model, 10)
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="wrn-10-1-swish")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--attack-steps", type=int, default=3)
    ap.add_argument("--objective", default="score")
    ap.add_argument("--device", default=None, help="cpu, cuda or cuda:K (default: cuda:0 if available)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()

    device = torch.device(resolve_device(args.device))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(0)
    cfg = make_config({"architecture": args.arch, "batch_size": args.batch, "attack_steps": args.attack_steps,
                       "objective": args.objective})
    base = zoo.create_model(args.arch).to(device).train()
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    floor_model = copy.deepcopy(base)

    def bare():
        floor_model.zero_grad(set_to_none=True)
        F.cross_entropy(floor_model(x), y).backward()

    fp32 = _step_fn(copy.deepcopy(base), x, y, cfg, device, bf16=False, channels_last=False)
    fast = _step_fn(copy.deepcopy(base), x, y, cfg, device, bf16=True, channels_last=True)
    t_fb, t32, tfast = _time_interleaved([bare, fp32, fast], args.repeats, args.warmup, device)
    passes = args.attack_steps + (1 if args.objective == "pgd-at" else 2)
    print(f"{'variant':<22}{'step s':>9}{'img/s':>9}")
    print(f"{'fp32':<22}{t32:>9.4f}{args.batch / t32:>9.1f}")
    print(f"{'bf16 + channels_last':<22}{tfast:>9.4f}{args.batch / tfast:>9.1f}")
    print(f"speed-up fp32 / (bf16 + channels_last): {t32 / tfast:.2f}x; fp32 step / floor of {passes} bare "
          f"forward+backward passes: {t32 / (passes * t_fb):.3f}")
    print(f"{args.arch}, batch {args.batch}, {args.attack_steps}-step attack, objective {args.objective}, "
          f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}")


if __name__ == "__main__":
    main()
