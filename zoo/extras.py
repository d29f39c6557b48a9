"""Optional dependencies: robustbench, imported on first use, or one line naming the extra that installs it.

robustbench is optional (``pip install 'score-zoo[robustbench]'``): it pins timm and gdown exactly and needs
setuptools < 81, so the core install leaves it out. Every path that needs it goes through ``import_robustbench``.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

from .errors import ConfigError

EXTRA = "robustbench"
INSTALL_HINT = "pip install 'score-zoo[robustbench]'"


def import_robustbench(module: str = "robustbench", purpose: str = "this") -> ModuleType:
    """Import ``module`` (robustbench or one of its modules), or raise ``ConfigError`` naming the extra to install.

    ``purpose`` says what needs it (``"robustbench:NAME"``, ``"score-zoo mirror"``...), for the one error line.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # robustbench's import-time deprecation noise
            return importlib.import_module(module)
    except ImportError as e:
        missing = e.name or ""
        if missing == EXTRA or missing.startswith(EXTRA + "."):
            raise ConfigError(f"{purpose} needs RobustBench, which is not installed: {INSTALL_HINT}") from None
        first = " ".join(str(e).split())[:200]   # installed, but a package it imports is missing or too new
        raise ConfigError(f"{purpose} needs RobustBench, which is installed but cannot be imported ({first}): "
                          f"{INSTALL_HINT} installs the versions it needs") from None


def robustbench_version(purpose: str = "this") -> str:
    """The installed robustbench's version (``ConfigError`` naming the extra when it is not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    import_robustbench(purpose=purpose)
    try:
        return version("robustbench")
    except PackageNotFoundError:   # importable without distribution metadata (a clone on PYTHONPATH)
        return "unknown"
