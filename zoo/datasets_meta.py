"""Facts about the supported datasets that models and data loaders share."""

from __future__ import annotations

from .errors import UnknownNameError, close_matches_hint

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10}

# Per-channel mean / std used for input normalisation inside the models
# (the values of RobustBench's DMWideResNet models for each dataset).
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "svhn": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def check_dataset(name: str) -> str:
    """Return the canonical dataset name or raise ``UnknownNameError``."""
    key = name.lower().replace("-", "")
    if key not in NUM_CLASSES:
        raise UnknownNameError(
            f"unknown dataset '{name}'; choose one of {', '.join(NUM_CLASSES)}.{close_matches_hint(key, NUM_CLASSES)}"
        )
    return key
