"""Typed, user-facing errors shared by all SCORE Zoo packages.

Every error a user can cause (bad file, bad name, bad option) is raised as a
``ScoreZooError`` subclass whose message is one line saying what was wrong and
what to do. The CLIs print that line and exit 1.
"""


class ScoreZooError(Exception):
    """Base class of every user-facing error in SCORE Zoo.

    ``details`` (optional, any number of lines) is what the one-line message
    leaves out; a CLI shows it with ``--verbose``.
    """

    def __init__(self, *args, details: str | None = None):
        super().__init__(*args)
        self.details = details


class UnknownNameError(ScoreZooError, KeyError):
    """A model, architecture, dataset or recipe name that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class CheckpointError(ScoreZooError):
    """A weights file that cannot be read, or does not fit the architecture."""


class IntegrityError(ScoreZooError):
    """A file whose sha256 (or size) differs from the expected one."""


class DataError(ScoreZooError):
    """A dataset file that is missing, malformed or of the wrong shape."""


class ConfigError(ScoreZooError):
    """An invalid option, config file, registry entry or state directory."""


class WriteError(ScoreZooError):
    """A file or folder that cannot be written: permissions, a read-only file system, a full disk."""


class HubError(ScoreZooError):
    """A failure talking to the Hugging Face Hub (or a Hub-compatible server)."""


def close_matches_hint(name: str, candidates) -> str:
    """Return ' Did you mean: a, b?' for names close to ``name`` (or '')."""
    import difflib

    matches = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""
