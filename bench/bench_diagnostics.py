"""The attack-failure indicators: their cost against a standard evaluation, and what they say about masked models.

``--cost``: a standard evaluation of MODEL on the first N bundled images (the
harness's evaluate, in this process), then ``run_indicators`` with its default
settings on the same images, reading Square's breaks from the evaluation's
outcomes (as an evaluation would call it). Prints both times (wall and this
process's CPU seconds, the fairer figure on a shared machine) and the ratio.

``--table``: for the bundled models and the masked models of
tests/masked_models.py, on the first N images: standard AutoAttack (the
harness's evaluate), the same with ``bpda=`` through the non-differentiable
layer where there is one (APGD-CE and APGD-T through BPDA on AutoAttack's
survivors: the robust accuracy after them and the ``external`` figure), and
the indicators that fire (default settings; with BPDA, the evaluation's own,
judging the attacks through BPDA). Prints Markdown rows for docs/diagnostics.md.

    python bench/bench_diagnostics.py --cost --n 200 --batch-size 50
    python bench/bench_diagnostics.py --table --n 32

Figures on the bundled subset (JPEG-decoded test copy) are not leaderboard figures.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

from harness.diagnostics import run_indicators, verdict
from harness.engine.checks import EvaluationCheckError
from harness.evaluation import evaluate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from masked_models import MASKED, bundled, images  # noqa: E402

BPDA = {"quantized": ["Quantize"], "mean-sparse": ["MeanSparse"]}
EPS = 8 / 255


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def standard(model, n: int, batch_size: int):
    return evaluate(model, "cifar10", "Linf", None, n, batch_size=batch_size, workers=1, progress=False, seed=0,
                    diagnostics=False)


def fired(records) -> str:
    names = [f"{r['name']} ({r['figure']:.4g})" for r in records if r["verdict"] == "warning"]
    return ", ".join(names) or "none"


def cost(args) -> None:
    model = bundled(args.model)
    result, wall_ev, cpu_ev = timed(lambda: standard(model, args.n, args.batch_size))
    ev = result.evaluation
    x, y = images(args.n)
    records, wall_ind, cpu_ind = timed(lambda: run_indicators(model, x, y, EPS, outcome=ev.per_example["outcome"],
                                                              eps_text="8/255"))
    print(f"{args.model}, {args.n} bundled images, batch {args.batch_size}, one process, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    print(f"standard evaluation: clean {ev.clean_accuracy:.2f}%, robust {ev.robust_accuracy:.2f}%, "
          f"{wall_ev:.1f} s wall, {cpu_ev:.1f} s CPU")
    print(f"indicators (verdict {verdict(records)}; fired: {fired(records)}): {wall_ind:.1f} s wall, "
          f"{cpu_ind:.1f} s CPU")
    print(f"ratio: {100 * wall_ind / wall_ev:.1f} % of the wall time, {100 * cpu_ind / cpu_ev:.1f} % of the CPU time")


def table(args) -> None:
    rows = [(name, lambda name=name: bundled(name)) for name in ("cifar10-linf-tiny", "cifar10-linf-tiny-trades")]
    rows += [(name, build) for name, build in MASKED.items() if name in args.masked.split(",")]
    x, y = images(args.n)
    print("| model | clean | AutoAttack | indicators fired | AutoAttack with BPDA | indicators fired with BPDA |")
    print("|---|---|---|---|---|---|")
    for name, build in rows:
        model = build()
        try:
            ev = standard(model, args.n, args.batch_size).evaluation
        except EvaluationCheckError as e:   # the randomized model: the harness refuses --version standard
            records = run_indicators(model, x, y, EPS, eps_text="8/255")
            print(f"| {name} | - | refused: {e} | {fired(records)} | - | - |", flush=True)
            continue
        records = run_indicators(model, x, y, EPS, outcome=ev.per_example["outcome"], eps_text="8/255")
        cells = [name, f"{ev.clean_accuracy:.2f} %", f"{ev.robust_accuracy:.2f} %", fired(records), "-", "-"]
        if name in BPDA:
            through = evaluate(model, "cifar10", "Linf", None, args.n, batch_size=args.batch_size, workers=1,
                               progress=False, seed=0, bpda=BPDA[name])
            ev = through.evaluation
            cells[4:] = [f"{ev.extra_attacks['robust_accuracy']:.2f} % (`{BPDA[name][0]}`; external "
                         f"{through.model_info.external or '-'})", fired(ev.diagnostics["indicators"])]
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cost", action="store_true")
    p.add_argument("--table", action="store_true")
    p.add_argument("--model", default="cifar10-linf-tiny")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=50)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--masked", default=",".join(MASKED), help="Masked models of the table (comma list).")
    args = p.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)   # 1: no idle threads spinning on a shared machine, CPU seconds = work
    if args.cost:
        cost(args)
    if args.table:
        table(args)


if __name__ == "__main__":
    main()
