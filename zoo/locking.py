"""An exclusive lock on an output (a result file or a run directory), so two runs never write the same one."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from .errors import ConfigError


def lock_path_for(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


@contextlib.contextmanager
def output_lock(out: str | os.PathLike, what: str = "evaluation", directory: bool = False) -> Iterator[Path]:
    """Hold an flock on ``.OUT.lock`` beside ``out``; refuse if another run holds it.

    ``out`` is a file, or with ``directory`` a run directory; ``what`` names the
    run in the refusal ("another evaluation is writing ..."). The lock dies with
    its process (SIGKILL included), so a re-run may resume. Also checks that
    ``out`` can be written before any work starts.
    """
    out = Path(out)
    if out.is_dir() and not directory:
        raise ConfigError(f"--out {out} is a directory; give a file name like result.json")
    if out.exists() and not out.is_dir() and directory:
        raise ConfigError(f"--out {out} is a file; give a directory for the run")
    path = lock_path_for(out)
    while True:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot write to {out.parent} ({e.strerror or e}); choose a writable --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"another {what} is writing {out} (lock {path} is held); wait for it or "
                              "choose another --out") from None
        try:  # the holder before us may have removed the file: lock the current one
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        if not os.access(out.parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
            raise ConfigError(f"cannot write {out}: permission denied; choose a writable --out")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)
