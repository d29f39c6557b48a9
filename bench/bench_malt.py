"""The cost and the effect of MALT after standard AutoAttack (``--extra-attacks malt``).

One evaluation with ``--extra-attacks malt``: its AutoAttack stages are exactly
the standard run's (same chunks, same answers), so the time of each stage comes
from the chunk records (seconds per task, from the state dir) and the robust
accuracies of both from the one result. ``--compare`` also times a separate
standard-only run (wall clock) for the total.

    python bench/bench_malt.py --model cifar10-linf-tiny --n 64 --workers 1

Figures on the bundled 1000-image subset (JPEG-decoded test copy) are not
leaderboard figures. ``--n-iter`` (fewer iterations) is for a smoke run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import torch

from harness.evaluation import evaluate


def stage_seconds(state: Path, n_aa_levels: int) -> tuple[float, float]:
    """(AutoAttack's clean pass + attacks, the extra stage) in summed task seconds."""
    aa = extra = 0.0
    for path in state.glob("*-L*-c*.pt"):
        level = int(path.name.split("-L")[1].split("-")[0])
        seconds = float(torch.load(path, map_location="cpu", weights_only=True)["seconds"])
        if level <= n_aa_levels:
            aa += seconds
        else:
            extra += seconds
    return aa, extra


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="cifar10-linf-tiny")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n-iter", type=int, default=None)
    p.add_argument("--compare", action="store_true", help="Also time a separate standard-only run.")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    kw = dict(batch_size=args.batch_size, seed=args.seed, device=args.device, data_dir=args.data_dir,
              n_iter=args.n_iter, workers=args.workers, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        r = evaluate(args.model, n_examples=args.n, out=os.path.join(tmp, "malt.json"), extra_attacks=["malt"], **kw)
        wall = time.perf_counter() - t0
        aa_s, malt_s = stage_seconds(Path(tmp) / "malt.state", len(r.evaluation.autoattack["attacks"]))
        standard_wall = None
        if args.compare:
            t0 = time.perf_counter()
            plain = evaluate(args.model, n_examples=args.n, out=os.path.join(tmp, "plain.json"), **kw)
            standard_wall = time.perf_counter() - t0
            assert plain.evaluation.per_example == r.evaluation.per_example
    ev, extra = r.evaluation, r.evaluation.extra_attacks
    survivors = round(ev.robust_accuracy * ev.n_examples / 100)
    print(f"model {args.model}, {ev.n_examples} images ({ev.data['source']}), {ev.threat_model} {ev.eps_text}, "
          f"device {ev.device}, torch {torch.__version__}, {platform.processor() or platform.machine()}")
    print(f"clean {ev.clean_accuracy:.2f}%  AutoAttack (standard) {ev.robust_accuracy:.2f}%  "
          f"+ MALT {extra['robust_accuracy']:.2f}%  (MALT broke {extra['broken']['malt']} of {survivors} survivors); "
          f"external={r.model_info.external}")
    print(f"task seconds: AutoAttack {aa_s:.1f} s, MALT {malt_s:.1f} s (+{100 * malt_s / aa_s:.0f}%); "
          f"wall standard+MALT {wall:.1f} s" + (f", standard alone {standard_wall:.1f} s" if standard_wall else ""))


if __name__ == "__main__":
    main()
