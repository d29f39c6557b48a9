"""The paper's distances between probability vectors, and its loss-clipping bound.

SCORE replaces TRADES' KL divergence by a distance metric. The official code
(without_DDPM/train_cifar.py, ``distance_func``) offers LSE (squared error,
the released checkpoints' choice), JS, JSsqrt, L1square, KL, KLsqrt, RKLsqrt
and the Lp norm for a numeric p. ``distance(name, p, q)`` is that function
with ``output = p`` and ``target = q``, per example (rows):

    KL(p, q)  = KL(q || p) = sum_k q_k (log q_k - log p_k)
    RKLsqrt   = sqrt KL(p || q);  KLsqrt = sqrt KL(q || p)
    JS        = (KL(p || M) + KL(q || M)) / 2 with M = (p + q) / 2;  JSsqrt = sqrt JS
    LSE       = ||p - q||_2^2;  L1square = ||p - q||_1^2;  "p" (a number) = ||p - q||_p

KL terms follow the convention 0 * log 0 = 0 (target entries that are 0
contribute 0), which is what torch's ``kl_div`` computed when the paper's code
was written (torch 1.8); current torch returns NaN for a 0 target against a
log-probability of -inf, as in the clipping bound of a one-hot vector.

One deliberate deviation: the square-root distances take the root of
``max(d, 1e-12)``. In float32 a JS or KL of two nearly equal vectors can round
below 0, and the official ``.sqrt()`` then gives NaN (it does at the first
step of the TRADES attack, which starts 0.001 N(0, 1) away from the clean
input); the floor changes a distance by at most 1e-6.
"""

from __future__ import annotations

import torch

from zoo.errors import ConfigError

DISTANCES = ("LSE", "JS", "JSsqrt", "L1square", "KL", "KLsqrt", "RKLsqrt")
SQRT_FLOOR = 1e-12


def check_distance(name: str) -> str:
    """Return ``name`` if it is a known distance or a positive number (an Lp norm); else raise ConfigError."""
    if name in DISTANCES:
        return name
    try:
        if float(name) > 0:
            return name
    except ValueError:
        pass
    raise ConfigError(f"unknown distance {name!r}; choose one of {', '.join(DISTANCES)} or a number p > 0 (Lp norm)")


def kl_terms(target: torch.Tensor, log_input: torch.Tensor) -> torch.Tensor:
    """Element-wise ``target * (log target - log_input)``, 0 where target is 0 (``kl_div(log_input, target)``)."""
    positive = target > 0
    safe = torch.where(positive, target, torch.ones_like(target))  # no NaN gradient through log(0)
    return torch.where(positive, target * (safe.log() - log_input), torch.zeros_like(target))


def _root(d: torch.Tensor) -> torch.Tensor:
    return d.clamp_min(SQRT_FLOOR).sqrt()


def distance(name: str, p: torch.Tensor, q: torch.Tensor, log_p: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row distance between probability vectors ``p`` (output) and ``q`` (target); shape (N,).

    ``log_p`` is ``log p`` where the caller has it more exactly (``log_softmax``
    of the logits, as the official TRADES code uses); by default ``p.log()``,
    as the official distance function computes it.
    """
    if name in ("KL", "KLsqrt"):
        kl = kl_terms(q, p.log() if log_p is None else log_p).sum(dim=-1)
        return kl if name == "KL" else _root(kl)
    if name == "RKLsqrt":
        return _root(kl_terms(p, q.log()).sum(dim=-1))
    if name in ("JS", "JSsqrt"):
        m = (p + q) / 2  # log taken twice, as the official code does, so gradients round the same
        js = (0.5 * (kl_terms(p, m.log()) + kl_terms(q, m.log()))).sum(dim=-1)
        return js if name == "JS" else _root(js)
    if name == "LSE":
        return torch.sum((p - q) ** 2, dim=-1)
    if name == "L1square":
        return (p - q).abs().sum(dim=-1).square()
    return torch.norm(p - q, dim=-1, p=float(check_distance(name)))


def clip_bound(name: str, clip_loss: float, num_classes: int) -> float:
    """The paper's clipping bound: ``distance(v, onehot)`` with v = 1 - clip_loss on the class, clip_loss/(K-1) elsewhere."""
    v = torch.ones(num_classes) * clip_loss / (num_classes - 1)
    v[0] = 1 - clip_loss
    onehot = torch.zeros(num_classes)
    onehot[0] = 1
    return float(distance(name, v, onehot))
