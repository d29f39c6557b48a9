"""score-train: the command line over training.train (a thin click layer)."""

from __future__ import annotations

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
@click.option("--device", default=None, help="cpu or cuda[:i] (default: cuda if available, under torchrun cuda:LOCAL_RANK).")
@click.option("--stop-after-steps", type=int, default=None, metavar="N",
              help="Stop (with a checkpoint) after N optimiser steps in total; continue later with --resume.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_context
def main(ctx, recipe, overrides, out_dir, resume, data_dir, device, stop_after_steps, no_progress):
    """Adversarial training with SCORE (or TRADES / PGD-AT) from a recipe.

    \b
    Example:
      score-train --recipe cifar10-linf-tiny --data-dir /data/cifar10_train_jpeg.npz --out runs/tiny
      score-train --recipe cifar10-linf-tiny --data-dir /data/cifar10_train_jpeg.npz --out runs/tiny --resume
      torchrun --nproc-per-node 4 -m training --recipe cifar10-linf-wrn28-10 \\
          --set generated_data=/data/1m.npz --data-dir /data --out runs/wrn28
    The final EMA model is written to RUN_DIR/model (load it with zoo.load_model).
    """
    if ctx.invoked_subcommand is not None:
        return
    if not recipe or not out_dir:
        raise click.UsageError("--recipe and --out are required to train (or use a command: `score-train recipes`)")
    values = parse_overrides(overrides)
    if data_dir:
        values["data_dir"] = data_dir
    config = load_recipe(recipe, values)
    from .trainer import train

    run_dir = train(config, out_dir, resume=resume, device=device, stop_after_steps=stop_after_steps,
                    progress=not no_progress)
    final = run_dir / "model"
    click.echo(str(final) if final.is_dir() else f"{run_dir} (stopped early; continue with --resume)")


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


if __name__ == "__main__":
    main()
