"""Original checkpoints imported once into the local cache, whichever source served them.

A fetched original must look like a PyTorch checkpoint (not empty, not an HTML
page), match the sha256 the entry pins for that source, and fit the entry's
architecture; it is then converted with the importer into
``{HF_HOME}/score-zoo/origin/{name}`` and recorded in ``origin.json``: which
source served it, from where, its sha256 and that of the converted weights.
Without a pinned hash the original is trusted on first use (with a warning);
every later use checks the converted weights against the record.
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

from ..checkpoints import check_checkpoint_file, import_checkpoint
from ..errors import CheckpointError, IntegrityError
from ..fileio import atomic_write_json, cache_dir, read_json, sha256_file
from ..model_dir import WEIGHTS_NAME
from ..registry import Entry

log = logging.getLogger(__name__)

RECORD_NAME = "origin.json"


def cache_root() -> Path:
    """``{HF_HOME}/score-zoo/origin``."""
    return cache_dir("origin")


def cached(entry: Entry) -> tuple[Path, dict] | None:
    """The entry's earlier import and its record, verified; None if there is none.

    Weights that no longer match the record are removed and ``IntegrityError`` is raised.
    """
    model_dir = cache_root() / entry.name
    record_path = model_dir / RECORD_NAME
    if not record_path.is_file():
        return None
    record = read_json(record_path, "origin import record")
    actual = sha256_file(model_dir / WEIGHTS_NAME) if (model_dir / WEIGHTS_NAME).is_file() else "missing"
    if actual != record.get("sha256"):
        shutil.rmtree(model_dir, ignore_errors=True)
        raise IntegrityError(f"the imported weights of '{entry.name}' in {model_dir} have sha256 {actual}, "
                             f"recorded {record.get('sha256')}: they were modified; they were removed, run the command again")
    return model_dir, record


def fetch_and_import(entry: Entry, source: ModuleType) -> tuple[Path, dict]:
    """Fetch the entry's original from ``source`` (a module of ``zoo.sources``), check and import it.

    Returns the model directory and its record; on any failure nothing is kept.
    """
    model_dir = cache_root() / entry.name
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=model_dir.parent, prefix=f".{entry.name}.") as tmp:
        original = Path(tmp) / source.file_name(entry)
        where = source.download(entry, original)
        check_checkpoint_file(original, f"the answer from {where}")
        original_sha = sha256_file(original)
        pinned = source.pinned_sha256(entry)
        if pinned and pinned != original_sha:
            raise IntegrityError(f"{where} has sha256 {original_sha}, but entry '{entry.name}' pins {pinned}: "
                                 f"{source.LABEL} serves a different file; nothing was imported")
        try:
            digest = import_checkpoint(original, entry.architecture, entry.num_classes, entry.dataset, model_dir,
                                       entry.threat_model, entry.eps_value, overwrite=True)
        except CheckpointError as e:
            raise CheckpointError(f"the file from {where} could not be imported ({e})") from None
    record = {"source": source.NAME, "url": where, "original_sha256": original_sha, "sha256": digest,
              "fetched_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    atomic_write_json(model_dir / RECORD_NAME, record)
    if not pinned:
        log.warning("%s: imported from %s (%s), whose sha256 %s is trusted on first use (the entry pins no hash); "
                    "converted weights sha256 %s", entry.name, source.LABEL, where, original_sha, digest)
    return model_dir, record


def maintainer_commands(entry: Entry) -> str:
    """The exact commands that fetch an entry's original checkpoint, import it and publish it."""
    url = entry.origin.get("url")
    if url:
        file = Path(urlsplit(url).path).name or f"{entry.name}.pt"
        fetch = f"curl -L -o {file} {url}"
    else:
        file = f"{entry.name}.pt"
        fetch = f"gdown {entry.origin.get('gdrive_id', '<gdrive id>')} -O {file}"
    return (f"{fetch} && "
            f"score-zoo import {file} --arch {entry.architecture} --dataset {entry.dataset} "
            f"--num-classes {entry.num_classes} --threat-model {entry.threat_model} --eps {entry.eps} "
            f"--out models/{entry.name} && "
            f"score-zoo publish {entry.name} --model-dir models/{entry.name} --repo-id <org>/{entry.name} --save-entry")
