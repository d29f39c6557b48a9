"""Publishing a model to the Hub: weights + timm-readable config.json + model card + evaluations, one commit.

The config.json that goes up is the model directory's, in the form timm reads
(``zoo.timm_models.timm_config``), so ``timm.create_model("hf-hub:ORG/NAME",
pretrained=True)`` works next to ``zoo.load_model``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import huggingface_hub
from huggingface_hub import errors as hf_errors

from .architectures import canonical_architecture
from .cards import render_card
from .errors import ConfigError, HubError, IntegrityError
from .evaluations import check_same_weights, entry_evaluations, read_evaluation
from .loading import resolve_model_dir
from .fileio import atomic_write_json, sha256_file
from .model_dir import CONFIG_NAME, WEIGHTS_NAME, check_weights, read_config
from .registry import Entry, check_name, get_entry, save_entry
from .results import EvaluationResult
from .sources.hub import TRANSPORT_ERRORS, hub_settings
from .timm_models import timm_config

EVALUATIONS_FOLDER = "evaluations"


@dataclass
class PublishResult:
    """What ``publish`` did: the staged files and, unless a dry run, the commit."""

    repo_id: str
    sha256: str
    staged: Path
    files: list[str]
    commit: str | None = None
    commit_url: str | None = None
    entry_update: dict = field(default_factory=dict)


def stage_publication(model_dir: str | os.PathLike, card: str, evaluations: list[EvaluationResult], out: Path) -> list[str]:
    """Fill ``out`` with what a Hub repo of a zoo model holds; return the relative paths."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / WEIGHTS_NAME, out / WEIGHTS_NAME)
    atomic_write_json(out / CONFIG_NAME, timm_config(config))
    (out / "README.md").write_text(card, encoding="utf-8")
    files = [WEIGHTS_NAME, CONFIG_NAME, "README.md"]
    for i, evaluation in enumerate(evaluations):
        rel = f"{EVALUATIONS_FOLDER}/{evaluation_file_name(evaluation, i)}"
        (out / rel).parent.mkdir(exist_ok=True)
        (out / rel).write_text(json.dumps(evaluation.to_dict(), indent=2) + "\n", encoding="utf-8")
        files.append(rel)
    return files


def evaluation_file_name(evaluation: EvaluationResult, index: int) -> str:
    """A stable file name for an evaluation JSON: ``{dataset}-{threat}-{n}.json``."""
    ev = evaluation.evaluation
    return f"{index:02d}-{ev.dataset}-{ev.threat_model}-{ev.n_examples}.json".lower()


def publish(entry: Entry, model_dir: str | os.PathLike, repo_id: str, evaluations: list[EvaluationResult] | None = None,
            private: bool = False, dry_run: bool = False, staging_dir: str | os.PathLike | None = None,
            commit_message: str | None = None) -> PublishResult:
    """Upload ``model_dir`` + model card + evaluation JSONs to ``repo_id`` in one commit.

    The repository is created if needed. The result carries the commit id and
    the registry update (``hub`` + ``sha256`` + ``published``) that pins it.
    With ``dry_run`` the folder is staged (in ``staging_dir`` or a temporary
    folder that is kept) and nothing is uploaded.
    """
    if "/" not in repo_id or repo_id.count("/") != 1:
        raise ConfigError(f"--repo-id must look like ORG/NAME, got '{repo_id}'")
    evaluations = list(evaluations or [])
    read_config(model_dir)  # a folder that is not a model directory is one line, before any work
    digest = sha256_file(check_weights(Path(model_dir) / WEIGHTS_NAME))
    if entry.sha256 and entry.sha256 != digest:
        raise IntegrityError(f"{model_dir}/{WEIGHTS_NAME} has sha256 {digest} but entry '{entry.name}' pins "
                             f"{entry.sha256}; publish the weights the entry describes")
    check_same_weights(evaluations, digest, f"{model_dir}/{WEIGHTS_NAME}")
    hub = {"repo_id": repo_id, "revision": None, "filename": WEIGHTS_NAME}
    card_entry = dataclasses.replace(entry, hub=hub, sha256=digest, published=True)
    staged = Path(staging_dir) if staging_dir else Path(tempfile.mkdtemp(prefix=f"score-zoo-publish-{entry.name}-"))
    files = stage_publication(model_dir, render_card(card_entry, evaluations), evaluations, staged)
    result = PublishResult(repo_id, digest, staged, files)
    if dry_run:
        return result
    s = hub_settings()
    if s.offline:
        raise HubError("cannot publish while HF_HUB_OFFLINE is set")
    api = huggingface_hub.HfApi(endpoint=s.endpoint, token=s.token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.upload_folder(folder_path=str(staged), repo_id=repo_id,
                                 commit_message=commit_message or f"Publish {entry.name} (sha256 {digest[:12]})")
    except hf_errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        hint = " (set HF_TOKEN to a token with write access)" if status in (401, 403) else ""
        raise HubError(f"publishing to {repo_id} on {s.endpoint} failed with HTTP {status}{hint}") from None
    except TRANSPORT_ERRORS as e:
        raise HubError(f"publishing to {repo_id} on {s.endpoint} failed ({' '.join(str(e).split())[:200]})") from None
    finally:
        if staging_dir is None:
            shutil.rmtree(staged, ignore_errors=True)
    result.commit, result.commit_url = info.oid, info.commit_url
    result.entry_update = {"hub": {**hub, "revision": info.oid}, "sha256": digest, "published": True}
    return result


def publish_model(entry_or_dir: str | os.PathLike, repo_id: str, model_dir: str | os.PathLike | None = None,
                  eval_files: tuple[str, ...] = (), private: bool = False, dry_run: bool = False,
                  save: bool = False) -> tuple[Entry, PublishResult, Path | None]:
    """What ``score-zoo publish`` does: publish an entry (or a bare model directory) with its evaluations and,
    with ``save``, write the registry update that pins the commit; return the entry, the result and where it was saved."""
    if (Path(entry_or_dir) / CONFIG_NAME).is_file():
        entry, model_dir = entry_from_model_dir(entry_or_dir), model_dir or entry_or_dir
    else:
        entry = get_entry(str(entry_or_dir))
        model_dir = model_dir or resolve_model_dir(entry.name)[0]
    evaluations = entry_evaluations(entry) + [read_evaluation(f) for f in eval_files]
    result = publish(entry, model_dir, repo_id, evaluations, private=private, dry_run=dry_run)
    saved = save_entry(dataclasses.replace(entry, **result.entry_update)) if save and not dry_run else None
    return entry, result, saved


def entry_from_model_dir(model_dir: str | os.PathLike) -> Entry:
    """A user entry describing a bare model directory (for publishing one with no registry entry)."""
    model_dir = Path(model_dir)
    config = read_config(model_dir)
    eps = config.get("eps")
    if isinstance(eps, (int, float)):
        frac = Fraction(eps * 255).limit_denominator(1000)
        eps = f"{frac.numerator}/255" if frac.denominator == 1 else f"{eps:g}"
    return Entry(name=check_name(model_dir.resolve().name), dataset=config["dataset"],
                 threat_model=config.get("threat_model") or "unspecified", eps=str(eps or "unspecified"),
                 architecture=canonical_architecture(config["architecture"]), num_classes=config["num_classes"],
                 description=f"{config['architecture']} trained on {config['dataset']}.", builtin=False)
