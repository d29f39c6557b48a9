"""``score-zoo``: list, inspect, import, load and publish SCORE Zoo models."""

from __future__ import annotations

import click

from . import registry
from .cli_support import ErrorHandlingGroup, echo_json, verbose_option


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


SOURCE_LABELS = {"model-dir": "model directory", "bundled": "bundled in the package", "local": "local model directory",
                 "hub": "Hugging Face Hub", "authors": "the authors' server (imported)",
                 "robustbench-gdrive": "RobustBench's Google Drive copy (imported)"}


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
        where = ("bundled" if e.builtin else "local") if e.local_dir else ("hub" if e.published else "origin only")
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



@main.command("load")
@click.argument("name")
@click.option("--revision", default=None, help="Hub revision (branch, tag or commit); default: the entry's pinned one.")
@click.option("--device", default="cpu", show_default=True, help="Device to load the model on: cpu, cuda or cuda:K.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@verbose_option
def load_cmd(name: str, revision: str | None, device: str, as_json: bool):
    """Download (or find in the cache), verify and load a model; print where it is.

    Sources, in order: the copy bundled in the package, the Hub (pinned
    revision, sha256-checked), else the original checkpoint imported once from
    the authors' server or, when that fails, RobustBench's Google Drive copy.
    Set HF_HUB_OFFLINE=1 to use only the local cache; HF_ENDPOINT, HF_HOME and
    HF_TOKEN are honoured as by huggingface_hub. An error is one line; --verbose
    adds what each source said and how a maintainer publishes the entry.

    \b
    Example:
      score-zoo load cifar10-linf
      HF_HUB_OFFLINE=1 score-zoo load cifar10-linf --json
    """
    from .loading import load_report

    _, info, entry = load_report(name, revision, device)
    if as_json:
        echo_json(info)
        return
    click.echo(f"{name}: {info['parameters']:,} parameters, loaded in eval mode on {info['device']}")
    click.echo(f"source     {SOURCE_LABELS[info['source']]} ({info['source_detail']})")
    click.echo(f"cached at  {info['path']}")
    click.echo(f"sha256     {info['sha256']} ({'verified against the registry' if info['verified'] else 'not pinned by the registry'})")
    if info["reported"]:
        rep = info["reported"]
        click.echo(f"reported   clean {_fmt_acc(rep.get('clean_acc'))}%, AutoAttack {_fmt_acc(rep.get('autoattack_acc'))}% "
                   f"({entry.threat_model} {entry.eps}, {rep.get('by', 'reported')})")


@main.command("publish")
@click.argument("entry_or_dir")
@click.option("--repo-id", required=True, help="Hub repository, ORG/NAME (created if needed).")
@click.option("--model-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="Model directory holding the entry's weights (default: resolve the entry).")
@click.option("--eval", "eval_files", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Evaluation result JSON to upload and show in the card (repeatable).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--dry-run", is_flag=True, help="Stage the files and show them; upload nothing.")
@click.option("--save-entry", is_flag=True, help="Write the pinned hub revision + sha256 into the registry entry.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def publish_cmd(entry_or_dir, repo_id, model_dir, eval_files, private, dry_run, save_entry, as_json):
    """Upload weights + config + model card + evaluations to the Hub in one commit.

    Prints the commit id and the registry update (hub.repo_id, hub.revision =
    that commit, sha256) that pins it; --save-entry writes it.

    \b
    Example:
      score-zoo publish cifar10-linf --repo-id score-zoo/cifar10-linf --dry-run
      score-zoo publish models/my-run --repo-id me/my-run --eval results/my-run.json
    """
    from .publish import publish_model

    entry, result, saved = publish_model(entry_or_dir, repo_id, model_dir, eval_files, private, dry_run, save_entry)
    if as_json:
        echo_json({"repo_id": result.repo_id, "commit": result.commit, "commit_url": result.commit_url,
                   "sha256": result.sha256, "staged": str(result.staged) if dry_run else None,
                   "files": result.files, "entry_update": result.entry_update, "saved_entry": str(saved) if saved else None})
        return
    if dry_run:
        click.echo(f"dry run: staged {len(result.files)} file(s) in {result.staged} (nothing uploaded)")
        for rel in result.files:
            click.echo(f"  {rel:<40} {(result.staged / rel).stat().st_size:>12,} bytes")
        click.echo(f"sha256 {result.sha256}")
        return
    click.echo(f"published {entry.name} to {result.repo_id}")
    click.echo(f"commit  {result.commit}")
    click.echo(f"url     {result.commit_url}")
    click.echo("registry entry update:")
    echo_json(result.entry_update)
    if saved:
        click.echo(f"saved to {saved}")


@main.command("mirror")
@click.argument("names", nargs=-1)
@click.option("--all", "all_models", is_flag=True, help="Every model RobustBench lists for --dataset and --threat-model.")
@click.option("--dataset", required=True, help="RobustBench dataset: cifar10 or cifar100.")
@click.option("--threat-model", required=True, help="RobustBench threat model: Linf, L2 or corruptions.")
@click.option("--repo-id", default=None, help="Hub repository of one model, ORG/NAME (default: ORG/ENTRY, see --org).")
@click.option("--org", default="score-zoo", show_default=True,
              help="Hub organisation of the repositories, named after the entries: ORG/{dataset}-{threat}-{NAME}.")
@click.option("--name", "entry_name", default=None, help="Zoo entry name of one model (default: {dataset}-{threat}-{NAME}).")
@click.option("--model-dir", type=click.Path(file_okay=False), default="./models", show_default=True,
              help="RobustBench's checkpoint folder: a checkpoint in {model_dir}/{dataset}/{threat_model}/{NAME}.pt is "
                   "reused, a download from Google Drive is kept there.")
@click.option("--model-info-dir", type=click.Path(file_okay=False), default=None,
              help="RobustBench's model_info tree, for the cards (default: a clone's next to the installed "
                   "robustbench, else each model's file from RobustBench's GitHub repository, cached; "
                   "$SCORE_ZOO_MODEL_INFO_URL replaces that URL).")
@click.option("--out", type=click.Path(file_okay=False), default="mirrors", show_default=True,
              help="Folder for the model directories (one per entry).")
@click.option("--check-clean", type=click.IntRange(min=1), default=None, metavar="N",
              help="Measure clean accuracy on the first N test images and compare it with RobustBench's figure "
                   "(Clopper-Pearson interval); the result goes on the card.")
@click.option("--data-dir", type=click.Path(), default=None,
              help="Test data for --check-clean (default: the bundled CIFAR-10 subset, a JPEG-decoded copy).")
@click.option("--device", default=None, help="Device for --check-clean (default: cuda if available).")
@click.option("--builtin", is_flag=True, help="Write the entries into the package's built-in set and their cards "
                                              "into model_cards/ (maintainers shipping the mirrors).")
@click.option("--force", is_flag=True, help="Mirror again what is already mirrored from the same checkpoint.")
@click.option("--dry-run", is_flag=True, help="Convert and stage; upload and register nothing.")
@click.option("--private", is_flag=True, help="Create the repositories as private.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome(s) as JSON.")
def mirror_cmd(names, all_models, dataset, threat_model, repo_id, org, entry_name, model_dir, model_info_dir, out,
               check_clean, data_dir, device, builtin, force, dry_run, private, no_progress, as_json):
    """Mirror RobustBench models to the Hub as verified safetensors and register them.

    Each checkpoint is taken from robustbench's folder (--model-dir) or
    RobustBench's Google Drive copy, read with weights_only=True, loaded into
    RobustBench's own model definition and published with a card made from
    RobustBench's model_info JSON; the registry entry pins the commit and
    sha256. Several NAMEs or --all go on past failures, skip what is already
    mirrored from the same checkpoint (rerun to resume), and summarise what
    failed and why (exit 1 if anything failed). Needs the robustbench extra:
    pip install 'score-zoo[robustbench]'.

    \b
    Example:
      score-zoo mirror Carmon2019Unlabeled --dataset cifar10 --threat-model Linf --repo-id me/carmon2019
      score-zoo mirror --all --dataset cifar10 --threat-model Linf --model-info-dir robustbench/model_info
      score-zoo mirror Ding2020MMA --dataset cifar10 --threat-model L2 --check-clean 500 --data-dir ~/data
    """
    import functools
    from pathlib import Path

    from .errors import ConfigError
    from .robustbench.mirror import (MirrorOptions, board_names, clean_check_plugin, mirror_many, mirror_model,
                                     require_robustbench)
    from .model_info import find_model_info_dir

    if bool(names) == all_models:
        raise click.UsageError("give one or more NAMEs or --all")
    bulk = all_models or len(names) > 1
    if bulk and (repo_id or entry_name):
        raise click.UsageError("--repo-id and --name apply to one model; with several, repositories are ORG/ENTRY")
    if (data_dir or device) and not check_clean:
        raise click.UsageError("--data-dir and --device apply to --check-clean")
    require_robustbench()   # one line naming the extra when robustbench is not installed
    tree = find_model_info_dir(model_info_dir)
    click.echo(f"model_info: {tree.where} ({tree.how})", err=True)
    checker = None
    if check_clean:
        checker = functools.partial(clean_check_plugin(), data_dir=data_dir, device=device)
    options = MirrorOptions(tree, Path(model_dir), Path(out), org, check_clean, checker, builtin, force, dry_run, private)
    if not bulk:
        outcome = mirror_model(names[0], dataset, threat_model, options, repo_id, entry_name)
        if as_json:
            echo_json({**outcome.to_dict(), "model_info_dir": tree.where})
        else:
            click.echo(outcome.line())
        return
    outcomes = mirror_many(board_names(dataset, threat_model) if all_models else list(names), dataset, threat_model,
                           options, progress=not no_progress)
    by_status = {s: [o for o in outcomes if o.status == s] for s in ("mirrored", "dry-run", "skipped", "failed")}
    if as_json:
        echo_json({"dataset": dataset, "threat_model": threat_model, "model_info_dir": tree.where,
                   **{s: [o.to_dict() for o in group] for s, group in by_status.items()}})
    else:
        click.echo(", ".join(f"{len(group)} {s}" for s, group in by_status.items() if group) + f" of {len(outcomes)} models")
        for o in by_status["failed"]:
            click.echo(o.line())
    if by_status["failed"]:
        raise ConfigError(f"{len(by_status['failed'])} of {len(outcomes)} models failed (listed above); "
                          "fix what they need and run the same command again to resume")


@main.command("study")
@click.argument("out", type=click.Path(dir_okay=False))
@click.option("--entry", "names", multiple=True, required=True,
              help="A registered entry trained by score-train (repeat: every seed of every objective).")
@click.option("--description", default="", help="What the study compares (shown above its table).")
@click.option("--data-note", default="", help="What the test figures were measured on (shown under the table).")
@click.option("--evaluations-dir", type=click.Path(file_okay=False), default=None,
              help="Copy each entry's evaluation JSON here and point the study at the copies.")
def study_cmd(out, names, description, data_note, evaluations_dir):
    """Summarise several seeds per objective: per-seed table, mean ± std and the paired difference."""
    from .studies import build_study, markdown

    click.echo(markdown(build_study(list(names), out, description, data_note, evaluations_dir)))


@main.command("card")
@click.argument("name", required=False)
@click.option("--all", "all_entries", is_flag=True, help="Render the cards of all built-in entries.")
@click.option("--eval", "eval_files", multiple=True, type=click.Path(dir_okay=False, exists=True),
              help="Extra evaluation result JSON to include (repeatable).")
@click.option("--out-dir", type=click.Path(file_okay=False), default=None,
              help="Folder for NAME.md (default: a user entry's in the models/ folder beside the user registry, "
                   "a built-in one's in the repository's model_cards/, ./model_cards when installed).")
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the card instead of writing it.")
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if a card file differs from its entry.")
def card_cmd(name, all_entries, eval_files, out_dir, to_stdout, check):
    """Render the model card (Hub README with model-index) of an entry.

    \b
    Example:
      score-zoo card cifar10-linf --stdout
      score-zoo card --all
      score-zoo card --all --check
    """
    from .cards import default_cards_dir, render_card, stale_cards, write_card
    from .errors import ConfigError
    from .evaluations import check_same_weights, entry_evaluations, read_evaluation

    if bool(name) == all_entries:
        raise click.UsageError("give either NAME or --all")
    entries = [e for e in registry.list_entries() if e.builtin] if all_entries else [registry.get_entry(name)]
    extra = [read_evaluation(f) for f in eval_files]
    for entry in entries:
        check_same_weights(extra, entry.sha256, f"entry '{entry.name}'", list(eval_files))
    if check:
        stale = stale_cards(entries, out_dir, extra)
        if stale:
            raise ConfigError(f"stale or missing model card(s) in {out_dir or default_cards_dir(entries[0])}: {', '.join(stale)}; "
                              "run 'score-zoo card --all'")
        return
    for entry in entries:
        if to_stdout:
            click.echo(render_card(entry, entry_evaluations(entry) + extra), nl=False)
        else:
            click.echo(f"wrote {write_card(entry, out_dir, entry_evaluations(entry) + extra)}")


if __name__ == "__main__":
    main()
