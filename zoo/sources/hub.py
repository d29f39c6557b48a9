"""Source 1: the Hugging Face Hub, at the revision an entry pins, sha256-verified.

Downloads go through ``huggingface_hub`` into the standard HF cache; the
weights are checked against the entry's sha256 before they are used, and a
file that fails the check is removed from the cache. The usual conventions are
read at call time (so they work even when set after import): ``HF_ENDPOINT``,
``HF_HOME`` / ``HF_HUB_CACHE``, ``HF_HUB_OFFLINE`` and ``HF_TOKEN``.
"""

from __future__ import annotations

import importlib
import logging
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors

from ..errors import ConfigError, HubError, IntegrityError
from ..fileio import sha256_file
from ..model_dir import CONFIG_NAME, WEIGHTS_NAME, read_config
from ..registry import Entry

log = logging.getLogger(__name__)


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


def applies(entry: Entry) -> bool:
    """Whether the entry is on the Hub."""
    return bool(entry.hub.get("repo_id"))


def fetch(entry: Entry, revision: str | None = None) -> tuple[Path, str | None, str]:
    """Download a published entry; return (model directory, sha256 checked, ``repo_id@revision``).

    ``revision`` overrides the pinned one; its weights are then not checked
    against the registry (there is no sha256 for them), with a warning.
    """
    repo_id = entry.hub["repo_id"]
    pinned = entry.hub.get("revision") or "main"
    expected = entry.sha256 if revision in (None, pinned) else None
    if revision not in (None, pinned):
        log.warning("%s: revision %s is not the one pinned in the registry (%s); its weights are not checked "
                    "against a registry sha256", entry.name, revision, pinned)
    elif expected is None:
        log.warning("%s: the entry pins no sha256; its weights are not verified", entry.name)
    model_dir = download_model_dir(repo_id, revision or pinned, entry.hub.get("filename") or WEIGHTS_NAME, expected)
    return model_dir, expected, f"{repo_id}@{revision or pinned}"


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
    weights = download_file(repo_id, filename, revision)
    if expected_sha256 is not None:
        actual = sha256_file(weights)
        if actual != expected_sha256:
            _evict(weights)
            raise IntegrityError(
                f"{repo_id}@{revision}/{filename} has sha256 {actual}, expected {expected_sha256}: the download "
                "was corrupted or the file on the Hub was replaced; it was removed from the cache, run the command again")
    config = download_file(repo_id, config_name, revision)
    if Path(config).parent != Path(weights).parent:  # both live in snapshots/<commit>/...
        raise HubError(f"{repo_id}: {filename} and {config_name} resolved to different commits; run the command again")
    read_config(Path(weights).parent)
    return Path(weights).parent


def download_file(repo_id: str, filename: str, revision: str, repo_type: str = "model") -> str:
    """hf_hub_download (cache, progress bar) with the current settings, its errors turned into one-line zoo errors."""
    s = hub_settings()
    where = f"{repo_id}@{revision}/{filename}"
    try:
        return huggingface_hub.hf_hub_download(
            repo_id, filename, revision=revision, repo_type=repo_type, cache_dir=s.cache_dir, endpoint=s.endpoint,
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
