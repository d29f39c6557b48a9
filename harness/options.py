"""The evaluation's options: one frozen dataclass, the only place an option's default, help and check live.

``harness.evaluate(model, dataset, threat_model, eps, n_examples, **keywords)``
builds an ``EvaluationOptions`` from its keywords; ``score-harness evaluate``'s
options are generated from the fields (``click_options``); the run records its
settings from the object. Each field's metadata holds its help text and how the
command line spells it, the way timm's PretrainedCfg or torchvision's Weights
carry their meta. A check that needs the resolved model (the dataset or threat
model it was made for) runs in ``evaluation``; every other check is here.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from zoo.datasets_meta import NUM_CLASSES, THREAT_MODELS
from zoo.errors import ConfigError

from .extra_attacks import check_extra_attack_names
from .threat_models import ATTACKS, VERSIONS


def _opt(default, help: str, *, cli: dict | None = None, flag: str | None = None, hidden: bool = False):
    """A field with its command-line help; ``cli`` adds click keywords, ``flag`` spells a boolean pair."""
    return field(default=default, metadata={"help": help, "cli": cli or {}, "flag": flag, "hidden": hidden})


def _comma_list(ctx, param, value):
    return tuple(a.strip() for a in value.split(",") if a.strip()) if value else None


def _json_object_file(ctx, param, value):
    if value is None:
        return None
    try:
        data = json.loads(Path(value).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"--model-info {value} is not a readable JSON file ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--model-info {value} must hold a JSON object")
    return data


@dataclass(frozen=True)
class EvaluationOptions:
    """How to evaluate: every option of ``harness.evaluate`` and ``score-harness evaluate``, checked on creation."""

    dataset: str | None = _opt(None, "Dataset (default: the model's own, else cifar10).",
                               cli={"type": click.Choice(tuple(NUM_CLASSES))})
    threat_model: str | None = _opt(None, "Threat model (default: the model's own, else Linf).",
                                    cli={"type": click.Choice(THREAT_MODELS)})
    eps: Any = _opt(None, "Budget, e.g. 8/255 (default: Linf 8/255, L2 0.5, L1 12), or an increasing list "
                          "1/255,2/255,4/255,8/255: a robustness curve in one nested run.")
    n_examples: int | None = _opt(None, "Evaluate the first N test images (default: all).", cli={"type": int})
    batch_size: int = _opt(500, "AutoAttack's batch_size: the chunk size in which each attack takes the pooled "
                                "survivors.", cli={"type": int})
    version: str = _opt("standard", "AutoAttack version.", cli={"type": click.Choice(VERSIONS)})
    attacks: tuple[str, ...] | None = _opt(None, f"With --version custom: comma list of {','.join(ATTACKS)}.",
                                           cli={"callback": _comma_list, "metavar": "LIST"})
    seed: int = _opt(0, "Seed of the attacks (recorded).", cli={"type": int})
    device: str | None = _opt(None, "cpu, cuda or cuda:K (default: cuda if a GPU is visible; local workers then "
                                    "use every GPU). Under torchrun each process takes cuda:LOCAL_RANK and cuda:K "
                                    "is refused.")
    data_dir: str | None = _opt(None, "Folder with the official test files (default: the bundled 1000-image "
                                      "subset, not leaderboard-eligible).", cli={"type": click.Path()})
    out: str | None = _opt(None, "Write the result JSON here.", cli={"type": click.Path(dir_okay=False)})
    state_dir: str | None = _opt(None, "Progress folder for resuming (default: RESULT.state beside --out).",
                                 cli={"type": click.Path(file_okay=False)})
    shard: Any = _opt(None, "Evaluate slice K/N (K from 0); combine with 'score-harness merge'.")
    weights: str | None = _opt(None, "Weights (.safetensors or .pt state dict) for a package.module:callable MODEL.",
                               cli={"type": click.Path()})
    n_iter: int | None = _opt(None, "Reduce attack iterations (quick checks only; the result is marked with it).",
                              cli={"type": int})
    model_dir: str | None = _opt("./models", "RobustBench checkpoint folder for robustbench:NAME.")
    model_info: dict | None = _opt(None, "JSON with RobustBench model_info fields to fill in (name, link, authors, "
                                         "venue, ...).",
                                   cli={"callback": _json_object_file, "type": click.Path(dir_okay=False)})
    progress: bool = _opt(True, "Progress bars on stderr.", hidden=True)
    workers: int | None = _opt(None, "Local worker processes sharing the chunks (default: one per CPU core, one "
                                     "per GPU on cuda).", cli={"type": int})
    exact: bool = _opt(False, "No layout or precision change: plain fp32, NCHW, no TF32, no cuDNN benchmark.",
                       flag="--exact")
    channels_last: bool | None = _opt(None, "Model weights in channels_last (default: on for convolutional models, "
                                            "off with --exact).", flag="--channels-last/--no-channels-last")
    tf32: bool | None = _opt(None, "CUDA: TF32 for convolutions and matmuls (default: PyTorch's, convolutions only; "
                                   "off with --exact).", flag="--tf32/--no-tf32")
    cudnn_benchmark: bool | None = _opt(None, "CUDA: cudnn.benchmark (default off: its timed algorithm choice makes "
                                              "runs differ).", flag="--cudnn-benchmark/--no-cudnn-benchmark")
    save_adversarial: str | None = _opt(None, "Write the adversarial examples of the broken examples (with indices, "
                                              "labels, predictions and the attack that broke each) to this "
                                              "safetensors file; `score-harness show` draws them.",
                                        cli={"type": click.Path(dir_okay=False), "metavar": "FILE"})
    extra_attacks: tuple[str, ...] = _opt((), "Attacks to run after AutoAttack on its survivors: malt (Melamed et "
                                              "al., 2024). The result keeps autoattack_acc and sets RobustBench's "
                                              "`external` when they lower it, e.g. --extra-attacks malt.",
                                          cli={"callback": _comma_list, "metavar": "LIST"})
    repeats: int = _opt(1, "With --version rand: evaluate K times (seeds SEED..SEED+K-1) and keep each example's "
                           "worst case, e.g. --version rand --repeats 5.", cli={"type": int})
    bpda: tuple[str, ...] = _opt((), "After AutoAttack, run APGD-CE and APGD-T through these modules with BPDA "
                                     "(module paths or class names, comma list; their backward is the identity, "
                                     "every forward pass stays exact), e.g. --bpda Quantize. The result keeps "
                                     "autoattack_acc and sets RobustBench's `external` and a footnote when BPDA "
                                     "lowers it.", cli={"callback": _comma_list, "metavar": "LIST"})
    diagnostics: bool = _opt(True, "Attack-failure indicators on the first 32 examples (docs/diagnostics.md): a "
                                   "diagnostics section with its verdict in the result.",
                             flag="--diagnostics/--no-diagnostics")
    profile: bool = _opt(False, "Print where the time went on stderr: image passes, seconds, images per second and "
                                "share of the time per attack, check and the indicators (every result holds them "
                                "in evaluation.cost; docs/evaluation.md).", flag="--profile")

    def __post_init__(self):
        for name in ("n_examples", "batch_size", "seed", "n_iter", "workers", "repeats"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise ConfigError(f"{_flag(name)} must be an integer, got {value!r}")
        for name, low in (("n_examples", 1), ("batch_size", 1), ("seed", 0), ("n_iter", 1), ("workers", 1),
                          ("repeats", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(f"{_flag(name)} must be at least {low}, got {value}")
        for name in ("dataset", "threat_model", "device", "version"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{_flag(name)} must be a string, got {value!r}")
        if self.dataset is not None and self.dataset not in NUM_CLASSES:
            raise ConfigError(f"unknown dataset '{self.dataset}'; choose one of {', '.join(NUM_CLASSES)}")
        if self.version not in VERSIONS:
            raise ConfigError(f"unknown AutoAttack version '{self.version}'; choose one of {', '.join(VERSIONS)}")
        object.__setattr__(self, "attacks", None if self.attacks is None else tuple(self.attacks))
        object.__setattr__(self, "extra_attacks", check_extra_attack_names(self.extra_attacks))
        names = self.bpda.split(",") if isinstance(self.bpda, str) else self.bpda or ()
        object.__setattr__(self, "bpda", tuple(n.strip() if isinstance(n, str) else n for n in names))
        if not all(isinstance(name, str) and name for name in self.bpda):
            raise ConfigError(f"--bpda takes module paths or class names, got {self.bpda!r}")
        if self.repeats > 1:
            if self.version != "rand":
                raise ConfigError(f"--repeats needs --version rand (randomized defenses); the {self.version} "
                                  "version evaluates a deterministic model, which answers the same every time")
            for name in ("shard", "save_adversarial", "extra_attacks", "bpda"):
                if getattr(self, name):
                    raise ConfigError(f"--repeats cannot be combined with {_flag(name)} yet; evaluate without it")

    @classmethod
    def from_keywords(cls, **keywords) -> "EvaluationOptions":
        """The options from ``harness.evaluate``'s keywords; an unknown keyword is one clear error."""
        unknown = sorted(set(keywords) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ConfigError(f"unknown evaluation option(s) {', '.join(unknown)}; options: "
                              + ", ".join(f.name for f in dataclasses.fields(cls)))
        return cls(**keywords)

    def replace(self, **changes) -> "EvaluationOptions":
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def click_options(command):
    """Decorate a click command with one option per (visible) field of ``EvaluationOptions``."""
    for f in reversed(dataclasses.fields(EvaluationOptions)):
        meta = f.metadata
        if meta["hidden"]:
            continue
        kwargs = {"help": meta["help"], "default": None if f.default == () else f.default, **meta["cli"]}
        if kwargs["default"] not in (None, False) or f.default == 0:
            kwargs["show_default"] = True
        decls = [meta["flag"]] if meta["flag"] else [_flag(f.name)]
        if meta["flag"] and "/" not in meta["flag"]:
            kwargs["is_flag"] = True
        command = click.option(*decls, f.name, **kwargs)(command)
    return command
