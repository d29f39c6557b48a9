"""The registry of zoo entries: data files, not code.

Built-in entries are the JSON files in ``zoo/entries/``. Users add their own in
one JSON file: the path in ``$SCORE_ZOO_REGISTRY``, else
``$XDG_CONFIG_HOME/score-zoo/registry.json`` (``~/.config/...``). A user entry
with the name of a built-in one overrides it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, UnknownNameError, close_matches_hint
from .fileio import atomic_write_json, read_json

BUILTIN_DIR = Path(__file__).parent / "entries"
REGISTRY_ENV = "SCORE_ZOO_REGISTRY"
# An entry name is a file name (NAME.json, models/NAME) and a Hub repository name: the Hub's rule.
_NAME = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?")


@dataclass(frozen=True)
class Entry:
    """One model of the zoo and everything known about it.

    ``hub`` holds ``repo_id``, ``revision`` and ``filename`` once published;
    ``origin`` where the original checkpoint came from; ``local_dir`` a model
    directory shipped with the package (relative to ``zoo/``) or on disk;
    ``evaluations`` result JSONs (dicts or paths); ``baselines`` names of
    entries the card compares this one with.
    """

    name: str
    dataset: str
    threat_model: str
    eps: str
    architecture: str
    num_classes: int
    source: dict = field(default_factory=dict)
    reported: dict = field(default_factory=dict)
    recipe: dict = field(default_factory=dict)
    hub: dict = field(default_factory=dict)
    sha256: str | None = None
    published: bool = False
    origin: dict = field(default_factory=dict)
    local_dir: str | None = None
    license: str = "mit"
    additional_data: bool = False
    footnote: str | None = None
    description: str = ""
    evaluations: list = field(default_factory=list)
    baselines: list = field(default_factory=list)
    studies: list = field(default_factory=list)  # multi-seed study files (entries/studies/NAME.json) it belongs to
    builtin: bool = True

    @property
    def eps_value(self) -> float:
        """The numeric eps (``"8/255"`` -> 0.0313...)."""
        return parse_eps(self.eps)

    @property
    def robustbench_id(self) -> tuple[str, str, str] | None:
        """(RobustBench model name, dataset, threat model) when RobustBench lists this model."""
        name = self.origin.get("robustbench_name")
        return (name, self.dataset, self.origin.get("robustbench_threat_model") or self.threat_model) if name else None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("builtin")
        return d

    def local_path(self) -> Path | None:
        """The shipped or local model directory, if the entry has one."""
        if not self.local_dir:
            return None
        path = Path(self.local_dir)
        return path if path.is_absolute() else Path(__file__).parent / path


def parse_eps(text: str | float) -> float:
    """Parse an eps like ``8/255``, ``0.5`` or ``12``."""
    if isinstance(text, (int, float)):
        return float(text)
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise ConfigError(f"cannot parse eps '{text}'; write it like 8/255 or 0.5") from None


def check_name(name) -> str:
    """Return ``name`` if it may name an entry (built-in or user), else raise ``ConfigError`` saying the rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(f"{name!r} is not a valid entry name: use letters, digits, '-', '_' and '.' (no '--' or "
                          "'..'), starting and ending with a letter or digit, at most 96 characters, e.g. my-model")
    return name


_FIELDS = {f.name for f in dataclasses.fields(Entry)}


def entry_from_dict(data: dict, origin: str, builtin: bool) -> Entry:
    """Validate a dict from a registry file and turn it into an ``Entry``."""
    if "study" in data:  # the single-study spelling of entries written before studies were a list
        data = {k: v for k, v in data.items() if k != "study"} | {"studies": [data["study"]] if data["study"] else []}
    unknown = set(data) - _FIELDS
    if unknown:
        raise ConfigError(f"{origin}: unknown entry field(s) {', '.join(sorted(unknown))}")
    required = [f.name for f in dataclasses.fields(Entry)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"{origin}: entry lacks field(s) {', '.join(missing)}")
    try:
        check_name(data["name"])
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None
    return Entry(**{**data, "builtin": builtin})


def user_registry_path() -> Path:
    """Where user entries live ($SCORE_ZOO_REGISTRY or the XDG config folder)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "score-zoo" / "registry.json"


def user_models_dir() -> Path:
    """Where registered user models live: ``models/`` beside the user registry file."""
    return user_registry_path().parent / "models"


def _read_user_entries() -> list[Entry]:
    path = user_registry_path()
    if not path.is_file():
        return []
    data = read_json(path, "user registry")
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list):
        raise ConfigError(f"user registry {path} must be an object with an 'entries' list")
    return [entry_from_dict(d, str(path), builtin=False) for d in data["entries"]]


def builtin_entries() -> list[Entry]:
    """The entries shipped with the package."""
    return [entry_from_dict(read_json(p, "registry entry"), str(p), builtin=True)
            for p in sorted(BUILTIN_DIR.glob("*.json"))]


def list_entries() -> list[Entry]:
    """All entries, built-in first, user entries overriding same-named ones."""
    entries = {e.name: e for e in builtin_entries()}
    entries.update({e.name: e for e in _read_user_entries()})
    return sorted(entries.values(), key=lambda e: (e.dataset, e.name))


def get_entry(name: str) -> Entry:
    """Return the entry called ``name``; an unknown name lists close matches."""
    if not isinstance(name, str):
        raise ConfigError(f"an entry name is a string like 'cifar10-linf', not {type(name).__name__} {name!r}")
    entries = {e.name: e for e in list_entries()}
    if name not in entries:
        raise UnknownNameError(f"no zoo entry called '{name}'.{close_matches_hint(name, entries)} "
                               "Run 'score-zoo list' to see all entries.")
    return entries[name]


def add_user_entry(entry: Entry) -> Path:
    """Add or replace ``entry`` in the user registry file; return its path."""
    path = user_registry_path()
    existing = [e for e in _read_user_entries() if e.name != entry.name]
    atomic_write_json(path, {"entries": [e.to_dict() for e in existing] + [entry.to_dict()]})
    return path


def save_entry(entry: Entry) -> Path:
    """Write ``entry`` where its ``builtin`` flag says; return the file's path.

    A built-in entry goes into the package's set (``zoo/entries/NAME.json``, for
    maintainers); a user entry into the user registry file (``add_user_entry``).
    """
    check_name(entry.name)
    if not entry.builtin:
        return add_user_entry(entry)
    path = BUILTIN_DIR / f"{entry.name}.json"
    atomic_write_json(path, entry.to_dict())
    return path
