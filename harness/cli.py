"""score-harness: evaluate models under AutoAttack, merge shards, render and verify leaderboards."""

from __future__ import annotations

import sys

import click

from zoo.cli_support import ErrorHandlingGroup, echo_json
from zoo.datasets_meta import THREAT_MODELS
from zoo.errors import ConfigError

from .options import EvaluationOptions, click_options


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main():
    """Evaluate robust image classifiers with AutoAttack and build RobustBench-style leaderboards."""


@main.command()
@click.argument("model")
@click_options
@click.option("--json", "as_json", is_flag=True, help="Print the result JSON on stdout.")
def evaluate(model, as_json, **options):
    """Evaluate MODEL: a zoo entry, a model directory, robustbench:NAME or package.module:callable.

    \b
    Example:
      score-harness evaluate cifar10-linf --data-dir ~/data --out results/cifar10-linf.json
      score-harness evaluate cifar10-linf-tiny --n-examples 200 --eps 1/255,2/255,4/255,8/255 --out curve.json
      torchrun --nproc-per-node 2 -m harness evaluate cifar10-linf --data-dir ~/data --out r.json
      score-harness evaluate cifar10-linf-tiny --n-examples 128 --extra-attacks malt --out r.json
      score-harness evaluate my.module:randomized_net --version rand --repeats 5 --out r.json
    """
    import warnings

    from .data import BundledSubsetWarning
    from .evaluation import TrainModeWarning
    from .evaluation import evaluate as run

    warnings.simplefilter("ignore", BundledSubsetWarning)  # reported once, from the result, below
    warnings.simplefilter("ignore", TrainModeWarning)
    out = options["out"]
    result = run(model, options=EvaluationOptions(**options))
    from zoo.devices import World

    if World.from_env().rank != 0:  # under torchrun rank 0 reports
        return
    _report_warnings(result.evaluation.warnings)
    if result.evaluation.randomized:
        from .assembly import RANDOMIZED_NOTE

        click.echo(f"note: {RANDOMIZED_NOTE} The result is marked (unreliable, evaluation.randomized); "
                   "for a randomized defense use --version rand.", err=True)
    if as_json:
        echo_json(result.to_dict())
    else:
        ev = result.evaluation
        steps = ", ".join(f"{a} {v:.2f}%" for a, v in ev.robust_accuracy_after.items())
        where = f" (shard {ev.shard['index']}/{ev.shard['count']}, examples {ev.shard['start']}..{ev.shard['stop'] - 1})" if ev.shard else ""
        click.echo(f"clean {ev.clean_accuracy:.2f}%, robust {ev.robust_accuracy:.2f}% on {ev.n_examples} {ev.dataset} "
                   f"examples{where}, {ev.threat_model} eps {ev.eps_text} [{steps}]" + (f" -> {out}" if out else ""))
        _echo_curve(ev, out)
        _echo_cost(ev)
        if ev.extra_attacks:
            from .beyond import describe

            click.echo(describe(result))
        if ev.repeats:
            click.echo("repeats: " + ", ".join(f"seed {s} {a:.2f}%" for s, a in
                                               zip(ev.repeats["seeds"], ev.repeats["robust_accuracy"]))
                       + f"; worst case per example {ev.robust_accuracy:.2f}%")
        if ev.adversarial:
            click.echo(f"adversarial examples: {ev.adversarial['count']} -> {ev.adversarial['path']}")
        _echo_diagnostics(ev)


def _echo_diagnostics(ev) -> None:
    """The attack-failure indicators' verdict and, where they warn, what to do next."""
    if ev.diagnostics_verdict() is None:
        return
    from zoo.results import NOT_A_CLAIM

    from .diagnostics import next_steps

    fired = ev.fired_indicators()
    click.echo(f"attack-failure indicators: {ev.diagnostics_text()}"
               + (f": {NOT_A_CLAIM}" if fired else ""))
    for line in next_steps(fired):
        click.echo(f"next: {line}")


@main.command()
@click.argument("model")
@click_options
@click.option("--sample", type=int, default=None,
              help="Images of the sample run (default: 1 % of the run, at least one chunk per worker).")
@click.option("--json", "as_json", is_flag=True, help="Print the projection as JSON on stdout.")
def estimate(model, sample, as_json, **options):
    """Project the passes and time of `evaluate MODEL ...` (same options) from a small sample run.

    \b
    Example:
      score-harness estimate cifar10-linf-tiny --n-examples 1000 --batch-size 50
      score-harness estimate cifar10-linf --data-dir ~/data --sample 200
    """
    import warnings

    from .data import BundledSubsetWarning
    from .estimate import describe, estimate as run

    warnings.simplefilter("ignore", BundledSubsetWarning)
    report = run(model, sample=sample, options=EvaluationOptions(**{**options, "progress": False}))
    if as_json:
        echo_json(report)
    else:
        for line in describe(report):
            click.echo(line)


