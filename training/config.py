"""The training configuration: one flat, typed set of values, validated early.

A run is fully described by a ``TrainConfig``; recipes (TOML files) and
``--set key=value`` overrides both go through :func:`make_config`, so an
unknown key or a value of the wrong type is a ``ConfigError`` naming the
valid keys.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

from zoo.datasets_meta import check_dataset
from zoo.errors import ConfigError, close_matches_hint

OBJECTIVES = ("score", "trades", "pgd-at")
THREATS = ("linf", "l2")
DATA_ENV = "SCORE_ZOO_DATA"


@dataclass(frozen=True)
class TrainConfig:
    """Every value that determines a training run (the run directory's config.json)."""

    # data
    dataset: str = "cifar10"
    data_dir: str = ""                 # "" -> $SCORE_ZOO_DATA; a folder or one .npz file
    train_subset: int = 0              # use only the first N training images (0 = all)
    holdout_size: int = 1024           # training images held out for model selection
    generated_data: str = ""           # .npz with image (N,32,32,3) uint8 and label (N,)
    generated_fraction: float = 0.0    # share of each batch drawn from generated_data
    augment: bool = True               # random crop (pad 4) + horizontal flip
    # model
    architecture: str = "wrn-28-10-swish"
    bn_momentum: float = 0.01
    # objective and training attack
    objective: str = "score"
    threat: str = "linf"
    eps: float = 8 / 255
    attack_steps: int = 10
    attack_step_size: float = 2 / 255
    beta: float = 3.0
    label_smoothing: float = 0.0
    clip: float = 0.0
    # optimisation
    epochs: int = 400
    batch_size: int = 512
    lr: float = 0.2
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.025
    grad_clip: float = 0.0             # max global gradient norm (0 = off)
    # weight averaging
    ema_decay: float = 0.995
    ema_warmup_fraction: float = 0.025
    ema_dynamic: bool = True
    # evaluation and checkpoints
    eval_attack_steps: int = 40
    eval_attack_step_size: float = 0.0  # 0 -> 2.5 * eps / steps
    eval_batch_size: int = 512
    eval_every: int = 1                 # epochs between held-out evaluations (last epoch always)
    checkpoint_every: int = 200         # optimiser steps between mid-epoch checkpoints (0 = epoch ends only)
    # execution
    seed: int = 0
    deterministic: bool = True
    channels_last: bool = False         # CUDA only
    bf16: bool = False                  # bf16 autocast, CUDA only

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    def resolved_data_dir(self) -> str:
        """Return data_dir, falling back to $SCORE_ZOO_DATA; raise if neither is set."""
        value = self.data_dir or os.environ.get(DATA_ENV, "")
        if not value:
            raise ConfigError(f"no training data: pass --data-dir DIR (or --set data_dir=...) or set {DATA_ENV} "
                              "to a folder with the official files or a .npz such as cifar10_train_jpeg.npz")
        return value


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}
_DEFAULTS = TrainConfig()


def valid_keys() -> list[str]:
    """Names of every config key."""
    return list(FIELD_TYPES)


def _coerce(key: str, value: Any) -> Any:
    kind = type(getattr(_DEFAULTS, key))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        try:
            as_float = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be an integer, got {value!r}") from None
        if as_float != int(as_float):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(as_float)
    if kind is float:
        if isinstance(value, str) and "/" in value:  # allow 8/255
            num, _, den = value.partition("/")
            try:
                return float(num) / float(den)
            except (ValueError, ZeroDivisionError):
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    return str(value)


def make_config(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a validated ``TrainConfig`` from a dict; unknown keys are a ``ConfigError``."""
    unknown = [k for k in values if k not in FIELD_TYPES]
    if unknown:
        hint = close_matches_hint(unknown[0], FIELD_TYPES)
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}.{hint} Valid keys: {', '.join(FIELD_TYPES)}")
    config = TrainConfig(**{k: _coerce(k, v) for k, v in values.items()})
    validate(config, source)
    return config


def parse_overrides(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """Turn ``['key=value', ...]`` into a dict (values stay strings until make_config)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def validate(c: TrainConfig, source: str = "config") -> None:
    """Check ranges and choices; raise ``ConfigError`` with the first problem."""
    def bad(msg: str):
        raise ConfigError(f"{source}: {msg}")

    try:
        check_dataset(c.dataset)
    except KeyError as e:
        bad(str(e))
    if c.objective not in OBJECTIVES:
        bad(f"objective must be one of {', '.join(OBJECTIVES)}, got {c.objective!r}")
    if c.threat not in THREATS:
        bad(f"threat must be one of {', '.join(THREATS)}, got {c.threat!r}")
    for key in ("eps", "attack_step_size", "lr", "batch_size", "epochs", "eval_batch_size", "ema_decay"):
        if getattr(c, key) <= 0:
            bad(f"{key} must be > 0, got {getattr(c, key)}")
    for key in ("attack_steps", "eval_attack_steps", "beta", "label_smoothing", "clip", "weight_decay",
                "grad_clip", "train_subset", "holdout_size", "checkpoint_every", "eval_every", "momentum"):
        if getattr(c, key) < 0:
            bad(f"{key} must be >= 0, got {getattr(c, key)}")
    for key in ("generated_fraction", "warmup_fraction", "ema_warmup_fraction", "bn_momentum"):
        if not 0 <= getattr(c, key) <= 1:
            bad(f"{key} must lie in [0, 1], got {getattr(c, key)}")
    if c.generated_fraction == 1 and c.generated_data:
        bad("generated_fraction must be < 1: each batch needs real images")
    if c.label_smoothing >= 1:
        bad(f"label_smoothing must be < 1, got {c.label_smoothing}")
