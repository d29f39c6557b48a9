"""Mirror RobustBench's checkpoints to the Hub as verified safetensors (``score-zoo mirror``).

For one RobustBench model (name, dataset, threat model):

1. its checkpoint is found or fetched and loaded into RobustBench's own
   definition by robustbench's rules (``zoo.robustbench.weights``);
2. a model directory is written (``model.safetensors``; ``config.json`` naming the
   RobustBench model, dataset and threat model; a ``README.md`` card made from
   RobustBench's model_info JSON (``zoo.model_info``), marked as a
   mirror of the authors' weights), published as ``score-zoo publish`` does, and
   the registry entry that pins the commit and sha256 is saved.

``mirror_many`` mirrors a list (a whole board) one model at a time: it goes on
past failures, skips models already mirrored from the same checkpoint, and a
killed run is resumed by running it again.

The optional clean-accuracy check needs test data and an evaluator, which live in
``harness``. zoo does not import harness (imports go zoo <- harness), so the check
is a plugin: harness registers it under the entry-point group
``score_zoo.mirror_checks`` and ``clean_check_plugin`` loads it from there.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch.nn as nn

from ..cards import mirror_of, render_card, write_card
from ..datasets_meta import NUM_CLASSES, TEST_SIZE
from ..errors import ConfigError, ScoreZooError
from ..fileio import atomic_write_text, sha256_file
from ..model_dir import make_config, save_model_dir
from ..publish import publish
from ..registry import Entry, check_name, list_entries, parse_eps, save_entry
from ..results import as_float
from ..architectures.robustbench import ARCHITECTURE_PREFIX, MIRRORED_DATASETS, robustbench_board, robustbench_model
from ..extras import import_robustbench, robustbench_version
from ..model_info import ModelInfoTree, read_model_info
from .weights import build_mirrored_model, checkpoint_files

DEFAULT_ORG = "score-zoo"
PURPOSE = "score-zoo mirror"   # what needs robustbench, in the one line that says to install the extra
CHECK_GROUP = "score_zoo.mirror_checks"

# check(model, dataset, n_examples, reported clean accuracy in percent) -> the record shown on the card
CleanCheck = Callable[[nn.Module, str, int, float], dict]


@dataclass
class MirrorOptions:
    """What every model of a mirroring run shares."""

    model_info: ModelInfoTree
    model_dir: Path = Path("models")       # robustbench's checkpoint folder
    out: Path = Path("mirrors")            # one model directory per entry is written here
    org: str = DEFAULT_ORG                 # repositories are ORG/{entry name} unless a repo id is given
    check_clean: int | None = None         # images for the clean-accuracy check (None: no check)
    checker: CleanCheck | None = None
    builtin: bool = False                  # write entries into the package's built-in set (and model_cards/)
    force: bool = False                    # mirror again even if already mirrored
    dry_run: bool = False                  # stage the Hub folder, upload and register nothing
    private: bool = False


@dataclass
class MirrorOutcome:
    """What happened to one model: ``mirrored``, ``skipped``, ``failed`` or ``dry-run``, and why."""

    name: str
    entry: str
    status: str
    detail: str = ""
    repo_id: str | None = None
    revision: str | None = None
    sha256: str | None = None
    model_dir: str | None = None
    clean_check: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def line(self) -> str:
        """One line for the terminal."""
        return f"{self.status:<8} {self.name}: {self.detail}"


# ----------------------------------------------------------------- checkpoints --


def require_robustbench() -> None:
    """Mirroring needs robustbench (its definitions, its loading rules): one ``ConfigError`` line naming the extra."""
    import_robustbench(purpose=PURPOSE)


def board_names(dataset: str, threat_model: str) -> list[str]:
    """Every model RobustBench lists on a board, in its order."""
    _check_dataset(dataset)
    return list(robustbench_board(dataset, threat_model, PURPOSE))


def _check_dataset(dataset: str) -> None:
    if dataset not in MIRRORED_DATASETS:
        raise ConfigError(f"the zoo mirrors the {' and '.join(MIRRORED_DATASETS)} boards; {dataset} models are not "
                          "supported (the zoo's loaders, cards and harness are made for 32x32 images)")


# --------------------------------------------------------------------- entries --


def mirror_config(name: str, dataset: str, threat_model: str, info: dict, checkpoints: list[dict]) -> dict:
    """config.json of a mirror: the RobustBench model, dataset and threat model it is rebuilt from, and its checkpoints."""
    eps = info.get("eps")
    return make_config(ARCHITECTURE_PREFIX + (info.get("architecture") or name), NUM_CLASSES[dataset], dataset,
                       threat_model, parse_eps(eps) if eps else None,
                       robustbench={"model": name, "dataset": dataset, "threat_model": threat_model},
                       mirror={"of": "the authors' weights as RobustBench distributes them",
                               "checkpoints": [{k: c[k] for k in ("file", "gdrive_id", "sha256")} for c in checkpoints]})


def default_entry_name(name: str, dataset: str, threat_model: str) -> str:
    """The zoo entry (and Hub repository) name of a mirror: ``{dataset}-{threat}-{RobustBench name}``."""
    return f"{dataset}-{threat_model.lower()}-{name}"


def mirror_entry(entry_name: str, name: str, dataset: str, threat_model: str, info: dict, mirror: dict) -> Entry:
    """The registry entry of a mirror, its paper and figures taken from RobustBench's model_info JSON."""
    venue = info.get("venue") or ""
    year = re.search(r"\b(19|20)\d{2}\b", venue)
    reported = {"clean_acc": as_float(info.get("clean_acc")), "n_examples": TEST_SIZE[dataset],
                "by": "RobustBench leaderboard"}
    for key in ("autoattack_acc", "external", "corruptions_acc"):
        value = as_float(info.get(key))
        if value is not None:
            reported[key] = value
    if "autoattack_acc" in reported:
        reported["attack"] = "AutoAttack standard"
    if info.get("unreliable") is not None:
        reported["unreliable"] = bool(info["unreliable"])
    architecture = info.get("architecture") or name
    return Entry(
        name=entry_name, dataset=dataset, threat_model=threat_model, eps=str(info.get("eps") or ""),
        architecture=ARCHITECTURE_PREFIX + architecture, num_classes=NUM_CLASSES[dataset],
        source={"title": info.get("name", ""), "authors": info.get("authors", ""), "venue": venue,
                "year": int(year.group(0)) if year else "", "link": info.get("link", "")},
        reported=reported,
        origin={"robustbench_name": name, "robustbench_threat_model": threat_model, "mirror": mirror},
        license="unknown", additional_data=bool(info.get("additional_data")), footnote=info.get("footnote") or None,
        description=(f"A mirror of the authors' weights of RobustBench's {name} ({architecture}, {dataset} "
                     f"{threat_model}), converted to safetensors; not trained by SCORE Zoo."),
        builtin=False)


