"""AutoAttack's attacks one at a time, set up as ``run_standard_evaluation`` sets them up.

Used by the engine's stages (``attack``) and by the attacks beyond AutoAttack that
reuse AutoAttack's own (``extra_attacks``: APGD with BPDA).
"""

from __future__ import annotations

import torch
from pyautoattack import AutoAttack


def set_iterations(aa: AutoAttack, n_iter: int) -> None:
    """Reduce every attack to ``n_iter`` iterations (Square: queries); not leaderboard-grade."""
    for attack in (aa.apgd, aa.apgd_targeted):
        attack.n_iter = attack.n_iter_orig = n_iter
        attack.n_iter_2 = max(int(0.22 * n_iter), 1)
        attack.n_iter_min = max(int(0.06 * n_iter), 1)
        attack.size_decr = max(int(0.03 * n_iter), 1)
    aa.fab.n_iter = n_iter
    aa.square.n_queries = n_iter


def run_attack(aa: AutoAttack, attack: str, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One attack on one chunk, set up and seeded as ``run_standard_evaluation`` does it."""
    if attack in ("apgd-ce", "apgd-dlr"):
        aa.apgd.loss = "ce" if attack == "apgd-ce" else "dlr"
        aa.apgd.seed = aa.get_seed()
        return aa.apgd.perturb(x, y)
    if attack in ("fab", "fab-t"):
        aa.fab.targeted = attack == "fab-t"
        if attack == "fab-t":
            aa.fab.n_restarts = 1
        aa.fab.seed = aa.get_seed()
        return aa.fab.perturb(x, y)
    if attack == "square":
        aa.square.seed = aa.get_seed()
        return aa.square.perturb(x, y)
    if attack == "apgd-t":
        aa.apgd_targeted.seed = aa.get_seed()
        return aa.apgd_targeted.perturb(x, y)
    raise ValueError(f"attack '{attack}' is not supported")
