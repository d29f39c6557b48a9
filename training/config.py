"""The training configuration: one flat, typed set of values, validated early.

A run is fully described by a ``TrainConfig``; recipes (TOML files) and
``--set key=value`` overrides both go through :func:`make_config`, so an
unknown key or a value of the wrong type is a ``ConfigError`` naming the
valid keys.

Two sets of per-step semantics are implemented, each after one script of the
official SCORE code (github.com/P2333/SCORE): ``semantics = "train-wa"``
(train-wa.py with the gowal21uncovering trainer: the released checkpoints) and
``semantics = "train-cifar"`` (without_DDPM/train_cifar.py: the paper's runs
without generated data). See training/objectives.py for what each means.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, fields
from typing import Any

from zoo.datasets_meta import check_dataset
from zoo.errors import ConfigError, ScoreZooError, close_matches_hint

from .distances import check_distance

OBJECTIVES = ("score", "trades", "pgd-at", "mart")
SEMANTICS = ("train-wa", "train-cifar")
THREATS = ("linf", "l2")
AUGMENTATIONS = ("auto", "none", "crop-flip", "crop-flip-rotate")
LR_SCHEDULES = ("onecycle", "piecewise", "constant")
SCHEDULE_UNITS = ("epoch", "step")
DATA_ENV = "SCORE_ZOO_DATA"
# The distance each objective uses when ``distance`` is left empty.
DEFAULT_DISTANCE = {"score": "LSE", "trades": "KL", "pgd-at": "KL", "mart": "KL"}


@dataclass(frozen=True)
class TrainConfig:
    """Every value that determines a training run (the run directory's config.json)."""

    # data
    dataset: str = "cifar10"
    data_dir: str = ""                 # "" -> $SCORE_ZOO_DATA; a folder or one .npz file
    test_data: str = ""                # test split for logging; "" -> next to data_dir when it is a folder
    train_subset: int = 0              # use only the first N training images (0 = all)
    holdout_size: int = 1024           # the FIRST N training images, held out for model selection
    generated_data: str = ""           # .npz with image (N,32,32,3) uint8 and label (N,)
    generated_fraction: float = 0.0    # share of each batch drawn (with replacement) from generated_data
    augmentation: str = "auto"         # auto: crop+flip (CIFAR-10), +rotation 15 (CIFAR-100), none (SVHN)
    cutmix: bool = False               # CutMix x4 of every batch (train-wa's --CutMix)
    # model
    architecture: str = "wrn-28-10-swish"
    bn_momentum: float = 0.01
    bn_first_batch_init: bool = True   # BatchNorm momentum 1.0 during the first optimisation step
    # objective and training attack
    semantics: str = "train-wa"
    objective: str = "score"
    distance: str = ""                 # "" -> LSE for score, KL (= cross-entropy) otherwise
    threat: str = "linf"
    eps: float = 8 / 255
    attack_steps: int = 10
    attack_step_size: float = 2 / 255
    beta: float = 3.0
    label_smoothing: float = 0.0
    clip_value: float = 0.0            # train-wa --clip_value: robust term relu(d - clip_value)
    clip_loss: float = 0.0             # train_cifar --clip_loss: relu(loss - bound(clip_loss))
    not_clip_clean: bool = False       # train_cifar --not_clip_clean: the bound clips the robust term only
    # optimisation
    epochs: int = 400
    batch_size: int = 512
    lr: float = 0.2
    momentum: float = 0.9              # with lr_schedule=onecycle and cycle_momentum, OneCycleLR sets it
    nesterov: bool = True
    weight_decay: float = 5e-4
    bn_weight_decay: bool = False      # weight decay on BatchNorm weights and biases too
    lr_schedule: str = "onecycle"
    lr_schedule_unit: str = "epoch"    # scheduler stepped once per epoch or once per optimiser step
    warmup_fraction: float = 0.025     # OneCycleLR pct_start
    cycle_momentum: bool = True        # OneCycleLR momentum cycle 0.95 -> 0.85 -> 0.95
    lr_milestones: str = "100,105"     # piecewise: epochs at which lr is multiplied by lr_decay
    lr_decay: float = 0.1
    grad_clip: float = 0.0             # max global gradient norm (0 = off)
    # weight averaging
    ema: bool = True                   # evaluate and release the weight average (else the live model)
    ema_decay: float = 0.995
    ema_warmup_fraction: float = 0.025
    ema_dynamic: bool = True
    # model selection (held-out split), test-split logging and checkpoints
    eval_attack_steps: int = 40
    eval_attack_step_size: float = 0.0  # 0 -> attack_step_size (official)
    eval_batch_size: int = 512
    eval_every: int = 1                 # epochs between held-out evaluations (last epoch always)
    test_clean_every: int = 1           # epochs between clean test accuracy logs (0 = never)
    test_robust_every: int = 25         # epochs between PGD test accuracy logs (0 = never)
    test_size: int = 0                  # first N test images for the logs (0 = all)
    checkpoint_every: int = 200         # optimiser steps between mid-epoch checkpoints (0 = epoch ends only)
    # execution
    seed: int = 0
    deterministic: bool = True
    channels_last: bool = False
    bf16: bool = False                  # bf16 autocast (CUDA, or a CPU with native bf16)
    bf16_emulate: bool = False          # bf16 also where the CPU emulates it (about 10x slower; for numerics checks)

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @property
    def distance_name(self) -> str:
        """The distance between probability vectors this run uses (``distance`` or the objective's default)."""
        return self.distance or DEFAULT_DISTANCE[self.objective]

    @property
    def milestones(self) -> list[int]:
        """``lr_milestones`` as a list of epochs."""
        return [int(m) for m in self.lr_milestones.split(",") if m.strip()]

    @property
    def augmentation_name(self) -> str:
        """The augmentation in effect (``auto`` resolved per dataset as the official loaders do)."""
        if self.augmentation != "auto":
            return self.augmentation
        if self.dataset == "svhn":
            return "none"
        return "crop-flip-rotate" if self.dataset == "cifar100" and self.semantics == "train-wa" else "crop-flip"

    def resolved_data_dir(self) -> str:
        """Return data_dir, falling back to $SCORE_ZOO_DATA; raise if neither is set."""
        value = self.data_dir or os.environ.get(DATA_ENV, "")
        if not value:
            raise ConfigError(f"no training data: pass --data-dir DIR (or --set data_dir=...) or set {DATA_ENV} "
                              "to a folder with the official files or a .npz such as cifar10_train_jpeg.npz")
        return value


FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}
_DEFAULTS = TrainConfig()
MAX_EPOCHS = 10_000  # the official recipes train 110 to 400 epochs


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
        if not math.isfinite(as_float) or as_float != int(as_float):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(as_float)
    if kind is float:
        if isinstance(value, str) and "/" in value:  # allow 8/255
            num, _, den = value.partition("/")
            try:
                number = float(num) / float(den)
            except (ValueError, ZeroDivisionError):
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{key} must be a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return number
    if isinstance(value, list):  # TOML lists, e.g. lr_milestones = [100, 105]
        return ",".join(str(v) for v in value)
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