def _existing_mirror(entries: list[Entry], rb_id: tuple[str, str, str], entry_name: str) -> Entry | None:
    """The entry of an earlier mirror of this model, if any; an entry of that name that is something else raises."""
    existing = next((e for e in entries if e.name == entry_name), None)
    if existing is not None and not mirror_of(existing):
        raise ConfigError(f"a zoo entry called '{entry_name}' exists and is not a mirror; choose another --name")
    if existing is not None and existing.robustbench_id != rb_id:
        raise ConfigError(f"the entry '{entry_name}' mirrors another model ({' '.join(existing.robustbench_id)}); "
                          "choose another --name")
    return existing


def _already_mirrored(entry: Entry, files: list[tuple[Path, str]]) -> str | None:
    """Why ``entry`` needs no new mirror, or None (not published, or its checkpoint changed)."""
    if not (entry.published and entry.hub.get("repo_id") and entry.sha256):
        return None
    where = f"{entry.hub['repo_id']}@{entry.hub.get('revision')}"
    if not all(path.is_file() for path, _ in files):
        return (f"already mirrored at {where}; its checkpoint is not in the model folder, so it was not checked "
                "again (--force mirrors it anew)")
    recorded = {c["file"]: c["sha256"] for c in mirror_of(entry).get("checkpoints", [])}
    if all(recorded.get(path.name) == sha256_file(path) for path, _ in files):
        return f"already mirrored at {where} from the same checkpoint (sha256 {recorded[files[0][0].name][:12]}...)"
    return None


# ---------------------------------------------------------------------- mirror --


