"""RobustBench's copy of a checkpoint on Google Drive (the entry's ``origin.gdrive_id``).

Fetched as robustbench's own loader fetches it: ``gdown`` on
``https://drive.google.com/uc?id=ID`` (``$SCORE_ZOO_GDRIVE_ENDPOINT`` replaces
the scheme and host: a mirror, or a test server). Drive is known to answer with
an HTML page (quota, virus-scan notice) instead of the file; gdown saves
whatever it gets, so the caller checks the bytes before importing them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import HubError
from ..registry import Entry

NAME = "robustbench-gdrive"
LABEL = "RobustBench's Google Drive copy"
ENDPOINT_ENV = "SCORE_ZOO_GDRIVE_ENDPOINT"
DRIVE = "https://drive.google.com"


def applies(entry: Entry) -> bool:
    """Whether RobustBench keeps a copy of the entry's checkpoint."""
    return bool(entry.origin.get("gdrive_id"))


def pinned_sha256(entry: Entry) -> str | None:
    """The sha256 the entry pins for RobustBench's copy, if any."""
    return entry.origin.get("gdrive_sha256")


def url(entry: Entry) -> str:
    """The Drive download URL of the entry's copy (robustbench's form), honouring ``$SCORE_ZOO_GDRIVE_ENDPOINT``."""
    return id_url(entry.origin["gdrive_id"])


def id_url(gdrive_id: str) -> str:
    """The Drive download URL of a file id, honouring ``$SCORE_ZOO_GDRIVE_ENDPOINT``."""
    endpoint = (os.environ.get(ENDPOINT_ENV) or DRIVE).rstrip("/")
    return f"{endpoint}/uc?id={gdrive_id}"


def file_name(entry: Entry) -> str:
    """The name robustbench gives the file: ``{robustbench_name}.pt``."""
    return f"{entry.origin.get('robustbench_name') or entry.name}.pt"


def download(entry: Entry, dest: Path) -> str:
    """Fetch the entry's copy to ``dest`` with gdown; return the URL it came from."""
    return download_id(entry.origin["gdrive_id"], dest)


def download_id(gdrive_id: str, dest: Path) -> str:
    """Fetch the Drive file ``gdrive_id`` to ``dest`` with gdown; return the URL it came from.

    Whatever Drive answers is saved (an HTML page included): the caller checks the bytes.
    """
    import gdown
    import requests

    where = id_url(gdrive_id)
    progress = sys.stderr.isatty()  # gdown's own progress bar, on a terminal only
    try:
        saved = gdown.download(url=where, output=str(dest), quiet=not progress)
    except (*_gdown_errors(), requests.RequestException, OSError) as e:
        if progress:
            print(file=sys.stderr)  # end the progress bar's line before the error line
        raise _one_line(e, where) from None
    if saved is None or not dest.is_file():
        raise HubError(f"gdown fetched nothing from {where}")
    return where


def _gdown_errors() -> tuple[type[Exception], ...]:
    """gdown's own exceptions: FileURLRetrievalError, and since gdown 6 DownloadError (its base, which also reports a
    truncated transfer)."""
    import gdown.exceptions

    return tuple(getattr(gdown.exceptions, name) for name in ("FileURLRetrievalError", "DownloadError")
                 if hasattr(gdown.exceptions, name))


def _one_line(e: Exception, where: str) -> HubError:
    """gdown's and requests' failures as one ``HubError`` line (tested with gdown 5.1 and 6.5)."""
    import gdown
    import requests

    if isinstance(e, gdown.exceptions.FileURLRetrievalError):
        return HubError(f"Google Drive did not hand out the file at {where} (download quota exceeded, or the "
                        "file is not shared)")
    # gdown < 6 lets requests' ChunkedEncodingError through; gdown 6 raises DownloadError("Download is incomplete...")
    if isinstance(e, requests.exceptions.ChunkedEncodingError) or "download is incomplete" in str(e).lower():
        return HubError(f"the download of {where} was truncated (the connection closed before the announced size)")
    return HubError(f"cannot fetch {where} ({' '.join(str(e).split())[:200]})")