def _echo_curve(ev, out) -> None:
    if len(ev.curve) < 2:
        return
    click.echo("robust accuracy by eps (nested): "
               + ", ".join(f"{p['eps_text']} {p['robust_accuracy']:.2f}%" for p in ev.curve))
    if out:
        from .curves import curve_paths

        click.echo("curve plot: " + ", ".join(str(p) for p in curve_paths(out)))


def _echo_cost(ev) -> None:
    if ev.cost is not None:
        from .cost import passes_text

        click.echo(f"cost: {passes_text(ev.cost['total'])} in {ev.cost['total']['seconds']:.1f} s")


def _report_warnings(items) -> None:
    for w in items:
        click.echo(f"warning ({w['source']}, x{w['count']}): {w['message']}", err=True)


@main.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Merged result JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the merged result JSON on stdout.")
def merge(shards, out, as_json):
    """Merge shard results (from --shard K/N) into one result.

    \b
    Example:
      score-harness merge r0.json r1.json r2.json r3.json --out result.json
    """
    from .merge import merge_files

    result = merge_files(list(shards), out)
    if as_json:
        echo_json(result.to_dict())
    else:
        ev = result.evaluation
        click.echo(f"merged {len(shards)} shards: clean {ev.clean_accuracy:.2f}%, robust {ev.robust_accuracy:.2f}% "
                   f"on {ev.n_examples} examples -> {out}")
        _echo_curve(ev, out)
        _echo_diagnostics(ev)
        _echo_cost(ev)


@main.command()
@click.argument("folder", type=click.Path(file_okay=False), required=False)
@click.option("--zoo", "include_zoo", is_flag=True, help="Add the zoo's registered entries (their reported figures).")
@click.option("--dataset", default=None, help="Only this dataset.")
@click.option("--threat-model", default=None, help="Only this threat model (Linf, L2, L1, corruptions).")
@click.option("--together", is_flag=True,
              help="Rank rows that are not leaderboard-grade (subset, unofficial data, custom attacks, reduced "
                   "iterations, shards) together with the others, marked; by default they are ranked apart.")
