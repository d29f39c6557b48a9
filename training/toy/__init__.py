"""The paper's toy demonstration (`score-train toy`): two 1-D Gaussians, four objectives, generate_toy_demo.py's loop.

>>> from training.toy import ToySettings, run_toy
>>> summary = run_toy(ToySettings(iterations=50), "runs/toy")     # toy.json, posteriors.json and the figures

Modules: settings (the script's flags), problem (the Gaussians, exact
posterior, random streams), distances, attacks, objectives, run (training,
checkpoints, results) and figures.
"""

from .run import run_toy
from .settings import OBJECTIVES, ToySettings, parse_counts

__all__ = ["OBJECTIVES", "ToySettings", "parse_counts", "run_toy"]
