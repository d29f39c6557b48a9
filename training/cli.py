"""score-train: the command line over training.launch, training.register and training.toy (a thin click layer)."""

from __future__ import annotations

from pathlib import Path

import click

from zoo.cli_support import ErrorHandlingGroup, echo_json

from .config import DATA_ENV, parse_overrides
from .recipes import list_recipes, load_recipe, recipe_description, recipe_values


@click.group(cls=ErrorHandlingGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--recipe", metavar="NAME", help="Recipe name (see `score-train recipes`) or path to a .toml file.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override one config key (repeatable), e.g. --set epochs=5 --set eps=8/255.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), metavar="RUN_DIR", help="Run directory to create.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its last checkpoint.")
@click.option("--data-dir", type=click.Path(exists=True), metavar="DIR",
              help=f"Training data: a folder with the official files or one .npz (default: ${DATA_ENV}).")
@click.option("--device", default=None,
              help="cpu, cuda or cuda:K (default: cuda if a GPU is visible). Under torchrun each process takes "
                   "cuda:LOCAL_RANK and cuda:K is refused: choose GPUs with CUDA_VISIBLE_DEVICES.")
@click.option("--stop-after-steps", type=int, default=None, metavar="N",
              help="Stop (with a checkpoint) after N optimiser steps in total; continue later with --resume.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--register", "register_name", metavar="NAME", default=None,
              help="After training, evaluate the model and register it as user zoo entry NAME "
                   "(default settings of `score-train register`).")
@click.option("--log-dir", default="auto", show_default=True, metavar="DIR",
              help="TensorBoard logs: auto = RUN_DIR/tensorboard where tensorboard is installed, off = none.")
@click.option("--wandb", "wandb_project", default=None, metavar="PROJECT",
              help="Also log to this Weights & Biases project (needs wandb installed).")
@click.pass_context
def main(ctx, recipe, overrides, out_dir, resume, data_dir, device, stop_after_steps, no_progress, register_name,
         log_dir, wandb_project):
    """Adversarial training with SCORE (or TRADES / PGD-AT) from a recipe.

    \b
    Example:
      score-train --recipe cifar10-linf-tiny --data-dir /data/cifar10_train_jpeg.npz --out runs/tiny
      score-train --recipe cifar10-linf-tiny --data-dir /data/cifar10_train_jpeg.npz --out runs/tiny --resume
      torchrun --nproc-per-node 4 -m training --recipe cifar10-linf-wrn28-10 \\
          --set generated_data=/data/1m.npz --data-dir /data --out runs/wrn28
    The released model is RUN_DIR/model-best (load it with zoo.load_model). Under torchrun
    only rank 0 writes files; with --register the ranks share the AutoAttack evaluation and
    rank 0 writes the entry.
    """
    if ctx.invoked_subcommand is not None:
        return
    if not recipe or not out_dir:
        raise click.UsageError("--recipe and --out are required to train (or use a command: `score-train recipes`)")
    values = parse_overrides(overrides)
    if data_dir:
        values["data_dir"] = data_dir
    config = load_recipe(recipe, values)
    from .launch import launch

    def trained(run) -> None:
        click.echo(str(run.released) if run.finished else f"{run.run_dir} (stopped early; continue with --resume)")

    result = launch(config, out_dir, resume=resume, device=device, stop_after_steps=stop_after_steps,
                    progress=not no_progress, register_name=register_name, on_trained=trained, log_dir=log_dir,
                    wandb_project=wandb_project)
    if result is not None and result.registration is not None:  # None on the other processes under torchrun
        _report(result.registration)


def _report(reg) -> None:
    rep = reg.entry.reported
    click.echo(f"registered '{reg.entry.name}' in {reg.entry_path}")
    click.echo(f"  model     {reg.model_dir} (sha256 {reg.entry.sha256})")
    click.echo(f"  result    {reg.result_path}")
    click.echo(f"  card      {reg.card_path}")
    click.echo(f"  clean {rep['clean_acc']:.2f}% ({rep['clean_n_examples']} images), "
               f"AutoAttack {rep['autoattack_acc']:.2f}% ({rep['n_examples']} images)")
    click.echo(f"  publish with: score-zoo publish {reg.entry.name} --repo-id ORG/{reg.entry.name}")