@click.option("--format", "fmt", type=click.Choice(["md", "html", "json"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write here instead of stdout.")
@click.option("--curves", type=click.Path(dir_okay=False), default=None,
              help="Also draw the robustness curves of FOLDER's results in one figure (.png or .svg).")
def leaderboard(folder, include_zoo, dataset, threat_model, together, fmt, out, curves):
    """Render a leaderboard ranked as RobustBench ranks, from a model_info tree and/or the zoo.

    Linf/L2 rank by `external` where a file has it, else `autoattack_acc`;
    corruptions by `corruptions_acc`. Files that cannot be ranked are named on
    stderr with the reason.

    \b
    Example:
      score-harness leaderboard robustbench/model_info --dataset cifar10 --threat-model Linf --format html --out lb.html
      score-harness leaderboard results/ --zoo --dataset cifar10 --together
      score-harness leaderboard results/ --dataset cifar10 --curves curves.svg
    """
    from zoo.fileio import atomic_write_text

    from .leaderboard import RENDERERS, build

    if curves and folder is None:
        raise ConfigError("--curves draws the results of a FOLDER; give one")
    board = build(folder, dataset, threat_model, include_zoo)
    for skipped in board.skipped:
        click.echo(f"skipped {skipped.path}: {skipped.reason}", err=True)
    text = RENDERERS[fmt](board, together)
    if curves:
        from .curves import plot_tree

        click.echo(f"wrote {plot_tree(folder, curves, dataset, threat_model)} curve(s) to {curves}", err=True)
    if out:
        atomic_write_text(out, text)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("result", type=click.Path(dir_okay=False))
@click.option("--n-examples", type=int, default=None, help="Prefix to re-evaluate (default: min(n, 500)).")
@click.option("--model", default=None, help="Model spec, if the result was made from a Python object.")
@click.option("--device", default=None)
@click.option("--data-dir", type=click.Path(), default=None, help="Data folder (default: the one the result used).")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option("--workers", type=int, default=None, help="Local worker processes (default: one per CPU core / GPU).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def verify(result, n_examples, model, device, data_dir, confidence, workers, as_json):
    """Re-evaluate a prefix of RESULT and check its claimed robust accuracy (Clopper-Pearson).

    Exits 1 when the claim is inconsistent, or when the attack-failure indicators (recorded or re-run on the
    prefix) warn or their verdicts differ.

    \b
    Example:
      score-harness verify results/cifar10-linf.json --n-examples 500
    """
    from .verification import verify as run

    report = run(result, n_examples, model=model, device=device, data_dir=data_dir, confidence=confidence,
                 workers=workers)
    if as_json:
        echo_json(report.to_dict())
    else:
        click.echo(report.summary())
    if not report.verified:
        sys.exit(1)


@main.command()
@click.argument("models", nargs=-1, required=True)
@click.option("--n-images", type=click.IntRange(1, 64), default=8, show_default=True,
              help="The first N test images.")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "svhn"]), default=None,
              help="Dataset (default: the first model's own, else cifar10).")
@click.option("--data-dir", type=click.Path(), default=None, help="Test data (default: the bundled subset).")
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG to write.")
def gradients(models, n_images, dataset, data_dir, out):
    """Input gradients of the loss of each MODEL for the same test images, one column per model.

    MODEL is anything `evaluate` takes, or untrained:ARCH for an untrained network.

    \b
    Example:
      score-harness gradients cifar10-linf-tiny cifar10-linf-tiny-trades untrained:wrn-10-1-swish --out grads.png
    """
    import warnings

    from zoo.datasets_meta import check_dataset

    from .data import BundledSubsetWarning, load_tensors
    from .models import resolve_model
    from .pictures import gradient_grid

    resolved = [resolve_model(spec, dataset) for spec in models]
    dataset = check_dataset(dataset or resolved[0].defaults.get("dataset", "cifar10"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BundledSubsetWarning)
        x, y = load_tensors(dataset, "test", data_dir, n_images)
    gradient_grid([(r.spec, r.model.eval()) for r in resolved], x, y, dataset, out)
    click.echo(f"input gradients of {len(models)} model(s) on {n_images} {dataset} images -> {out}")


@main.command()
@click.argument("result", type=click.Path(dir_okay=False))
@click.option("--adversarial", type=click.Path(dir_okay=False), default=None,
              help="The --save-adversarial file (default: the one RESULT records).")
@click.option("--max-examples", type=click.IntRange(1, 64), default=8, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="PNG to write.")
def show(result, adversarial, max_examples, out):
    """Draw the examples an evaluation broke: clean, adversarial and the magnified perturbation.

    \b
    Example:
      score-harness evaluate cifar10-linf-tiny --n-examples 200 --out r.json --save-adversarial r.adv.safetensors
      score-harness show r.json --out broken.png
    """
    from .adversarial import saved_adversarial
    from .pictures import adversarial_grid
    from zoo.results import EvaluationResult

    _, tensors, about = saved_adversarial(EvaluationResult.from_json(result).evaluation, result, adversarial)
    count = adversarial_grid(tensors, about, out, max_examples)
    click.echo(f"{count} of {len(tensors['indices'])} broken example(s) -> {out}")


def _names(ctx, param, value):
    return [n.strip() for item in value for n in item.split(",") if n.strip()]


@main.command()
@click.argument("model")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "svhn"]), default=None,
              help="Dataset (default: the model's own, else cifar10).")
@click.option("--threat-model", type=click.Choice(THREAT_MODELS), default=None,
              help="Threat model (default: the model's own, else Linf).")
@click.option("--eps", default=None, help="Budget (default: Linf 8/255, L2 0.5, L1 12).")
@click.option("--n-examples", type=click.IntRange(min=1), default=64, show_default=True,
              help="The first N test images.")
@click.option("--n-iter", type=click.IntRange(min=1), default=100, show_default=True,
              help="APGD-CE iterations N (AutoAttack's); the indicators also run N/4, N/2 and 2N.")
@click.option("--bpda", multiple=True, callback=_names, metavar="NAME",
              help="Attack through these modules with BPDA (module path or class name; repeat or comma list), "
                   "e.g. --bpda Quantize.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda or cuda:K (default: cuda if a GPU is visible).")
@click.option("--data-dir", type=click.Path(), default=None, help="Test data (default: the bundled subset).")
@click.option("--weights", type=click.Path(), default=None,
              help="Weights (.safetensors or .pt state dict) for a package.module:callable MODEL.")
