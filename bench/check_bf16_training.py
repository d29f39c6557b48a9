"""Check that bf16 training does not hurt: short tiny-recipe runs, fp32 vs bf16, paired by seed.

    python bench/check_bf16_training.py --data-dir ../shared/data/cifar10_train_jpeg.npz \\
        --seeds 0 1 2 --train-subset 5632 --out runs/bf16check

Each seed trains the ``cifar10-linf-tiny`` recipe twice on the first
``--train-subset`` training images (the first 512 held out), once with
``bf16 = false`` and once with bf16 autocast, everything else equal (same
initialisation, batches and attack noise). On a CPU without native bf16 the
bf16 run uses the emulation (``bf16_emulate``): about 10x slower, the same
numerics. Reported: the released model's held-out clean and PGD accuracy per
run, and the paired difference bf16 - fp32 as mean +- standard deviation over
seeds. Runs resume: re-running the command continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.recipes import load_recipe
from training.trainer import train
from zoo import read_config
from zoo.studies import mean_std, spread

VARIANTS = {"fp32": {"bf16": False}, "bf16": {"bf16": True, "bf16_emulate": True}}


def _spread(values: list[float]) -> str:
    return spread(*mean_std(values), signed=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--train-subset", type=int, default=5632)
    ap.add_argument("--recipe", default="cifar10-linf-tiny")
    ap.add_argument("--out", default="runs/bf16check")
    args = ap.parse_args()

    results: dict[tuple[str, int], dict] = {}
    for seed in args.seeds:
        for variant, values in VARIANTS.items():
            run_dir = Path(args.out) / f"{variant}-s{seed}"
            if not (run_dir / "model").is_dir():
                cfg = load_recipe(args.recipe, {"data_dir": args.data_dir, "train_subset": args.train_subset,
                                                "seed": seed, **values})
                train(cfg, run_dir, resume=run_dir.exists(), progress=False)
            info = json.loads((run_dir / "run_info.json").read_text())
            selected = read_config(run_dir / "model-best")["training"]  # the epoch the run released
            results[variant, seed] = {**selected, "bf16": info["bf16"]}

    print(f"{'run':<12}{'bf16 used':>10}{'epoch':>7}{'held-out clean':>16}{'held-out PGD':>14}")
    for (variant, seed), r in results.items():
        print(f"{variant}-s{seed:<7}{str(r['bf16']):>10}{r['epoch']:>7}{r['holdout_clean_acc']:>16.2f}"
              f"{r['holdout_robust_acc']:>14.2f}")
    for key in ("holdout_clean_acc", "holdout_robust_acc"):
        diffs = [results["bf16", s][key] - results["fp32", s][key] for s in args.seeds]
        print(f"bf16 - fp32 {key}: {_spread(diffs)} over seeds {args.seeds}")
    print(f"recipe {args.recipe}, first {args.train_subset} training images of {args.data_dir}")


if __name__ == "__main__":
    main()
