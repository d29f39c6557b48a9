"""The attacks beyond AutoAttack, as data: one row per attack (name, citation, threat models, settings, run).

A row's ``settings(n_iter)`` is what the result records (``--n-iter`` reduces
iterations, as for AutoAttack); ``run(model, x, y, eps, threat_model, n_iter,
seed, device)`` attacks one chunk and returns its adversarial examples, which
the engine checks and classifies as it does AutoAttack's. A row with
``through_bpda`` runs inside ``bpda_modules`` (the modules of ``--bpda``, which
adds it; see ``harness.bpda``): AutoAttack's own stages stay plain, so
``autoattack_acc`` is AutoAttack's and the BPDA figure goes to ``external``, as
RobustBench records MeanSparse. The next attack is one more row.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
from pyautoattack import AutoAttack

from zoo.errors import ConfigError

from . import malt
from .engine.autoattack_setup import run_attack, set_iterations


@dataclass(frozen=True)
class ExtraAttack:
    """One attack that runs after AutoAttack on its survivors."""

    name: str
    citation: str
    threat_models: tuple[str, ...]
    settings: Callable[[int | None], dict]
    run: Callable[..., torch.Tensor]
    through_bpda: bool = False   # runs through the --bpda modules; added by --bpda, not --extra-attacks


def _malt_settings(n_iter: int | None) -> dict:
    return dataclasses.asdict(malt.MaltSettings.with_n_iter(n_iter))


def _malt_run(model, x, y, eps: float, threat_model: str, n_iter: int | None, seed: int, device) -> torch.Tensor:
    adv, _ = malt.malt_attack(model, x, y, eps, threat_model, malt.MaltSettings.with_n_iter(n_iter), seed=seed,
                              device=device)
    return adv


APGD_BPDA_ATTACKS = ("apgd-ce", "apgd-t")


def _apgd_bpda_settings(n_iter: int | None) -> dict:
    return {"attacks": list(APGD_BPDA_ATTACKS), "n_iter": n_iter or 100, "version": "standard"}


def _apgd_bpda_run(model, x, y, eps: float, threat_model: str, n_iter: int | None, seed: int, device) -> torch.Tensor:
    """APGD-CE, then APGD-T on what it left, set up as AutoAttack's standard version sets them up."""
    aa = AutoAttack(model, norm=threat_model, eps=eps, seed=seed, version="standard", device=device)
    if n_iter is not None:
        set_iterations(aa, n_iter)
    adv = x.clone()
    for attack in APGD_BPDA_ATTACKS:
        with torch.no_grad():
            left = (model(adv).max(dim=1)[1] == y).nonzero().flatten()
        if not len(left):
            break
        adv[left] = run_attack(aa, attack, x[left], y[left])
    return adv


EXTRA_ATTACKS = {a.name: a for a in (
    ExtraAttack("malt", "MALT (Melamed et al., 2024)", ("Linf", "L2"), _malt_settings, _malt_run),
    ExtraAttack("apgd-bpda", "APGD with BPDA (Athalye et al., 2018)", ("Linf", "L2", "L1"), _apgd_bpda_settings,
                _apgd_bpda_run, through_bpda=True),
)}
BPDA_ATTACK = "apgd-bpda"


def check_extra_attack_names(names) -> tuple[str, ...]:
    """The extra attacks by name, lower-cased, each known and named once."""
    if isinstance(names, str):
        names = names.split(",")
    names = tuple(str(a).strip().lower() for a in (names or ()) if str(a).strip())
    if BPDA_ATTACK in names:
        raise ConfigError(f"{BPDA_ATTACK} runs with --bpda MODULES (the modules to attack through), not --extra-attacks")
    choices = [a for a, row in EXTRA_ATTACKS.items() if not row.through_bpda]
    unknown = [a for a in names if a not in choices]
    if unknown:
        raise ConfigError(f"unknown extra attack(s) {', '.join(unknown)}; choose from {', '.join(choices)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"--extra-attacks {','.join(names)} repeats an attack")
    return names


def _listed(items: tuple[str, ...]) -> str:
    return " and ".join(filter(None, (", ".join(items[:-1]), items[-1])))


def check_extra_attacks_fit(names: tuple[str, ...], n_eps: int, threat_model: str) -> None:
    """Refuse extra attacks with an eps list, or under a threat model one of them does not support."""
    if names and n_eps > 1:
        flags = " and ".join(dict.fromkeys("--bpda" if EXTRA_ATTACKS[a].through_bpda else "--extra-attacks"
                                           for a in names))
        raise ConfigError(f"{flags} needs one eps (an eps list nests each eps on the previous one's survivors, "
                          "which attacks beyond AutoAttack would change); evaluate one eps per run")
    for name in names:
        attack = EXTRA_ATTACKS[name]
        if threat_model not in attack.threat_models:
            raise ConfigError(f"{attack.citation.split(' (')[0]} supports the {_listed(attack.threat_models)} "
                              f"threat models, not {threat_model}")


def recorded_settings(names: tuple[str, ...], n_iter: int | None) -> dict:
    """Each extra attack's settings, as the result records them."""
    return {name: EXTRA_ATTACKS[name].settings(n_iter) for name in names}