def _choice(c: TrainConfig, key: str, allowed: tuple[str, ...]) -> str | None:
    value = getattr(c, key)
    return None if value in allowed else f"{key} must be one of {', '.join(allowed)}, got {value!r}"


def _problems(c: TrainConfig) -> list[str]:
    """Every inconsistency of ``c``, most basic first."""
    out: list[str] = []
    try:
        check_dataset(c.dataset)
    except ScoreZooError as e:
        out.append(str(e))
    for key, allowed in (("objective", OBJECTIVES), ("semantics", SEMANTICS), ("threat", THREATS),
                         ("augmentation", AUGMENTATIONS), ("lr_schedule", LR_SCHEDULES),
                         ("lr_schedule_unit", SCHEDULE_UNITS)):
        out.append(_choice(c, key, allowed))
    for key in ("eps", "attack_step_size", "lr", "batch_size", "epochs", "eval_batch_size", "ema_decay", "lr_decay"):
        if getattr(c, key) <= 0:
            out.append(f"{key} must be > 0, got {getattr(c, key)}")
    if c.epochs > MAX_EPOCHS:
        out.append(f"epochs must be at most {MAX_EPOCHS:,} (the official recipes train 110 to 400), got {c.epochs:,}")
    for key in ("attack_steps", "eval_attack_steps", "beta", "label_smoothing", "clip_value", "clip_loss",
                "weight_decay", "grad_clip", "train_subset", "holdout_size", "checkpoint_every", "eval_every",
                "momentum", "test_clean_every", "test_robust_every", "test_size", "eval_attack_step_size"):
        if getattr(c, key) < 0:
            out.append(f"{key} must be >= 0, got {getattr(c, key)}")
    for key in ("generated_fraction", "warmup_fraction", "ema_warmup_fraction", "bn_momentum"):
        if not 0 <= getattr(c, key) <= 1:
            out.append(f"{key} must lie in [0, 1], got {getattr(c, key)}")
    if c.generated_fraction == 1 and c.generated_data:
        out.append("generated_fraction must be < 1: each batch needs real images")
    if c.label_smoothing >= 1 or c.clip_loss >= 1:
        out.append("label_smoothing and clip_loss must be < 1")
    if c.objective in OBJECTIVES:
        try:
            check_distance(c.distance_name)
        except ConfigError as e:
            out.append(str(e))
    try:
        if any(m <= 0 for m in c.milestones):
            out.append(f"lr_milestones must be positive epochs, got {c.lr_milestones!r}")
    except ValueError:
        out.append(f"lr_milestones must be a comma-separated list of epochs, got {c.lr_milestones!r}")
    out += _semantic_problems(c)
    return [p for p in out if p]