@click.option("--model-dir", default="./models", show_default=True, help="RobustBench checkpoint folder for robustbench:NAME.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Draw accuracy against eps (up to the [0, 1] box) and against iterations (.png or .svg).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def diagnose(model, dataset, threat_model, eps, n_examples, n_iter, bpda, seed, device, data_dir, weights, model_dir,
             plot, as_json):
    """Attack-failure indicators for MODEL on a few test images: can its AutoAttack number be trusted?

    Silent gradients, Square beating the gradient attacks, accuracy left at 4x eps
    or in the whole [0, 1] box, APGD still improving with twice the iterations,
    randomness and gradients inside the forward pass (see docs/diagnostics.md).
    Exits 0 whatever the verdict; each warning says what to do next.

    \b
    Example:
      score-harness diagnose cifar10-linf-tiny --plot diagnosis.png
      score-harness diagnose my.module:quantized_net --bpda Quantize --json
    """
    from .diagnostics import diagnose as run
    from .diagnostics import plot_indicators

    report = run(model, dataset, threat_model, eps, n_examples, n_iter, bpda=bpda, seed=seed, device=device,
                 data_dir=data_dir, weights=weights, model_dir=model_dir)
    if plot:
        plot_indicators(report["indicators"], plot, f"{report['model']}: {report['dataset']} {report['threat_model']} "
                                                    f"eps {report['eps']}, {report['n_examples']} examples"
                                                    + (" (BPDA)" if report["bpda"] else ""))
    if as_json:
        echo_json(report)
        return
    click.echo(f"{report['model']}: {report['dataset']} {report['threat_model']} eps {report['eps']}, "
               f"{report['n_examples']} examples" + (f", BPDA through {', '.join(report['bpda'])}" if report["bpda"] else "")
               + f" ({report['duration_s']:.0f} s)")
    click.echo(f"{'indicator':<31} {'figure':>8} {'threshold':>9}  verdict  detail")
    for r in report["indicators"]:
        figure = "-" if r["figure"] is None else f"{r['figure']:.4g}"
        click.echo(f"{r['name']:<31} {figure:>8} {r['threshold']:>9g}  {r['verdict']:<7}  {r['detail']}")
    click.echo(f"verdict: {report['verdict']}")
    for line in report["advice"]:
        click.echo(f"next: {line}")
    if plot:
        click.echo(f"picture: {plot}")


@main.command("export-external")
@click.argument("result", type=click.Path(dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="The .pt tensor to write.")
@click.option("--adversarial", type=click.Path(dir_okay=False), default=None,
              help="The --save-adversarial file (default: the one RESULT records).")
@click.option("--data-dir", type=click.Path(), default=None, help="Test data (default: the one RESULT used).")
def export_external(result, out, adversarial, data_dir):
    """Write RESULT's adversarial images as RobustBench's external submission: one .pt tensor (N, 3, H, W).

    Images in test-set order, floats in [0, 1]: the adversarial example where an
    attack broke the image, else the clean image. Re-score it with check-external.

    \b
    Example:
      score-harness evaluate cifar10-linf --data-dir ~/data --extra-attacks malt --out r.json --save-adversarial r.adv.safetensors
      score-harness export-external r.json --out adv.pt
    """
    from .external import export_external as run

    info = run(result, out, adversarial, data_dir)
    click.echo(f"{info['n_examples']} {info['dataset']} images ({info['adversarial']} adversarial), tensor "
               f"{tuple(info['shape'])}, {info['threat_model']} eps {info['eps']} -> {out}")


@main.command("check-external")
@click.argument("model")
@click.argument("adv", type=click.Path(dir_okay=False))
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100", "svhn"]), default=None,
              help="Dataset (default: the model's own, else cifar10).")
@click.option("--threat-model", type=click.Choice(THREAT_MODELS), default=None,
              help="Threat model (default: the model's own, else Linf).")
@click.option("--eps", default=None, help="Budget (default: the standard one of the threat model).")
@click.option("--data-dir", type=click.Path(), default=None, help="Test data (default: the bundled subset).")
@click.option("--device", default=None)
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_external(model, adv, dataset, threat_model, eps, data_dir, device, batch_size, as_json):
    """Re-score ADV, a .pt tensor of adversarial images for MODEL, as RobustBench re-scores submissions.

    Checks shape, range [0, 1] and the eps bound against the clean test images
    (the first N, in order), then reports MODEL's accuracy on ADV.

    \b
    Example:
      score-harness check-external cifar10-linf adv.pt --data-dir ~/data
    """
    from .external import check_external as run

    report = run(model, adv, dataset, threat_model, eps, data_dir, device, batch_size)
    if as_json:
        echo_json(report)
    else:
        click.echo(f"{adv}: {report['n_examples']} images within {report['threat_model']} eps {report['eps']} "
                   f"(largest {report['max_perturbation']:.6g}); clean {report['clean_accuracy']:.2f}%, "
                   f"robust {report['robust_accuracy']:.2f}% ({report['model']})")


if __name__ == "__main__":
    main()
