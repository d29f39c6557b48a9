"""The toy demonstration's settings: the official generate_toy_demo.py's constants and flags, validated."""

from __future__ import annotations

from dataclasses import dataclass

from zoo.errors import ConfigError, close_matches_hint

from .distances import check_toy_distance
from .problem import COUNTS

# The script's --demo values, and what the paper calls them.
OBJECTIVES = ("Standard", "PGDAT", "PGDATconsistent", "TRADES")
LABELS = {"Standard": "Standard", "PGDAT": "PGD-AT", "PGDATconsistent": "SCORE", "TRADES": "TRADES"}


@dataclass(frozen=True)
class ToySettings:
    """One demonstration; the defaults are the script's, with its README's ``--divergence KL --divergence_C L1``."""

    objectives: tuple[str, ...] = OBJECTIVES
    distance: str = "KL"
    measure_distance: str = "L1"
    iterations: int = 500
    seed: int = 2
    counts: tuple[int, int] = COUNTS
    eps: float = 1.0
    attack_steps: int = 10
    lr: float = 1e-3
    width: int = 100
    trades_lambda: float = 1.0
    c_draws: int = 10

    @property
    def alpha(self) -> float:
        return self.eps / self.attack_steps

    def checked(self) -> "ToySettings":
        """These settings, validated (ConfigError naming the bad value)."""
        if not self.objectives:
            raise ConfigError("no objective given; choose from " + ", ".join(OBJECTIVES))
        for name in self.objectives:
            if name not in OBJECTIVES:
                raise ConfigError(f"unknown objective {name!r}; choose from {', '.join(OBJECTIVES)}"
                                  + close_matches_hint(name, OBJECTIVES))
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"objective given twice in {', '.join(self.objectives)}")
        check_toy_distance(self.distance)
        check_toy_distance(self.measure_distance)
        if self.iterations < 1:
            raise ConfigError(f"iterations must be at least 1, not {self.iterations}")
        if len(self.counts) != 2 or min(self.counts) < 1:
            raise _bad_counts(",".join(map(str, self.counts)))
        return self


def parse_counts(text: str) -> tuple[int, ...]:
    """``"50000,10000"`` -> (50000, 10000): points of class 0 and class 1 per draw (checked by ``checked``)."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise _bad_counts(text) from None


def _bad_counts(shown: str) -> ConfigError:
    return ConfigError(f"samples must be two positive counts N0,N1 (class 0, class 1), e.g. 50000,10000, not {shown}")
