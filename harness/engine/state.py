"""Resumable progress: one atomically written file per finished chunk task (see ``stages``).

A state directory holds ``config.json`` (everything that determines the
results, the kind of device included: results of a CPU and a GPU are never
mixed), ``segments.json`` (the example ranges attacked as separate AutoAttack
calls) and one ``START-STOP-Llevel-cchunk.pt`` file per finished task. A
directory made for another configuration, by another version of the harness,
or not by the harness, is refused with one line. An evaluation of the first N
images grows into one of the first M > N (same everything else, the same first
N images): images N..M become a second segment, attacked as a separate
AutoAttack call, and the first segment's finished tasks are kept.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Callable

import torch

from zoo.errors import ConfigError
from zoo.fileio import atomic_file, atomic_write_json

from .stages import Task

CONFIG_NAME = "config.json"
STARTED_NAME = "started.json"
SEGMENTS_NAME = "segments.json"
STATE_FORMAT = "score-harness-state/4"   # /4: records hold their image passes
_GROWS = {"n_examples", "data"}


class StateDir:
    """Per-task progress of one evaluation configuration."""

    def __init__(self, path: str | os.PathLike, config: dict, started_at: str, examples: range,
                 prefix_sha256: Callable[[int], str] | None = None, create: bool = True):
        """Open (``create``: or create) the state of ``config`` for ``examples``.

        ``prefix_sha256(n)`` fingerprints the first n images (for growth).
        """
        self.path = Path(path)
        self.config = {"format": STATE_FORMAT, **config}
        self.segments: list[tuple[int, int]] = [(examples.start, examples.stop)]
        self.grown_from: int | None = None
        self._open(prefix_sha256, examples, create)
        started = self.path / STARTED_NAME
        if create and not started.is_file():
            atomic_write_json(started, {"started_at": started_at})
        self.started_at = json.loads(started.read_text()).get("started_at", started_at)

    def _open(self, prefix_sha256, examples: range, create: bool) -> None:
        cfg_path = self.path / CONFIG_NAME
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"state dir {self.path} is a file; pass a folder with --state-dir")
        if cfg_path.is_file():
            found = self._read_config(cfg_path)
            stored = self._read_segments()
            if found != self.config:
                if not self._grows(found, prefix_sha256, examples, stored):
                    raise ConfigError(self._mismatch(found))
                stored = [*stored, (found["n_examples"], examples.stop)]
                self.grown_from = found["n_examples"]
                if create:
                    atomic_write_json(self.path / SEGMENTS_NAME, [list(s) for s in stored])
                    atomic_write_json(cfg_path, self.config)
            if stored[0][0] == examples.start and stored[-1][1] == examples.stop:
                self.segments = stored
            return
        if not create:
            raise ConfigError(f"state dir {self.path} has no {CONFIG_NAME}; it was not created by rank 0")
        if self.path.is_dir() and any(self.path.iterdir()):
            raise ConfigError(f"{self.path} is not empty and is not a score-harness state dir; choose another --state-dir")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path / SEGMENTS_NAME, [list(s) for s in self.segments])
            atomic_write_json(cfg_path, self.config)
        except OSError as e:
            raise ConfigError(f"cannot create state dir {self.path} ({e.strerror or e}); pass a writable --state-dir") from None

    def _read_config(self, cfg_path: Path) -> dict:
        try:
            found = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"state dir {self.path} has a corrupt {CONFIG_NAME}; delete the folder to start over") from None
        if not isinstance(found, dict) or not str(found.get("format", "")).startswith("score-harness-state/"):
            raise ConfigError(f"{self.path} is not a score-harness state dir; choose another --state-dir")
        if found["format"] != STATE_FORMAT:
            raise ConfigError(f"state dir {self.path} was written by another version of the harness "
                              f"({found['format']}, this one writes {STATE_FORMAT}); delete it to start over")
        return found

    def _read_segments(self) -> list[tuple[int, int]]:
        try:
            return [(int(a), int(b)) for a, b in json.loads((self.path / SEGMENTS_NAME).read_text())]
        except (OSError, ValueError, TypeError):
            raise ConfigError(f"state dir {self.path} has no readable {SEGMENTS_NAME}; delete the folder to start over") from None

    def _mismatch(self, found: dict) -> str:
        if found.get("device_kind") != self.config.get("device_kind"):
            return (f"state dir {self.path} was started on {found.get('device_kind')} and this run is on "
                    f"{self.config.get('device_kind')}: results of different devices are not mixed; resume it there "
                    "or use another --state-dir")
        diff = sorted(k for k in set(found) | set(self.config) if found.get(k) != self.config.get(k))
        return (f"state dir {self.path} belongs to a different evaluation (differs in: {', '.join(diff)}); "
                "use another --state-dir or delete it to start over")

    def _grows(self, found: dict, prefix_sha256, examples: range, stored: list[tuple[int, int]]) -> bool:
        """Whether ``found`` is this (unsharded) evaluation on fewer of the same first images."""
        new, old = self.config, found
        differ = {k for k in set(new) | set(old) if new.get(k) != old.get(k)}
        if prefix_sha256 is None or differ != _GROWS or examples != range(new["n_examples"]):
            return False
        if not isinstance(old["n_examples"], int) or not 0 < old["n_examples"] < new["n_examples"]:
            return False
        if stored[-1][1] != old["n_examples"] or old["data"].get("source") != new["data"]["source"]:
            return False
        return prefix_sha256(old["n_examples"]) == old["data"].get("sha256")

    def task_path(self, task: Task) -> Path:
        start, stop = task.segment
        return self.path / f"{start:06d}-{stop:06d}-L{task.level:03d}-c{task.chunk:06d}.pt"

    def load(self, task: Task) -> dict | None:
        """The saved record of ``task``, or None when it has not finished."""
        path = self.task_path(task)
        if not path.is_file():
            return None
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, EOFError, pickle.UnpicklingError, ValueError, OSError) as e:
            raise ConfigError(f"state file {path} is corrupt ({type(e).__name__}); delete it to recompute that chunk") from None
        members = record.get("members") if isinstance(record, dict) else None
        if not isinstance(members, torch.Tensor) or members.tolist() != list(task.members):
            raise ConfigError(f"state file {path} does not hold chunk {task.chunk} of this evaluation; "
                              "delete it to recompute that chunk")
        return record

    def save(self, task: Task, record: dict) -> None:
        """Write the record of a finished task atomically."""
        with atomic_file(self.task_path(task)) as f:
            torch.save(record, f)
