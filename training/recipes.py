"""Recipes: named training configurations stored as TOML under training/recipes/.

A recipe file holds config keys (see ``training.config.TrainConfig``), plus
optionally ``base = "other-recipe"`` to start from another recipe and
``description = "..."``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from zoo.errors import ConfigError, UnknownNameError, close_matches_hint

from .config import TrainConfig, make_config

RECIPE_DIR = Path(__file__).parent / "recipes"
_META_KEYS = ("base", "description")


def list_recipes() -> list[str]:
    """Names of the recipes shipped with the package."""
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"recipe {path} is not valid TOML ({e})") from None


def recipe_path(name_or_path: str) -> Path:
    """Resolve a recipe name (shipped) or a path to a .toml file."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.is_file():
        return path
    shipped = RECIPE_DIR / f"{name_or_path}.toml"
    if shipped.is_file():
        return shipped
    raise UnknownNameError(f"unknown recipe '{name_or_path}'; known: {', '.join(list_recipes())} (or a path to a .toml file)."
                           + close_matches_hint(name_or_path, list_recipes()))


def recipe_values(name_or_path: str, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return the recipe's config values with its ``base`` chain applied (meta keys removed)."""
    path = recipe_path(name_or_path)
    if path.stem in _seen:
        raise ConfigError(f"recipe {path} has a circular 'base' chain: {' -> '.join(_seen + (path.stem,))}")
    raw = _read(path)
    values: dict[str, Any] = {}
    if "base" in raw:
        values.update(recipe_values(str(raw["base"]), _seen + (path.stem,)))
    values.update({k: v for k, v in raw.items() if k not in _META_KEYS})
    return values


def recipe_description(name_or_path: str) -> str:
    """The recipe's one-line description ('' if none)."""
    return str(_read(recipe_path(name_or_path)).get("description", ""))


def load_recipe(name_or_path: str, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Build the validated config of a recipe, with ``overrides`` (e.g. from --set) applied on top."""
    values = recipe_values(name_or_path)
    # report unknown keys of the recipe file itself before mixing in the overrides
    make_config(values, source=f"recipe {name_or_path}")
    values.update(overrides or {})
    return make_config(values, source=f"recipe {name_or_path} with --set overrides" if overrides else f"recipe {name_or_path}")
