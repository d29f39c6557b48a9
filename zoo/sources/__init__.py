"""Where a model's weights come from: one module per source, behind ``locate``.

For an entry name, in order:

1. ``local``: the model directory the entry ships in the package (or names on disk);
2. ``hub``: the Hugging Face Hub at the pinned revision, sha256-verified (``hub``);
3. the entry's original checkpoint, imported once into the local cache
   (``imported``) and reused from there, fetched from the first source that
   serves a valid file: the authors' server (``authors``), then RobustBench's
   copy on Google Drive (``zoo.sources.drive``).

A path to a model directory is used as it is. ``Located.source`` says which
source served the weights.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError, HubError, IntegrityError, ScoreZooError
from ..model_dir import CONFIG_NAME, WEIGHTS_NAME
from ..registry import Entry, get_entry
from . import drive as robustbench_drive
from . import authors, hub, imported

log = logging.getLogger(__name__)

ORIGINAL_SOURCES = (authors, robustbench_drive)


@dataclass(frozen=True)
class Located:
    """A local model directory and where it came from."""

    path: Path
    sha256: str | None      # the weights sha256 the registry pins (None: nothing to check against)
    source: str             # model-dir | bundled | local | hub | authors | robustbench-gdrive
    detail: str             # the folder, repo_id@revision or URL
    verified: bool = False  # the source has already checked the weights against ``sha256`` (hash them no more)


def locate(name_or_path: str | os.PathLike, revision: str | None = None) -> Located:
    """Find (fetching if needed) the model directory of an entry name or a path."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(f"a model is an entry name or a model directory path, not {type(name_or_path).__name__} "
                          f"{name_or_path!r}")
    path = Path(name_or_path)
    if (path / CONFIG_NAME).is_file():
        if revision is not None:
            raise ConfigError(f"{path} is a model directory; --revision applies only to Hub entries")
        return Located(path, None, "model-dir", str(path))
    return locate_entry(get_entry(str(name_or_path)), revision)


def locate_entry(entry: Entry, revision: str | None = None) -> Located:
    """Find (fetching if needed) the model directory of ``entry``; see the module docstring for the order."""
    local = entry.local_path()
    if local is not None and revision is None:
        return Located(local, entry.sha256, "bundled" if entry.builtin else "local", str(local))
    if hub.applies(entry):
        path, sha256, where = hub.fetch(entry, revision)
        return Located(path, sha256, "hub", where, verified=True)
    if revision is not None:
        raise ConfigError(f"'{entry.name}' is not on the Hub yet, so --revision does not apply to it")
    path, record = imported.cached(entry) or _fetch_original(entry)   # the weights hashed against their record
    if entry.sha256 and record.get("sha256") != entry.sha256:
        raise IntegrityError(f"{path / WEIGHTS_NAME} has sha256 {record.get('sha256')}, expected {entry.sha256}: "
                             "the file is corrupt or was replaced")
    return Located(path, entry.sha256, record.get("source", authors.NAME), record.get("url", ""), verified=True)


def _fetch_original(entry: Entry) -> tuple[Path, dict]:
    """Import the entry's original checkpoint from the first source that serves a valid one."""
    sources = [s for s in ORIGINAL_SOURCES if s.applies(entry)]
    if not sources:
        raise HubError(f"'{entry.name}' is neither on the Hub nor has an original checkpoint (origin.url or "
                       "origin.gdrive_id); publish it with 'score-zoo publish' or add hub.repo_id to its entry")
    hint = (f"'{entry.name}' is not on the Hub yet; a maintainer imports and publishes it with:\n"
            f"  {imported.maintainer_commands(entry)}")
    if hub.hub_settings().offline:
        raise HubError(f"HF_HUB_OFFLINE is set and '{entry.name}' is not in the local cache (it is not on the Hub "
                       "yet); unset HF_HUB_OFFLINE to fetch it once (--verbose for details)", details=hint)
    failures: list[ScoreZooError] = []
    for i, source in enumerate(sources):
        try:
            return imported.fetch_and_import(entry, source)
        except ScoreZooError as e:
            failures.append(e)
            if i + 1 < len(sources):
                log.warning("%s: %s failed (%s); trying %s", entry.name, source.LABEL, e, sources[i + 1].LABEL)
    reasons = "".join(f"{s.LABEL}: {e}\n" for s, e in zip(sources, failures))
    what = (f"({sources[0].LABEL}: {failures[0]})" if len(sources) == 1 else
            f"from {' or '.join(s.LABEL for s in sources)}; run it again later")
    raise type(failures[-1])(f"could not fetch '{entry.name}' {what} (--verbose for details)", details=reasons + hint)


__all__ = ["Located", "locate", "locate_entry", "ORIGINAL_SOURCES"]