def mirror_model(name: str, dataset: str, threat_model: str, options: MirrorOptions, repo_id: str | None = None,
                 entry_name: str | None = None) -> MirrorOutcome:
    """Mirror one RobustBench model to the Hub and register it (see the module docstring)."""
    _check_dataset(dataset)
    entry_name = check_name(entry_name or default_entry_name(name, dataset, threat_model))
    record = robustbench_model(name, dataset, threat_model, PURPOSE)
    repo_id = repo_id or f"{options.org}/{entry_name}"
    entries, rb_id = list_entries(), (name, dataset, threat_model)
    own = next((e for e in entries if e.robustbench_id == rb_id and not mirror_of(e)), None)  # e.g. the SCORE entries
    if own is not None:
        return MirrorOutcome(name, own.name, "skipped", f"the zoo has it as its own entry '{own.name}'; publish that "
                             f"with: score-zoo publish {own.name} --repo-id ORG/{own.name} --save-entry")
    if record["gdrive_id"] is None:
        raise ConfigError(f"RobustBench keeps no checkpoint of {name} on Google Drive (robustbench builds it with "
                          "timm's own pretrained weights), so there is nothing to mirror")
    files = checkpoint_files(options.model_dir, name, dataset, threat_model, record["gdrive_id"])
    existing = _existing_mirror(entries, rb_id, entry_name)
    reason = None if existing is None or options.force else _already_mirrored(existing, files)
    if reason:
        return MirrorOutcome(name, entry_name, "skipped", reason, existing.hub["repo_id"], existing.hub.get("revision"),
                             existing.sha256)
    info = read_model_info(options.model_info, name, dataset, threat_model)
    model, checkpoints = build_mirrored_model(name, dataset, threat_model, files)
    folder = Path(options.out) / entry_name
    digest = save_model_dir(model, folder, mirror_config(name, dataset, threat_model, info, checkpoints), overwrite=True)
    if existing is not None and existing.published and existing.sha256 == digest and not options.force:
        return MirrorOutcome(name, entry_name, "skipped", f"the same weights (sha256 {digest[:12]}...) are already "
                             f"mirrored at {existing.hub['repo_id']}@{existing.hub.get('revision')}",
                             existing.hub["repo_id"], existing.hub.get("revision"), digest, str(folder))
    check = None
    if options.check_clean:
        checker = options.checker or clean_check_plugin()
        check = checker(model, dataset, options.check_clean, float(info["clean_acc"]))
    mirror = {"robustbench_version": robustbench_version(PURPOSE),
              "model_info": f"{dataset}/{threat_model}/{name}.json",
              "checkpoints": checkpoints, "clean_check": check}
    entry = mirror_entry(entry_name, name, dataset, threat_model, info, mirror)
    result = publish(entry, folder, repo_id, private=options.private, dry_run=options.dry_run,
                     commit_message=f"Mirror RobustBench's {name} ({dataset} {threat_model}), sha256 {digest[:12]}")
    if options.dry_run:
        shutil.copyfile(result.staged / "README.md", folder / "README.md")   # the card as it would go up
        return MirrorOutcome(name, entry_name, "dry-run",
                             f"staged for {repo_id} in {result.staged}; nothing uploaded" + _check_note(check),
                             repo_id, None, digest, str(folder), check)
    entry = dataclasses.replace(entry, **result.entry_update, builtin=options.builtin)
    save_entry(entry)
    if options.builtin:
        write_card(entry)
    atomic_write_text(folder / "README.md", render_card(entry))
    return MirrorOutcome(name, entry_name, "mirrored", f"{repo_id}@{result.commit}" + _check_note(check), repo_id,
                         result.commit, digest, str(folder), check)


def _check_note(check: dict | None) -> str:
    if not check:
        return ""
    verdict = "consistent with" if check["consistent"] else "NOT consistent with"
    return (f"; clean {check['correct']}/{check['n_examples']} = {check['clean_acc']:.2f}%, {verdict} RobustBench's "
            f"{check['reported_clean_acc']:.2f}%")


def mirror_many(names: list[str], dataset: str, threat_model: str, options: MirrorOptions,
                progress: bool = True) -> list[MirrorOutcome]:
    """Mirror each model in turn, going on past failures; rerunning it resumes (done models are skipped)."""
    from tqdm import tqdm

    outcomes = []
    bar = tqdm(names, desc=f"mirror {dataset} {threat_model}", unit="model", file=sys.stderr, disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        try:
            outcome = mirror_model(name, dataset, threat_model, options)
        except Exception as e:  # noqa: BLE001 - one model's failure (whatever robustbench raises) must not stop the rest
            message = " ".join(str(e).split())
            detail = message if isinstance(e, ScoreZooError) else f"{type(e).__name__}: {message}"
            outcome = MirrorOutcome(name, default_entry_name(name, dataset, threat_model), "failed", detail)
        outcomes.append(outcome)
        bar.write(outcome.line(), file=sys.stderr)
    return outcomes


def clean_check_plugin() -> CleanCheck:
    """The clean-accuracy check that harness registers under the entry-point group ``score_zoo.mirror_checks``."""
    from importlib.metadata import entry_points

    found = list(entry_points(group=CHECK_GROUP, name="clean"))
    if not found:
        raise ConfigError(f"--check-clean needs SCORE Zoo's harness, which provides the check under the entry-point "
                          f"group {CHECK_GROUP}; reinstall score-zoo (pip install -e .)")
    return found[0].load()
