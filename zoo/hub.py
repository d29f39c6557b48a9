"""Model directories on the Hugging Face Hub: verified download and publishing.

Downloads go through ``huggingface_hub`` into the standard HF cache, pinned to
the entry's revision; the weights are checked against the entry's sha256 before
they are used, and a file that fails the check is removed from the cache. The
usual conventions are read at call time (so they work even when set after
import): ``HF_ENDPOINT``, ``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE``
and ``HF_TOKEN``.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors

from .errors import ConfigError, HubError, IntegrityError
from .fileio import sha256_file
from .model_dir import CONFIG_NAME, WEIGHTS_NAME, read_config
from .registry import Entry

log = logging.getLogger(__name__)

EVALUATIONS_FOLDER = "evaluations"


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of the HTTP stack huggingface_hub runs on (httpx2, httpx or requests)."""
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).HTTPError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


TRANSPORT_ERRORS = _transport_errors()


@dataclass(frozen=True)
class HubSettings:
    """The Hub conventions in force now (environment first, then huggingface_hub's defaults)."""

    endpoint: str
    cache_dir: str
    offline: bool
    token: str | None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "on", "yes", "true"}


def hub_settings() -> HubSettings:
    """Read HF_ENDPOINT, HF_HUB_CACHE / HF_HOME, HF_HUB_OFFLINE and HF_TOKEN now."""
    env = os.environ
    if env.get("HF_HUB_CACHE"):
        cache = env["HF_HUB_CACHE"]
    elif env.get("HF_HOME"):
        cache = os.path.join(env["HF_HOME"], "hub")
    else:
        cache = hf_constants.HF_HUB_CACHE
    endpoint = (env.get("HF_ENDPOINT") or hf_constants.ENDPOINT).rstrip("/")
    offline = _truthy(env.get("HF_HUB_OFFLINE")) or hf_constants.HF_HUB_OFFLINE
    return HubSettings(endpoint, os.path.expanduser(os.path.expandvars(cache)), offline,
                       huggingface_hub.get_token())


# ---------------------------------------------------------------- download --


def fetch_model_dir(entry: Entry, revision: str | None = None) -> Path:
    """Return a verified local model directory for ``entry``.

    Published entries come from the Hub (``revision`` overrides the pinned one);
    entries not yet on the Hub come from their origin (see ``zoo.origin``).
    """
    repo_id = entry.hub.get("repo_id")
    if not repo_id:
        if revision is not None:
            raise ConfigError(f"'{entry.name}' is not on the Hub yet, so --revision does not apply to it")
        from .origin import fetch_origin_model_dir

        return fetch_origin_model_dir(entry)
    pinned = entry.hub.get("revision") or "main"
    expected = entry.sha256 if revision in (None, pinned) else None
    if revision not in (None, pinned):
        log.warning("%s: revision %s is not the one pinned in the registry (%s); its weights are not checked "
                    "against a registry sha256", entry.name, revision, pinned)
    elif expected is None:
        log.warning("%s: the entry pins no sha256; its weights are not verified", entry.name)
    return download_model_dir(repo_id, revision or pinned, entry.hub.get("filename") or WEIGHTS_NAME, expected)


def download_model_dir(repo_id: str, revision: str, filename: str = WEIGHTS_NAME,
                       expected_sha256: str | None = None) -> Path:
    """Download weights + config.json of ``repo_id`` at ``revision``; return their folder.

    ``filename`` is the weights file's path in the repo; config.json sits beside
    it. With ``expected_sha256`` the weights are verified (cached or not) and,
    on mismatch, removed from the cache before ``IntegrityError`` is raised.
    """
    if posixpath.basename(filename) != WEIGHTS_NAME:
        raise ConfigError(f"hub filename '{filename}' must name a {WEIGHTS_NAME} file")
    config_name = posixpath.join(posixpath.dirname(filename), CONFIG_NAME)
    weights = _download(repo_id, filename, revision)
    if expected_sha256 is not None:
        actual = sha256_file(weights)
        if actual != expected_sha256:
            _evict(weights)
            raise IntegrityError(
                f"{repo_id}@{revision}/{filename} has sha256 {actual}, expected {expected_sha256}: the download "
                "was corrupted or the file on the Hub was replaced; it was removed from the cache, run the command again")
    config = _download(repo_id, config_name, revision)
    if Path(config).parent != Path(weights).parent:  # both live in snapshots/<commit>/...
        raise HubError(f"{repo_id}: {filename} and {config_name} resolved to different commits; run the command again")
    read_config(Path(weights).parent)
    return Path(weights).parent


