"""Zoo models as timm models: architectures and RobustBench-named published entries in timm's registry.

``register_timm_models()`` runs when timm is imported, before or after
``zoo`` (a post-import hook that ``import zoo`` installs; timm 1.0 has no
plugin entry points), so ``import zoo`` alone does not pay for importing timm.
It may be called again after registry changes; it adds:

- every named architecture and the architecture of every registry entry under
  its timm name (``wrn-28-10-swish`` -> ``wrn_28_10_swish``), with a default
  pretrained config of input_size (3, 32, 32), any size allowed, and identity
  mean/std: normalisation is inside the model, so timm's data config must not
  normalise again. ``model_args`` ``dataset`` picks the normalisation (default
  cifar10), ``num_classes`` the head (default 10); ``global_pool``,
  ``drop_rate``, ``features_only`` / ``out_indices`` / ``feature_cls`` work as
  for timm's own models.
- every published entry with a RobustBench name under the name robustbench's
  ``load_model`` asks timm for, ``{name.lower().replace('-', '_')}_{dataset}_{threat}``
  (``pang2022robustness_wrn28_10_cifar10_linf``): ``pretrained=True`` loads
  the zoo's weights (located as ``zoo.load_model`` does, sha256-checked). Mirrors
  of RobustBench models (``zoo.robustbench.mirror``), built with RobustBench's own
  definitions, are registered the same way.

``timm_config`` turns a model directory's config.json into the form that
``timm.create_model("hf-hub:ORG/NAME", pretrained=True)`` reads.
"""

from __future__ import annotations

import functools
import logging
import sys
import warnings

import torch.nn as nn
import wrapt

from .architectures import KNOWN_ARCHITECTURES, architecture_class, canonical_architecture, create_model
from .datasets_meta import CLASS_NAMES, NUM_CLASSES
from .errors import ConfigError, ScoreZooError
from .model_dir import WEIGHTS_NAME, check_weights
from .registry import Entry, builtin_entries, get_entry, list_entries
from .architectures.robustbench import (is_robustbench_architecture, model_for_entry, robustbench_pretrained_cfg,
                                 robustbench_timm_id, robustbench_timm_name)
from .timm_compat import ensure_timm_hub

ensure_timm_hub()  # timm's Hub support, whether timm is imported after zoo or was before (then reloaded)

log = logging.getLogger(__name__)

# timm reads the default pretrained config of each name registered from this module here.
default_cfgs: dict[str, dict] = {}
# timm name of a RobustBench-named entry -> the zoo entry it loads (read at build time).
_ENTRY_OF: dict[str, str] = {}
_REGISTERED: set[str] = set()


def timm_name(arch: str) -> str:
    """timm's name of a zoo architecture: ``wrn-28-10-swish`` -> ``wrn_28_10_swish``."""
    return canonical_architecture(arch).replace("-", "_")


NATIVE_SIZE = 32        # the CIFAR / SVHN image size the zoo's models are trained on
MIN_SIZE = 8            # the smallest input the zoo promises (and tests) for every architecture


def pretrained_cfg(arch: str, num_classes: int = 10, **extra) -> dict:
    """timm's pretrained config of a zoo architecture: 32x32 inputs (any size >= 8x8 runs), identity
    mean/std, the final map's size at 32x32 (``pool_size``), its stem and head modules."""
    cls = architecture_class(arch)
    pool = NATIVE_SIZE // cls.FINAL_REDUCTION
    return {"input_size": (3, NATIVE_SIZE, NATIVE_SIZE), "min_input_size": (3, MIN_SIZE, MIN_SIZE),
            "fixed_input_size": False, "pool_size": (pool, pool), "interpolation": "bilinear", "crop_pct": 1.0,
            "crop_mode": "center", "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0), "num_classes": num_classes,
            "first_conv": cls.FIRST_CONV, "classifier": cls.CLASSIFIER, **extra}


def timm_config(config: dict) -> dict:
    """A model directory's config.json as timm reads it from the Hub, keeping every zoo key.

    ``architecture`` becomes the timm name (the zoo reads both spellings);
    ``model_args``, ``pretrained_cfg`` and, where the head is the dataset's,
    ``label_names`` are added. A mirrored RobustBench model (``robustbench`` in
    config.json) gets the timm name of its RobustBench name, which the zoo
    registers for the published entry.
    """
    arch, dataset, num_classes = config["architecture"], config["dataset"], int(config["num_classes"])
    rb = config.get("robustbench")
    if rb:
        out = {**config, "architecture": robustbench_timm_id(rb["model"], rb["dataset"], rb["threat_model"]),
               "num_classes": num_classes, "pretrained_cfg": robustbench_pretrained_cfg(num_classes)}
    else:
        out = {**config, "architecture": timm_name(arch), "num_classes": num_classes,
               "model_args": {"dataset": dataset}, "pretrained_cfg": pretrained_cfg(arch, num_classes)}
    if NUM_CLASSES.get(dataset) == num_classes:
        out["label_names"] = list(CLASS_NAMES[dataset])
    return out


def _build_architecture(arch: str, num_classes: int | None = None, in_chans: int = 3, **kwargs) -> nn.Module:
    if in_chans != 3:
        raise ValueError(f"{arch} takes RGB images (in_chans=3), got in_chans={in_chans}")
    return create_model(arch, num_classes=num_classes, **kwargs)


def _build(arch: str, name: str, pretrained: bool, **kwargs) -> nn.Module:
    """timm's ``build_model_with_cfg`` over a zoo architecture: pretrained loading, ``features_only`` wrappers."""
    from timm.models import build_model_with_cfg

    return build_model_with_cfg(functools.partial(_build_architecture, arch), name, pretrained,
                                feature_cfg=dict(architecture_class(arch).FEATURE_CFG), **kwargs)