@main.command("register")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--name", required=True, help="Name of the new zoo entry.")
@click.option("--builtin", is_flag=True, help="Write into the package's built-in entries (maintainers).")
@click.option("--which", type=click.Choice(["model-best", "model"]), default="model-best", show_default=True,
              help="The released model (best held-out PGD accuracy, as the official weights-best) or the last one.")
@click.option("--n-examples", type=int, default=None, help="AutoAttack on the first N test images (default: all).")
@click.option("--clean-n-examples", type=int, default=None,
              help="Clean accuracy on the first N test images (default: the AutoAttack images).")
@click.option("--data-dir", type=click.Path(exists=True), default=None,
              help="Test data (default: the bundled 1000-image subset).")
@click.option("--version", type=click.Choice(["standard", "plus", "rand", "custom"]), default="standard",
              show_default=True)
@click.option("--attacks", default=None, help="With --version custom: comma list, e.g. apgd-ce,apgd-t.")
@click.option("--n-iter", type=int, default=None, help="Reduce attack iterations (quick checks only).")
@click.option("--batch-size", type=int, default=500, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default=None, help="cpu, cuda or cuda:K (default: cuda if a GPU is visible).")
@click.option("--description", default="", help="One sentence for the card (default: generated).")
@click.option("--data-note", default="", help="What the evaluation data is, for the card.")
@click.option("--baseline", "baselines", multiple=True, metavar="NAME",
              help="Entry to compare with in the card (repeatable).")
@click.option("--study", "studies", multiple=True, metavar="FILE",
              help="Multi-seed study file the entry belongs to (see `score-zoo study`; repeatable); its card shows "
                   "each.")
@click.option("--overwrite", is_flag=True, help="Replace an entry of the same name.")
@click.option("--no-progress", is_flag=True)
def register_cmd(run_dir, name, builtin, which, n_examples, clean_n_examples, data_dir, version, attacks, n_iter,
                 batch_size, seed, device, description, data_note, baselines, studies, overwrite, no_progress):
    """Evaluate a finished run and register it as a zoo entry with its model card.

    \b
    Example:
      score-train register runs/tiny --name my-tiny --n-examples 200
      score-zoo load my-tiny && score-zoo publish my-tiny --repo-id me/my-tiny --dry-run
    """
    from .register import register_run

    registration = register_run(run_dir, name, builtin=builtin, which=which, n_examples=n_examples,
                                clean_n_examples=clean_n_examples, data_dir=data_dir, version=version,
                                attacks=attacks.split(",") if attacks else None, n_iter=n_iter, seed=seed,
                                batch_size=batch_size, device=device, description=description, data_note=data_note,
                                baselines=tuple(baselines), studies=studies, overwrite=overwrite, progress=not no_progress)
    if registration is not None:  # None on the other processes under torchrun
        _report(registration)


@main.command("recipes")
@click.option("--json", "as_json", is_flag=True, help="Print every recipe's full config as JSON.")
def recipes_cmd(as_json):
    """List the shipped recipes.

    \b
    Example:
      score-train recipes --json
    """
    names = list_recipes()
    if as_json:
        echo_json({name: {"description": recipe_description(name), "config": recipe_values(name)} for name in names})
        return
    width = max(len(n) for n in names)
    for name in names:
        click.echo(f"{name.ljust(width)}  {recipe_description(name)}")


