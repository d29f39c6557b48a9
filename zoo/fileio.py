"""Atomic file writing and hashing: nothing half-written is ever left behind."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import BinaryIO, Iterator

from .errors import ConfigError, WriteError


def cache_dir(name: str) -> Path:
    """``{HF_HOME}/score-zoo/{name}``: the zoo's own caches beside the Hub's (HF_HOME read now; HF's default otherwise)."""
    from huggingface_hub import constants

    home = os.environ.get("HF_HOME") or constants.HF_HOME
    return Path(os.path.expanduser(home)) / "score-zoo" / name


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: list[str | os.PathLike]) -> str:
    """The sha256 of one file; of several (an ensemble's members), the sha256 of their hex digests in order."""
    digests = [sha256_file(p) for p in paths]
    return digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()


def write_error(path: str | os.PathLike, error: OSError) -> WriteError:
    """The one-line ``WriteError`` of an OSError met while writing ``path``: what failed and what to do."""
    cause = error.strerror or str(error)
    hint = "free some space and run it again" if error.errno == errno.ENOSPC else "choose a writable location"
    return WriteError(f"cannot write {path}: {cause[:1].lower()}{cause[1:]}; {hint}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``.

    On any exception the temporary file is removed and ``path`` is untouched;
    an OSError (permissions, read-only file system, full disk) becomes a
    ``WriteError`` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` when it is complete (as :func:`atomic_path`).

    Libraries that write through a Python file object report a full disk as
    the OSError it is (``torch.save`` to a path says "unexpected pos").
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        yield f


def read_json(path: str | os.PathLike, what: str = "file"):
    """Parse a JSON file; a missing or malformed one is a ``ConfigError`` naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as e:
        raise ConfigError(f"{what} {path} is not valid JSON ({e})") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder that becomes ``final`` on success.

    The folder is built beside ``final`` and renamed into place at the end, so a
    crash or an error leaves either the old ``final`` or nothing, never a
    half-written folder. With ``overwrite`` an existing ``final`` is replaced.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    except OSError as e:
        raise write_error(final, e) from None
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
        if final.exists():
            if not overwrite:
                raise ConfigError(f"{final} already exists; choose another folder or let it be replaced")
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as e:
        raise write_error(final, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
