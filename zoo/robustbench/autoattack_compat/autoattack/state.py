"""``autoattack.state`` for robustbench: pyautoattack's EvaluationState."""

from pyautoattack.state import EvaluationState

__all__ = ["EvaluationState"]