def _architecture_entrypoint(arch: str, name: str):
    def entrypoint(pretrained: bool = False, **kwargs) -> nn.Module:
        return _build(arch, name, pretrained, **kwargs)

    entrypoint.__doc__ = f"SCORE Zoo architecture {arch} (inputs in [0, 1]; normalisation inside the model)."
    return entrypoint


def _entry_entrypoint(name: str):
    def entrypoint(pretrained: bool = False, **kwargs) -> nn.Module:
        from .sources import locate

        entry = get_entry(_ENTRY_OF[name])
        if kwargs.setdefault("dataset", entry.dataset) != entry.dataset:
            raise ConfigError(f"{name} is the zoo entry {entry.name}, a {entry.dataset} model, not {kwargs['dataset']}")
        if pretrained:   # the zoo's weights, found and sha256-checked as zoo.load_model does, loaded by timm
            found = locate(entry.name)
            weights = check_weights(found.path / WEIGHTS_NAME, None if found.verified else found.sha256)
            kwargs["pretrained_cfg_overlay"] = {**(kwargs.get("pretrained_cfg_overlay") or {}), "file": str(weights)}
        return _build(entry.architecture, name, pretrained, **kwargs)

    entrypoint.__doc__ = "A published SCORE Zoo entry under its RobustBench name (weights sha256-checked)."
    return entrypoint


def _mirror_entrypoint(name: str):
    def entrypoint(pretrained: bool = False, num_classes: int | None = None, pretrained_cfg=None,
                   pretrained_cfg_overlay=None, **kwargs) -> nn.Module:
        from .loading import load_model

        entry = get_entry(_ENTRY_OF[name])
        if num_classes not in (None, entry.num_classes) or kwargs:
            raise ValueError(f"{name} is the zoo's mirror {entry.name} ({entry.num_classes} classes, built by "
                             f"RobustBench's definition); it takes no other num_classes or arguments ({sorted(kwargs)})")
        model = load_model(entry.name) if pretrained else model_for_entry(entry)
        model.pretrained_cfg = _entry_cfg(entry, name)
        return model

    entrypoint.__doc__ = "The zoo's mirror of a RobustBench model: RobustBench's definition, Hub weights sha256-checked."
    return entrypoint


def _entry_cfg(entry: Entry, name: str) -> dict:
    base = (robustbench_pretrained_cfg(entry.num_classes) if is_robustbench_architecture(entry.architecture)
            else pretrained_cfg(entry.architecture, entry.num_classes))
    return {**base, "architecture": name,
            "hf_hub_id": f"{entry.hub['repo_id']}@{entry.hub.get('revision') or 'main'}",
            "label_names": CLASS_NAMES[entry.dataset] if NUM_CLASSES.get(entry.dataset) == entry.num_classes else None,
            "license": entry.license,
            "description": entry.description, "origin_url": entry.source.get("link"),
            "paper_name": entry.source.get("title")}


def _register(name: str, entrypoint, cfg: dict) -> None:
    from timm.models import register_model

    entrypoint.__name__ = entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    setattr(sys.modules[__name__], name, entrypoint)  # timm lists it in this module's __all__
    default_cfgs[name] = cfg
    register_model(entrypoint)
    _REGISTERED.add(name)


def _entries() -> list[Entry]:
    try:
        return list_entries()
    except ScoreZooError as e:  # an unreadable user registry must not break `import zoo`
        log.warning("timm registration uses only the built-in entries: %s", e)
        return builtin_entries()


def register_timm_models(*architectures: str) -> list[str]:
    """Register the zoo's architectures and RobustBench-named published entries with timm.

    ``architectures`` adds more (any ``wrn-D-W[-swish]``: ``register_timm_models("wrn-40-2")``
    makes ``wrn_40_2`` a timm model). Idempotent; returns the names added by this
    call. A name timm already knows from elsewhere is left alone, with a warning.
    Imports timm.
    """
    asked = [canonical_architecture(arch) for arch in architectures]   # an invalid name is an error here
    with warnings.catch_warnings():  # timm 1.0.9's model modules use the deprecated torch.jit.interface
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.interface", category=FutureWarning)
        from timm.models import is_model
    entries = _entries()
    wanted: dict[str, tuple] = {}  # name -> (entrypoint factory, default pretrained cfg)
    for arch in list(KNOWN_ARCHITECTURES) + asked + [e.architecture for e in entries]:
        try:
            name = timm_name(arch)
        except ScoreZooError:
            continue  # a user entry with an invalid architecture fails when it is loaded, not here
        wanted.setdefault(name, (functools.partial(_architecture_entrypoint, canonical_architecture(arch), name),
                                 pretrained_cfg(arch)))
    for e in entries:
        name = robustbench_timm_name(e)
        if name and e.published and e.hub.get("repo_id"):
            _ENTRY_OF[name] = e.name
            factory = _mirror_entrypoint if is_robustbench_architecture(e.architecture) else _entry_entrypoint
            wanted.setdefault(name, (functools.partial(factory, name), _entry_cfg(e, name)))
    added = []
    for name, (make, cfg) in wanted.items():
        if name in _REGISTERED:
            continue
        if is_model(name):
            log.warning("timm already has a model called %s; the zoo does not replace it", name)
            continue
        _register(name, make(), cfg)
        added.append(name)
    return added


def register_when_timm_is_imported() -> None:
    """Run ``register_timm_models`` as soon as timm is imported (at once if it already is)."""
    wrapt.register_post_import_hook(lambda _timm: register_timm_models(), "timm")