def _download(repo_id: str, filename: str, revision: str) -> str:
    """hf_hub_download with the current settings, its errors turned into one-line zoo errors."""
    s = hub_settings()
    where = f"{repo_id}@{revision}/{filename}"
    try:
        return huggingface_hub.hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=s.cache_dir, endpoint=s.endpoint,
            token=s.token, local_files_only=s.offline)
    except hf_errors.RevisionNotFoundError:
        raise HubError(f"revision '{revision}' does not exist in {repo_id} on {s.endpoint}; "
                       "check the entry's hub.revision or the --revision option") from None
    except hf_errors.RepositoryNotFoundError:
        raise HubError(f"repository {repo_id} was not found on {s.endpoint} (if it is private, set HF_TOKEN)") from None
    except hf_errors.RemoteEntryNotFoundError:
        raise HubError(f"{where} does not exist on {s.endpoint}") from None
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled):
        reason = "HF_HUB_OFFLINE is set" if s.offline else f"{s.endpoint} cannot be reached"
        raise HubError(f"{where} is not in the local cache ({s.cache_dir}) and {reason}; "
                       "connect once to download it") from None
    except hf_errors.HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        raise HubError(f"the Hub at {s.endpoint} answered HTTP {status} for {where}; try again later") from None
    except TRANSPORT_ERRORS as e:  # truncated transfer (size check), disk or connection errors
        first = " ".join(str(e).split(".")[0].split()) or type(e).__name__
        raise HubError(f"downloading {where} failed ({first}); nothing was cached, run the command again") from None


def _evict(pointer: str | os.PathLike) -> None:
    """Remove a cached file: its snapshot pointer and the blob it points to."""
    pointer = Path(pointer)
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    if blob != pointer:
        blob.unlink(missing_ok=True)


# ----------------------------------------------------------------- publish --


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


def stage_publication(model_dir: str | os.PathLike, card: str, evaluations: list[dict], out: Path) -> list[str]:
    """Fill ``out`` with what a Hub repo of a zoo model holds; return the relative paths."""
    model_dir = Path(model_dir)
    read_config(model_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in (WEIGHTS_NAME, CONFIG_NAME):
        shutil.copyfile(model_dir / name, out / name)
    (out / "README.md").write_text(card, encoding="utf-8")
    files = [WEIGHTS_NAME, CONFIG_NAME, "README.md"]
    for i, evaluation in enumerate(evaluations):
        rel = f"{EVALUATIONS_FOLDER}/{evaluation_file_name(evaluation, i)}"
        (out / rel).parent.mkdir(exist_ok=True)
        (out / rel).write_text(json.dumps(evaluation, indent=2) + "\n", encoding="utf-8")
        files.append(rel)
    return files


def evaluation_file_name(evaluation: dict, index: int) -> str:
    """A stable file name for an evaluation JSON: ``{dataset}-{threat}-{n}.json``."""
    ev = evaluation.get("evaluation") or {}
    parts = [evaluation.get("dataset") or ev.get("dataset"), ev.get("threat_model"), ev.get("n_examples")]
    stem = "-".join(str(p) for p in parts if p not in (None, "")) or "evaluation"
    return f"{index:02d}-{stem.lower()}.json"


def publish(entry: Entry, model_dir: str | os.PathLike, repo_id: str, evaluations: list[dict] | None = None,
            private: bool = False, dry_run: bool = False, staging_dir: str | os.PathLike | None = None,
            commit_message: str | None = None) -> PublishResult:
    """Upload ``model_dir`` + model card + evaluation JSONs to ``repo_id`` in one commit.

    The repository is created if needed. The result carries the commit id and
    the registry update (``hub`` + ``sha256`` + ``published``) that pins it.
    With ``dry_run`` the folder is staged (in ``staging_dir`` or a temporary
    folder that is kept) and nothing is uploaded.
    """
    import dataclasses

    from .cards import render_card

    if "/" not in repo_id or repo_id.count("/") != 1:
        raise ConfigError(f"--repo-id must look like ORG/NAME, got '{repo_id}'")
    evaluations = list(evaluations or [])
    digest = sha256_file(Path(model_dir) / WEIGHTS_NAME)
    if entry.sha256 and entry.sha256 != digest:
        raise IntegrityError(f"{model_dir}/{WEIGHTS_NAME} has sha256 {digest} but entry '{entry.name}' pins "
                             f"{entry.sha256}; publish the weights the entry describes")
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


def entry_from_model_dir(model_dir: str | os.PathLike) -> Entry:
    """A user entry describing a bare model directory (for publishing one with no registry entry)."""
    from fractions import Fraction

    model_dir = Path(model_dir)
    config = read_config(model_dir)
    eps = config.get("eps")
    if isinstance(eps, (int, float)):
        frac = Fraction(eps * 255).limit_denominator(1000)
        eps = f"{frac.numerator}/255" if frac.denominator == 1 else f"{eps:g}"
    return Entry(name=model_dir.resolve().name, dataset=config["dataset"],
                 threat_model=config.get("threat_model") or "unspecified", eps=str(eps or "unspecified"),
                 architecture=config["architecture"], num_classes=config["num_classes"],
                 description=f"{config['architecture']} trained on {config['dataset']}.", builtin=False)
