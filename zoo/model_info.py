"""RobustBench's model_info JSON (paper, authors, venue, accuracies, footnote) of the models it lists.

The pip package of robustbench does not ship model_info; it lives in RobustBench's
GitHub repository, ``model_info/{dataset}/{threat_model}/{name}.json``. The tree is,
in this order:

1. ``--model-info-dir`` (the model_info folder of a clone, or the clone);
2. a clone's folder next to the installed robustbench (an editable install of a clone);
3. else RobustBench's repository itself: each model's file is fetched over HTTPS
   when it is needed, from ``$SCORE_ZOO_MODEL_INFO_URL`` (default: the raw files of
   the master branch on GitHub), checked (JSON with ``clean_acc``) and cached in
   ``{HF_HOME}/score-zoo/robustbench-model-info/``; a cached file is used as it is
   (delete the folder to fetch anew). A failure (offline, HTTP 404) is one line
   saying how to give the tree instead (``--model-info-dir``).

Nothing here imports robustbench: the JSON files are data.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .fileio import atomic_write_bytes, cache_dir, read_json

_DATASET_FOLDERS = ("cifar10", "cifar100", "imagenet")
URL_ENV = "SCORE_ZOO_MODEL_INFO_URL"
DEFAULT_URL = "https://raw.githubusercontent.com/RobustBench/robustbench/master/model_info"
TIMEOUT_S = 30
CLONE_HINT = ("pass --model-info-dir with the model_info folder of a clone of RobustBench's repository "
              "(git clone https://github.com/RobustBench/robustbench)")


@dataclass(frozen=True)
class ModelInfoTree:
    """RobustBench's model_info tree (``{dataset}/{threat_model}/{name}.json``) and how it was found.

    ``path`` is a local folder; or ``url`` is the tree's base URL, its files fetched
    one by one on demand and cached in ``path``.
    """

    path: Path
    how: str
    url: str | None = None

    @property
    def where(self) -> str:
        """The tree, as the CLI shows it: the folder, or the URL."""
        return self.url or str(self.path)


def model_info_url() -> str:
    """The base URL of RobustBench's model_info tree (``$SCORE_ZOO_MODEL_INFO_URL``, else GitHub's raw files)."""
    return (os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")


def cache_root() -> Path:
    """``{HF_HOME}/score-zoo/robustbench-model-info``."""
    return cache_dir("robustbench-model-info")


def remote_tree(url: str | None = None) -> ModelInfoTree:
    """RobustBench's model_info tree at ``url`` (default ``model_info_url()``), fetched per file, cached per URL."""
    url = (url or model_info_url()).rstrip("/")
    cache = cache_root() / hashlib.sha256(url.encode()).hexdigest()[:16]   # another URL, another cache
    return ModelInfoTree(cache, f"no clone found: each model's file is fetched from RobustBench's repository and "
                                f"cached in {cache}", url)


def find_model_info_dir(given: str | os.PathLike | None = None) -> ModelInfoTree:
    """RobustBench's model_info tree: ``given`` (the tree, or a folder holding ``model_info/``), else a clone's next
    to robustbench, else RobustBench's repository over HTTPS (``remote_tree``)."""
    if given is not None:
        given = Path(given)
        for candidate in (given / "model_info", given):
            if _is_model_info_tree(candidate):
                return ModelInfoTree(candidate, "given with --model-info-dir")
        raise ConfigError(f"--model-info-dir {given} is not RobustBench's model_info tree (no {'/'.join(_DATASET_FOLDERS)} "
                          "folders in it or in its model_info/)")
    for candidate in _next_to_robustbench():
        if _is_model_info_tree(candidate):
            return ModelInfoTree(candidate, "found next to the installed robustbench")
    return remote_tree()


def _next_to_robustbench() -> list[Path]:
    """Where a clone of RobustBench keeps model_info, if robustbench is installed from one (found, not imported)."""
    from importlib.util import find_spec

    try:
        spec = find_spec("robustbench")
    except (ImportError, ValueError):   # None in sys.modules, or a broken install
        return []
    if spec is None or not spec.origin:
        return []
    package = Path(spec.origin).resolve().parent
    return [package / "model_info", package.parent / "model_info"]


def _is_model_info_tree(path: Path) -> bool:
    return path.is_dir() and any((path / d).is_dir() for d in _DATASET_FOLDERS)


def read_model_info(tree: ModelInfoTree, name: str, dataset: str, threat_model: str) -> dict:
    """RobustBench's model_info JSON of one model (paper, authors, venue, accuracies, footnote, ...)."""
    relative = f"{dataset}/{threat_model}/{name}.json"
    path = tree.path / relative
    if tree.url is not None and not path.is_file():
        _fetch(f"{tree.url}/{relative}", path)
    if not path.is_file():
        raise ConfigError(f"RobustBench's model_info has no {relative} in {tree.path}")
    info = read_json(path, "RobustBench model_info file")
    if not isinstance(info, dict) or "clean_acc" not in info:
        raise ConfigError(f"{path} is not a RobustBench model_info file (no clean_acc)")
    return info


def _fetch(url: str, dest: Path) -> None:
    """Fetch one model_info file into the cache; it is kept only if it is a model_info JSON object.

    Any failure is one ``ConfigError`` line that says how to give the tree instead.
    """
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            body = response.read()
    except urllib.error.HTTPError as e:
        what = "no such file there" if e.code == 404 else f"HTTP {e.code}"
        raise ConfigError(f"cannot fetch RobustBench's model_info {url} ({what}); {CLONE_HINT}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        reason = " ".join(str(getattr(e, "reason", None) or e).split())[:200]
        raise ConfigError(f"cannot fetch RobustBench's model_info {url} ({reason}); {CLONE_HINT}") from None
    try:
        info = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        info = None
    if not isinstance(info, dict) or "clean_acc" not in info:
        raise ConfigError(f"{url} is not a RobustBench model_info file (not JSON with clean_acc); {CLONE_HINT}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, body)
