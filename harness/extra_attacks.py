"""The attacks beyond AutoAttack, as data: one row per attack (name, citation, threat models, settings, run).

A row's ``settings(n_iter)`` is what the result records (``--n-iter`` reduces
iterations, as for AutoAttack); ``run(model, x, y, eps, threat_model, n_iter,
seed, device)`` attacks one chunk and returns its adversarial examples, which
the engine checks and classifies as it does AutoAttack's. The next attack is
one more row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from zoo.errors import ConfigError

from . import malt


@dataclass(frozen=True)
class ExtraAttack:
    """One attack that runs after AutoAttack on its survivors."""

    name: str
    citation: str
    threat_models: tuple[str, ...]
    settings: Callable[[int | None], dict]
    run: Callable[..., torch.Tensor]


def _malt_settings(n_iter: int | None) -> dict:
    return dataclasses.asdict(malt.MaltSettings.with_n_iter(n_iter))


def _malt_run(model, x, y, eps: float, threat_model: str, n_iter: int | None, seed: int, device) -> torch.Tensor:
    adv, _ = malt.malt_attack(model, x, y, eps, threat_model, malt.MaltSettings.with_n_iter(n_iter), seed=seed,
                              device=device)
    return adv


EXTRA_ATTACKS = {a.name: a for a in (
    ExtraAttack("malt", "MALT (Melamed et al., 2024)", ("Linf", "L2"), _malt_settings, _malt_run),
)}


def check_extra_attack_names(names) -> tuple[str, ...]:
    """The extra attacks by name, lower-cased, each known and named once."""
    if isinstance(names, str):
        names = names.split(",")
    names = tuple(str(a).strip().lower() for a in (names or ()) if str(a).strip())
    unknown = [a for a in names if a not in EXTRA_ATTACKS]
    if unknown:
        raise ConfigError(f"unknown extra attack(s) {', '.join(unknown)}; choose from {', '.join(EXTRA_ATTACKS)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--extra-attacks {','.join(names)} repeats an attack")
    return names


def check_extra_attacks_fit(names: tuple[str, ...], n_eps: int, threat_model: str) -> None:
    """Refuse extra attacks with an eps list, or under a threat model one of them does not support."""
    if names and n_eps > 1:
        raise ConfigError("--extra-attacks needs one eps (an eps list nests each eps on the previous one's survivors, "
                          "which extra attacks would change); evaluate one eps per run")
    for name in names:
        attack = EXTRA_ATTACKS[name]
        if threat_model not in attack.threat_models:
            raise ConfigError(f"{attack.citation.split(' (')[0]} supports the {' and '.join(attack.threat_models)} "
                              f"threat models, not {threat_model}")


def recorded_settings(names: tuple[str, ...], n_iter: int | None) -> dict:
    """Each extra attack's settings, as the result records them."""
    return {name: EXTRA_ATTACKS[name].settings(n_iter) for name in names}
