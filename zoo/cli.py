"""``score-zoo``: list, inspect, import, load and publish SCORE Zoo models."""

from __future__ import annotations

import click

from . import registry
from .cli_support import ErrorHandlingGroup, echo_json


@click.group(cls=ErrorHandlingGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="score-zoo")
def main():
    """SCORE Zoo: adversarially robust models, verified and ready to use.

    \b
    Example:
      score-zoo list
      score-zoo info cifar10-linf
      score-zoo load cifar10-linf
    """


def _fmt_acc(value) -> str:
    return "-" if value is None else f"{float(value):.2f}"


@main.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def list_cmd(as_json: bool):
    """List the zoo entries with their reported accuracies.

    \b
    Example:
      score-zoo list --json
    """
    entries = registry.list_entries()
    if as_json:
        echo_json([e.to_dict() for e in entries])
        return
    header = f"{'name':<26} {'dataset':<9} {'threat':<12} {'architecture':<17} {'clean':>6} {'AA':>6}  weights"
    click.echo(header)
    click.echo("-" * len(header))
    for e in entries:
        where = "bundled" if e.local_dir else ("hub" if e.published else "origin only")
        click.echo(f"{e.name:<26} {e.dataset:<9} {e.threat_model + ' ' + e.eps:<12} {e.architecture:<17} "
                   f"{_fmt_acc(e.reported.get('clean_acc')):>6} {_fmt_acc(e.reported.get('autoattack_acc')):>6}  {where}")


@main.command("info")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print the entry as JSON.")
def info_cmd(name: str, as_json: bool):
    """Show everything known about one entry.

    \b
    Example:
      score-zoo info cifar10-linf
    """
    entry = registry.get_entry(name)
    data = entry.to_dict()
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        if isinstance(value, dict):
            click.echo(f"{key}:")
            for k, v in value.items():
                click.echo(f"  {k}: {v}")
        elif value not in (None, "", [], {}):
            click.echo(f"{key}: {value}")


@main.command("import")
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@click.option("--arch", required=True, help="Architecture name, e.g. wrn-28-10-swish.")
@click.option("--num-classes", type=int, default=None, help="Number of classes (default: the dataset's).")
@click.option("--dataset", default="cifar10", show_default=True, help="cifar10, cifar100 or svhn (sets normalisation).")
@click.option("--threat-model", default=None, help="Threat model the weights were trained for (recorded in config.json).")
@click.option("--eps", default=None, help="Perturbation budget, e.g. 8/255 (recorded in config.json).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Model directory to create.")
@click.option("--overwrite", is_flag=True, help="Replace an existing model directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def import_cmd(checkpoint, arch, num_classes, dataset, threat_model, eps, out_dir, overwrite, as_json):
    """Convert an original .pt checkpoint (SCORE, RobustBench) into a model directory.

    The pickle is read with weights_only=True; every key and shape must match
    the architecture. Prints the sha256 of the written model.safetensors.

    \b
    Example:
      score-zoo import WRN-28-10_cifar10.pt --arch wrn-28-10-swish --out models/cifar10-linf
    """
    from .checkpoints import import_checkpoint

    eps_value = registry.parse_eps(eps) if eps is not None else None
    digest = import_checkpoint(checkpoint, arch, num_classes, dataset, out_dir, threat_model, eps_value, overwrite)
    if as_json:
        echo_json({"out": out_dir, "sha256": digest})
    else:
        click.echo(f"wrote {out_dir}/model.safetensors")
        click.echo(f"sha256 {digest}")


if __name__ == "__main__":
    main()