def _semantic_problems(c: TrainConfig) -> list[str]:
    """Combinations the official code does not define."""
    out = []
    if c.objective == "score" and c.distance_name == "KL":
        out.append("objective score with distance KL is TRADES: use objective=trades (or another distance)")
    if c.objective in ("trades", "mart") and c.distance_name != "KL":
        out.append(f"objective {c.objective} uses KL; for another distance use objective=score "
                   f"(TRADES form) or pgd-at, got distance={c.distance!r}")
    if c.objective == "mart" and (c.threat != "linf" or c.semantics != "train-wa" or c.cutmix):
        out.append("objective mart exists in the official code for threat=linf, semantics=train-wa, no cutmix")
    if c.semantics == "train-cifar" and (c.threat != "linf" or c.cutmix):
        out.append("semantics train-cifar (without_DDPM/train_cifar.py) trains with threat=linf and no cutmix")
    if c.distance_name == "RKLsqrt" and (c.objective == "pgd-at" or c.label_smoothing == 0):
        out.append("distance RKLsqrt to a one-hot label is infinite: use it with objective score and "
                   "label_smoothing > 0")
    if c.cutmix and c.objective not in ("score", "trades"):
        out.append(f"cutmix exists in the official code for objectives score and trades, not {c.objective}")
    if c.clip_value and (c.objective != "score" or c.semantics != "train-wa"):
        out.append("clip_value is train-wa's SCORE option (objective=score, semantics=train-wa); "
                   "use clip_loss for the paper's bound")
    if (c.clip_loss or c.not_clip_clean) and (c.objective == "mart" or (c.objective == "trades" and c.semantics == "train-wa")):
        out.append(f"clip_loss / not_clip_clean do not apply to objective {c.objective} with semantics {c.semantics}")
    return out


def validate(c: TrainConfig, source: str = "config") -> None:
    """Check ranges, choices and combinations; raise ``ConfigError`` with the first problem."""
    problems = _problems(c)
    if problems:
        raise ConfigError(f"{source}: {problems[0]}")
