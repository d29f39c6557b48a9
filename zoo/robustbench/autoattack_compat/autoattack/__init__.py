"""``autoattack`` import name, adapted onto the ``pyautoattack`` distribution.

robustbench 1.1.1 imports ``autoattack`` (the GitHub package, not on PyPI) and
calls it with the old API: ``AutoAttack(model, norm=, eps=, version=,
device=, log_path=)`` and ``run_standard_evaluation(x, y, bs=, state_path=)``
returning only ``x_adv``. This adapter maps that API onto pyautoattack 0.2 so
a clean install can ``import robustbench``; the finder of the enclosing package
serves it as ``autoattack`` when no real AutoAttack is installed.
"""

from __future__ import annotations

from pathlib import Path

from pyautoattack import AutoAttack as _PyAutoAttack
from pyautoattack import __version__ as pyautoattack_version  # noqa: F401


class AutoAttack(_PyAutoAttack):
    """The GitHub ``autoattack.AutoAttack`` signature over pyautoattack."""

    def __init__(self, model, norm="Linf", eps=0.3, seed=None, verbose=True, attacks_to_run=(),
                 version="standard", is_tf_model=False, device="cuda", log_path=None):
        super().__init__(model, norm=norm, eps=eps, seed=0 if seed is None else seed,
                         version=version, device=device,
                         attacks=list(attacks_to_run) if version == "custom" else None)
        self.verbose = verbose

    def run_standard_evaluation(self, x_orig, y_orig, bs=250, return_labels=False, state_path=None):
        x_adv, y_adv = super().run_standard_evaluation(
            x_orig.contiguous(), y_orig.contiguous(), batch_size=bs,
            state_path=Path(state_path) if state_path is not None else None)
        return (x_adv, y_adv) if return_labels else x_adv


__all__ = ["AutoAttack"]