@main.command("convert-generated")
@click.argument("inputs", nargs=-1, required=True, metavar="IN...")
@click.argument("out", type=click.Path(dir_okay=False), metavar="OUT")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def convert_generated_cmd(inputs, out, no_progress):
    """Write generated data (.npz files or hf:// references, compressed or not) as one uncompressed .npz,
    which training memory-maps. Several inputs are concatenated (e.g. the parts of a 20M set); the copy
    streams, so memory use does not grow with the files.

    \b
    Example:
      score-train convert-generated edm/1m_compressed.npz edm/1m.npz
      score-train convert-generated hf://datasets/P2333/DM-Improves-AT/cifar10/20m_part1.npz \\
          hf://datasets/P2333/DM-Improves-AT/cifar10/20m_part2.npz edm/20m.npz
    """
    from .generated import convert

    click.echo(str(convert(list(inputs), out, progress=not no_progress)))


@main.command("toy")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Run directory for toy.json and the figures.")
@click.option("--objectives", default=None, metavar="LIST",
              help="Comma list of Standard, PGDAT, PGDATconsistent (SCORE), TRADES (default: all four).")
@click.option("--distance", default=None, metavar="NAME",
              help="Training distance, the script's --divergence: KL, LSE, JSsqrt, L1, L2, Linf (default: KL).")
@click.option("--measure-distance", default=None, metavar="NAME",
              help="Distance of R_SCORE and R_standard, the script's --divergence_C (default: L1).")
@click.option("--iterations", type=int, default=None, help="Training iterations (default: 500).")
@click.option("--seed", type=int, default=None, help="Seed of the model and of every draw (default: 2).")
@click.option("--samples", default=None, metavar="N0,N1",
              help="Points of class 0 and class 1 drawn per iteration, also the class priors (default: 50000,10000).")
@click.option("--workers", type=int, default=None,
              help="Processes training the objectives side by side (default: one per objective); "
                   "the results do not depend on it.")
@click.option("--resume", is_flag=True, help="Continue the run in RUN_DIR from its checkpoints (same options).")
@click.option("--stop-after", type=int, default=None, metavar="N",
              help="Stop (with checkpoints) after N iterations of each objective; continue later with --resume.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print toy.json (final figures and curves) on stdout.")
def toy_cmd(out_dir, objectives, distance, measure_distance, iterations, seed, samples, workers, resume, stop_after,
            no_progress, as_json):
    """The paper's toy demonstration (Figures 1 and 2): two 1-D Gaussians, four objectives.

    \b
    Example:
      score-train toy --out runs/toy
      score-train toy --out runs/toy-lse --objectives PGDAT,PGDATconsistent --distance LSE --measure-distance L2
      score-train toy --out runs/toy --resume
    Writes RUN_DIR/toy.json (settings, C, final figures, curves), posteriors.json,
    posterior.png, curves.png and objectives.png; each objective is checkpointed
    every 10 iterations in RUN_DIR/checkpoints.
    """
    from .toy import ToySettings, parse_counts, run_toy

    values = {"objectives": tuple(objectives.split(",")) if objectives is not None else None,
              "distance": distance, "measure_distance": measure_distance, "iterations": iterations, "seed": seed,
              "counts": parse_counts(samples) if samples is not None else None}
    settings = ToySettings(**{k: v for k, v in values.items() if v is not None})
    summary = run_toy(settings, out_dir, workers=workers, progress=not no_progress, resume=resume,
                      stop_after=stop_after)
    if summary is None:
        click.echo(f"{out_dir} (stopped after iteration {stop_after}; continue with --resume)")
        return
    if as_json:
        echo_json(summary)
        return
    click.echo(f"C ({summary['C']['distance']}) {summary['C']['value']:.4f}, "
               f"C ({summary['C_measure']['distance']}) {summary['C_measure']['value']:.4f}")
    for name, run in summary["objectives"].items():
        f = run["final"]
        click.echo(f"{run['label']:<9} |P - P*| mean {f['mean_abs_error']:.4f} max {f['max_abs_error']:.4f}  "
                   f"R_SCORE {f['R_SCORE']:.4f}  R_standard {f['R_standard']:.4f}")
    click.echo(str(Path(out_dir) / "toy.json"))


if __name__ == "__main__":
    main()
