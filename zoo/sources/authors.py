"""Source 2: the authors' original checkpoint, from the URL in the entry's ``origin``.

``$SCORE_ZOO_ORIGIN_ENDPOINT`` replaces the URL's scheme and host (a mirror,
or a test server). The file is streamed with the standard library; an HTTP
error, an unreachable host or a transfer shorter than announced is a
``HubError``.
"""

from __future__ import annotations

import http.client
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import HubError
from ..registry import Entry

NAME = "authors"
LABEL = "the authors' server"
ENDPOINT_ENV = "SCORE_ZOO_ORIGIN_ENDPOINT"
TIMEOUT_S = 30


def applies(entry: Entry) -> bool:
    """Whether the entry names an original checkpoint URL."""
    return bool(entry.origin.get("url"))


def pinned_sha256(entry: Entry) -> str | None:
    """The sha256 the entry pins for the authors' file, if any."""
    return entry.origin.get("sha256")


def url(entry: Entry) -> str:
    """The URL of the entry's original checkpoint, honouring ``$SCORE_ZOO_ORIGIN_ENDPOINT``."""
    original = entry.origin["url"]
    endpoint = os.environ.get(ENDPOINT_ENV)
    if not endpoint:
        return original
    parts = urlsplit(original)
    return endpoint.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def file_name(entry: Entry) -> str:
    """The original file's name (the last part of its URL)."""
    return Path(urlsplit(entry.origin["url"]).path).name or f"{entry.name}.pt"


def download(entry: Entry, dest: Path) -> str:
    """Stream the original checkpoint to ``dest``; return the URL it came from."""
    where = url(entry)
    try:
        with urllib.request.urlopen(where, timeout=TIMEOUT_S) as response, open(dest, "wb") as f:
            announced = response.headers.get("Content-Length")
            shutil.copyfileobj(response, f, 1 << 20)
    except urllib.error.HTTPError as e:
        raise HubError(f"HTTP {e.code} for {where}") from None
    except http.client.IncompleteRead:
        raise HubError(f"the download of {where} was truncated (the connection closed before the announced "
                       "size)") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = getattr(e, "reason", None) or e
        raise HubError(f"cannot fetch {where} ({reason})") from None
    if announced is not None and dest.stat().st_size != int(announced):
        raise HubError(f"the download of {where} was truncated ({dest.stat().st_size} of {announced} bytes)")
    return where
