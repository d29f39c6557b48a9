"""Entries not yet on the Hub: fetch the authors' original checkpoint and import it.

The original ``.pt`` is downloaded from ``entry.origin["url"]`` (its scheme and
host replaced by ``$SCORE_ZOO_ORIGIN_ENDPOINT`` when set, e.g. a mirror or a
test server), read with ``torch.load(weights_only=True)`` and converted into a
model directory in ``{HF_HOME}/score-zoo/origin/{name}``. When the entry pins
``origin["sha256"]`` the original file must match it; otherwise its hash is
trusted on first use (with a warning) and recorded in ``origin.json``, and
every later use checks the converted weights against that record. When the
origin cannot be reached, the error says which commands a maintainer runs to
import and publish the entry.
"""

from __future__ import annotations

import datetime as _dt
import http.client
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from .errors import CheckpointError, HubError, IntegrityError
from .fileio import atomic_write_json, read_json, sha256_file
from .model_dir import WEIGHTS_NAME
from .registry import Entry

log = logging.getLogger(__name__)

ORIGIN_ENDPOINT_ENV = "SCORE_ZOO_ORIGIN_ENDPOINT"
RECORD_NAME = "origin.json"
TIMEOUT_S = 30


def origin_cache_root() -> Path:
    """``{HF_HOME}/score-zoo/origin`` (HF_HOME read now; the HF default otherwise)."""
    from huggingface_hub import constants

    home = os.environ.get("HF_HOME") or constants.HF_HOME
    return Path(os.path.expanduser(home)) / "score-zoo" / "origin"


def origin_url(entry: Entry) -> str:
    """The URL of the entry's original checkpoint, honouring ``$SCORE_ZOO_ORIGIN_ENDPOINT``."""
    url = entry.origin.get("url")
    if not url:
        raise HubError(f"'{entry.name}' is neither on the Hub nor has an origin URL; "
                       "publish it with 'score-zoo publish' or add hub.repo_id to its entry")
    endpoint = os.environ.get(ORIGIN_ENDPOINT_ENV)
    if endpoint:
        parts = urlsplit(url)
        url = endpoint.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")
    return url


def maintainer_commands(entry: Entry) -> str:
    """The exact commands that import an entry's original checkpoint and publish it."""
    url = entry.origin.get("url", "<original checkpoint URL>")
    file = Path(urlsplit(url).path).name or f"{entry.name}.pt"
    return (f"curl -L -o {file} {url} && "
            f"score-zoo import {file} --arch {entry.architecture} --dataset {entry.dataset} "
            f"--num-classes {entry.num_classes} --threat-model {entry.threat_model} --eps {entry.eps} "
            f"--out models/{entry.name} && "
            f"score-zoo publish {entry.name} --model-dir models/{entry.name} --repo-id <org>/{entry.name} --save-entry")


def fetch_origin_model_dir(entry: Entry) -> Path:
    """Return the model directory imported from the entry's origin, fetching it if needed."""
    from .hub import hub_settings

    model_dir = origin_cache_root() / entry.name
    record_path = model_dir / RECORD_NAME
    if record_path.is_file():
        record = read_json(record_path, "origin import record")
        actual = sha256_file(model_dir / WEIGHTS_NAME)
        if actual == record.get("sha256"):
            return model_dir
        shutil.rmtree(model_dir, ignore_errors=True)
        raise IntegrityError(f"the imported weights of '{entry.name}' in {model_dir} have sha256 {actual}, "
                             f"recorded {record.get('sha256')}: they were modified; they were removed, run the command again")
    hint = f"'{entry.name}' is not on the Hub yet; a maintainer imports and publishes it with: {maintainer_commands(entry)}"
    if hub_settings().offline:
        raise HubError(f"HF_HUB_OFFLINE is set and {hint}")
    url = origin_url(entry)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir.parent, prefix=f".{entry.name}.") as tmp:
        original = Path(tmp) / (Path(urlsplit(url).path).name or "checkpoint.pt")
        _download(url, original, hint)
        original_sha = sha256_file(original)
        pinned = entry.origin.get("sha256")
        if pinned and pinned != original_sha:
            raise IntegrityError(f"{url} has sha256 {original_sha}, but entry '{entry.name}' pins {pinned}: "
                                 "the origin serves a different file; nothing was imported")
        from .checkpoints import import_checkpoint

        try:
            digest = import_checkpoint(original, entry.architecture, entry.num_classes, entry.dataset, model_dir,
                                       entry.threat_model, entry.eps_value, overwrite=True)
        except CheckpointError as e:
            raise CheckpointError(f"the file fetched from {url} could not be imported ({e}); {hint}") from None
    atomic_write_json(record_path, {"url": url, "original_sha256": original_sha, "sha256": digest,
                                    "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})
    if not pinned:
        log.warning("%s: imported from %s, whose sha256 %s is trusted on first use (the entry pins no hash); "
                    "converted weights sha256 %s", entry.name, url, original_sha, digest)
    return model_dir


def _download(url: str, dest: Path, hint: str) -> None:
    """Stream ``url`` to ``dest``, checking the announced size; one-line HubError on failure."""
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(dest, "wb") as f:
            announced = response.headers.get("Content-Length")
            shutil.copyfileobj(response, f, 1 << 20)
    except urllib.error.HTTPError as e:
        raise HubError(f"the origin answered HTTP {e.code} for {url}; {hint}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise HubError(f"cannot fetch {url} ({reason}); {hint}") from None
    if announced is not None and dest.stat().st_size != int(announced):
        raise HubError(f"the download of {url} was truncated ({dest.stat().st_size} of {announced} bytes); "
                       "nothing was imported, run the command again")
