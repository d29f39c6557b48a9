"""Standardized threat models: norms, default eps, eps parsing and formatting, attack lists."""

from __future__ import annotations

import math
from fractions import Fraction

from zoo.datasets_meta import check_threat_model
from zoo.errors import ConfigError, UnknownNameError, close_matches_hint
from zoo.registry import parse_eps

VERSIONS = ("standard", "plus", "rand", "custom")
ATTACKS = ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t")

# RobustBench's standard budgets (the same for CIFAR-10, CIFAR-100 and SVHN).
DEFAULT_EPS = {"Linf": "8/255", "L2": "0.5", "L1": "12"}
# The largest meaningful budget on [0,1]^(3x32x32) images.
_MAX_EPS = {"Linf": 1.0, "L2": math.sqrt(3 * 32 * 32), "L1": 3 * 32 * 32}


def resolve_eps(threat_model: str, eps: str | float | None) -> tuple[float, str]:
    """Return ``(numeric eps, display string)``; ``None`` means the standard budget.

    The display string is what RobustBench writes (``"8/255"``, ``"0.5"``).
    Raises ``ConfigError`` for unparsable, non-positive or out-of-range values.
    """
    threat_model = check_threat_model(threat_model)
    text = DEFAULT_EPS[threat_model] if eps is None else eps
    value = parse_eps(text)
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"eps must be a positive number, got {text!r}")
    if value > _MAX_EPS[threat_model]:
        raise ConfigError(f"eps {text} is out of range for {threat_model} on images in [0,1] "
                          f"(at most {_MAX_EPS[threat_model]:g})")
    return value, format_eps(value, threat_model, text)


def resolve_eps_list(threat_model: str, eps) -> list[tuple[float, str]]:
    """Parse one budget or an increasing list (``"1/255,2/255,4/255"`` or a sequence) into ``[(value, text)]``.

    ``None`` means the standard budget. Unsorted or repeated lists are refused.
    """
    threat_model = check_threat_model(threat_model)
    if eps is None or isinstance(eps, (int, float)):
        return [resolve_eps(threat_model, eps)]
    items = [e.strip() for e in eps.split(",")] if isinstance(eps, str) else list(eps)
    shown = eps if isinstance(eps, str) else ",".join(str(e) for e in eps)
    if any(item == "" for item in items):
        raise ConfigError(f"eps list '{shown}' has an empty entry; write it like 1/255,2/255,4/255,8/255")
    values = [resolve_eps(threat_model, item) for item in items]
    for (a, a_text), (b, b_text) in zip(values, values[1:]):
        if math.isclose(a, b, rel_tol=1e-9):
            raise ConfigError(f"eps list '{shown}' repeats {b_text}; give each budget once, in increasing order")
        if b < a:
            raise ConfigError(f"eps list '{shown}' is not in increasing order ({a_text} comes before {b_text}); "
                              "write the smallest budget first, e.g. 1/255,2/255,4/255,8/255")
    return values


def is_standard_eps(threat_model: str, value: float) -> bool:
    """Is ``value`` RobustBench's standard budget for the threat model?"""
    return math.isclose(value, parse_eps(DEFAULT_EPS[threat_model]), rel_tol=1e-9)


def main_eps_index(threat_model: str, eps: list[tuple[float, str]]) -> int:
    """The eps a result's RobustBench keys describe: the standard budget when evaluated, else the largest."""
    return next((j for j, (v, _) in enumerate(eps) if is_standard_eps(threat_model, v)), len(eps) - 1)


def format_eps(value: float, threat_model: str = "Linf", text: str | float | None = None) -> str:
    """Format eps like RobustBench: Linf as ``k/255`` when it is one, else the plain number."""
    if isinstance(text, str) and "/" in text:
        return text.replace(" ", "")
    if threat_model == "Linf":
        frac = Fraction(value).limit_denominator(255)
        if frac.denominator == 255 or 255 % frac.denominator == 0:
            k = value * 255
            if abs(k - round(k)) < 1e-6:
                return f"{round(k)}/255"
    return f"{value:g}"


def attacks_for(version: str, threat_model: str, attacks: list[str] | None) -> list[str]:
    """Return the attack list AutoAttack runs for ``version`` (``attacks`` only with custom)."""
    if version not in VERSIONS:
        raise UnknownNameError(f"unknown AutoAttack version '{version}'; choose one of {', '.join(VERSIONS)}."
                               + close_matches_hint(version, VERSIONS))
    if version == "custom":
        if not attacks:
            raise ConfigError("--version custom needs --attacks, e.g. --attacks apgd-ce,apgd-t")
        unknown = [a for a in attacks if a not in ATTACKS]
        if unknown:
            raise ConfigError(f"unknown attack(s) {', '.join(unknown)}; choose from {', '.join(ATTACKS)}")
        if len(set(attacks)) != len(attacks):
            raise ConfigError(f"attack list {','.join(attacks)} repeats an attack")
        return list(attacks)
    if attacks:
        raise ConfigError(f"--attacks only works with --version custom (version '{version}' fixes its attacks)")
    return {"standard": ["apgd-ce", "apgd-t", "fab-t", "square"],
            "plus": ["apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"],
            "rand": ["apgd-ce", "apgd-dlr"]}[version]


def perturbation_norms(delta, threat_model: str):
    """Per-example norm of a perturbation batch (N, ...) under the threat model."""
    flat = delta.reshape(delta.shape[0], -1)
    if threat_model == "Linf":
        return flat.abs().amax(dim=1)
    if threat_model == "L2":
        return flat.double().pow(2).sum(dim=1).sqrt()
    return flat.double().abs().sum(dim=1)
