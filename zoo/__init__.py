"""SCORE Zoo: adversarially robust SCORE models, verified and ready to use.

>>> import zoo
>>> model = zoo.load_model("cifar10-linf")          # sha256-checked; see zoo.sources for where from
>>> model = zoo.create_model("wrn-28-10-swish", dataset="cifar10")   # untrained

Importing ``zoo`` has its architectures, and its published entries that have a
RobustBench name, registered with timm when timm is imported (``zoo.timm_models``).
"""

from __future__ import annotations

from .architectures import create_model, list_architectures
from .errors import ScoreZooError
from .loading import load_located, load_model, resolve_model_dir
from .model_dir import load_model_dir, read_config, save_model_dir
from .registry import Entry, get_entry, list_entries
from .sources import Located, locate
from .timm_models import register_timm_models, register_when_timm_is_imported

__version__ = "0.1.0"


register_when_timm_is_imported()

__all__ = [
    "Entry", "Located", "ScoreZooError", "create_model", "get_entry", "list_architectures", "list_entries",
    "load_located", "load_model", "load_model_dir", "locate", "read_config", "register_timm_models", "resolve_model_dir",
    "save_model_dir", "__version__",
]
