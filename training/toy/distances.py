"""The toy demonstration's distances: generate_toy_demo.py's ``distance_func``.

The official toy script reduces a distance over the batch, unlike the CIFAR
training code's per-example ``distance`` (training/distances.py):

    KL      nn.KLDivLoss(reduction='batchmean')(output.log(), target): mean over points of KL(target || output)
    LSE     mean over points of ||output - target||_2^2
    L1, L2, Linf   mean over points of ||output - target||_p
    JSsqrt  sqrt of the mean over points of JS(output, target): the root of the batch mean,
            not the mean of per-point roots as in training/distances.py

So each distance here is the per-point term of training/distances.py (``KL``,
``LSE``, the Lp norms, ``JS``) followed by this module's reduction. The one
deviation is the same as there: JSsqrt takes the root of max(mean, 1e-12)
rather than NaN below 0.
"""

from __future__ import annotations

import torch

from zoo.errors import ConfigError, close_matches_hint

from ..distances import SQRT_FLOOR, distance

TOY_DISTANCES = ("KL", "LSE", "JSsqrt", "L1", "L2", "Linf")
_PER_POINT = {"KL": "KL", "LSE": "LSE", "JSsqrt": "JS", "L1": "1", "L2": "2", "Linf": "inf"}


def check_toy_distance(name: str) -> str:
    """Return ``name`` if it is one of the toy script's distances; else raise ConfigError."""
    if name in TOY_DISTANCES:
        return name
    raise ConfigError(f"unknown distance {name!r}; choose one of {', '.join(TOY_DISTANCES)}"
                      + close_matches_hint(name, TOY_DISTANCES))


def point_terms(name: str, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Per-point terms (shape (N,)) whose ``reduce`` is the official distance of ``p`` (output) and ``q`` (target).

    Every distance's gradient with respect to one point's input is this
    point's own term's gradient times one positive number shared by the batch
    (1/N, and for JSsqrt also the derivative of the root), so it has the same
    sign: what a sign-gradient attack uses.
    """
    return distance(_PER_POINT[name], p, q)


def reduce(name: str, terms: torch.Tensor) -> torch.Tensor:
    """The official batch reduction of ``point_terms``: their mean; JSsqrt roots it."""
    mean = terms.sum() / len(terms)
    return mean.clamp_min(SQRT_FLOOR).sqrt() if name == "JSsqrt" else mean


def toy_distance(name: str, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The official toy ``distance_func(p, q, name)``: a scalar over the batch."""
    return reduce(name, point_terms(name, p, q))
