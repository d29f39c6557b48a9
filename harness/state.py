"""Resumable progress: one atomically written file per finished batch.

A state directory holds ``config.json`` (everything that determines the
results) and ``batch-NNNNNN.pt`` files. A directory made for another
configuration, or not made by the harness, is refused, with one exception:
an evaluation of the first N images grows into one of the first M > N (same
everything else, the same first N images), keeping its full batches, since a
batch's result depends only on its images and its index.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Callable

import torch

from zoo.errors import ConfigError
from zoo.fileio import atomic_path, atomic_write_json

CONFIG_NAME = "config.json"
STARTED_NAME = "started.json"
STATE_FORMAT = "score-harness-state/2"


class StateDir:
    """Per-batch progress of one evaluation configuration."""

    def __init__(self, path: str | os.PathLike, config: dict, started_at: str,
                 prefix_sha256: Callable[[int], str] | None = None):
        """Open or create the state of ``config``; ``prefix_sha256(n)`` fingerprints the first n images."""
        self.path = Path(path)
        self.config = {"format": STATE_FORMAT, **config}
        self.grown_from: int | None = None  # image count of the evaluation this state grew from
        self._open(prefix_sha256)
        started = self.path / STARTED_NAME
        if not started.is_file():
            atomic_write_json(started, {"started_at": started_at})
        self.started_at = json.loads(started.read_text()).get("started_at", started_at)

    def _open(self, prefix_sha256: Callable[[int], str] | None) -> None:
        cfg_path = self.path / CONFIG_NAME
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"state dir {self.path} is a file; pass a folder with --state-dir")
        if cfg_path.is_file():
            try:
                found = json.loads(cfg_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ConfigError(f"state dir {self.path} has a corrupt {CONFIG_NAME}; delete the folder to start over") from None
            if not isinstance(found, dict) or not str(found.get("format", "")).startswith("score-harness-state/"):
                raise ConfigError(f"{self.path} is not a score-harness state dir; choose another --state-dir")
            if found["format"] != STATE_FORMAT:
                raise ConfigError(f"state dir {self.path} was written by another version of the harness "
                                  f"({found['format']}, this one writes {STATE_FORMAT}); delete it to start over")
            if found != self.config:
                if not self._grows(found, prefix_sha256):
                    diff = sorted(k for k in set(found) | set(self.config) if found.get(k) != self.config.get(k))
                    raise ConfigError(f"state dir {self.path} belongs to a different evaluation (differs in: "
                                      f"{', '.join(diff)}); use another --state-dir or delete it to start over")
                self._grow(found["n_examples"])
            return
        if self.path.is_dir() and any(self.path.iterdir()):
            raise ConfigError(f"{self.path} is not empty and is not a score-harness state dir; choose another --state-dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(cfg_path, self.config)
        except OSError as e:
            raise ConfigError(f"cannot create state dir {self.path} ({e.strerror or e}); pass a writable --state-dir") from None

    def _grows(self, found: dict, prefix_sha256: Callable[[int], str] | None) -> bool:
        """Whether ``found`` is this evaluation on fewer of the same first images."""
        new, old = self.config, found
        differ = {k for k in set(new) | set(old) if new.get(k) != old.get(k)}
        if prefix_sha256 is None or differ != {"n_examples", "data"}:
            return False
        if not isinstance(old["n_examples"], int) or not 0 < old["n_examples"] < new["n_examples"]:
            return False
        if not isinstance(old["data"], dict) or old["data"].get("source") != new["data"]["source"]:
            return False
        return prefix_sha256(old["n_examples"]) == old["data"].get("sha256")

    def _grow(self, old_n: int) -> None:
        """Adopt the larger config; drop the last batch of the old one if it was not full."""
        batch_size = self.config["batch_size"]
        if old_n % batch_size:
            for path in self.path.glob(f"batch-{old_n // batch_size:06d}-eps*.pt"):
                path.unlink()
        atomic_write_json(self.path / CONFIG_NAME, self.config)
        self.grown_from = old_n

    def batch_path(self, index: int, eps_index: int) -> Path:
        return self.path / f"batch-{index:06d}-eps{eps_index:02d}.pt"

    def load(self, index: int, eps_index: int, n: int) -> dict | None:
        """Return the saved record of batch ``index`` (``n`` examples) at eps number ``eps_index``, or None."""
        path = self.batch_path(index, eps_index)
        if not path.is_file():
            return None
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
            raise ConfigError(f"state file {path} is corrupt ({type(e).__name__}); delete it to recompute that batch") from None
        if (not isinstance(record, dict) or not isinstance(record.get("outcome"), list)
                or len(record["outcome"]) != n or record.get("x_adv") is None or record["x_adv"].shape[0] != n):
            raise ConfigError(f"state file {path} does not hold batch {index} of this evaluation; delete it to recompute that batch")
        return record

    def save(self, index: int, eps_index: int, record: dict) -> None:
        """Write the record of a finished batch at one eps (with its ``seconds``) atomically."""
        with atomic_path(self.batch_path(index, eps_index)) as tmp:
            torch.save(record, tmp)
