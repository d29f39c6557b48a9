"""Facts about the supported datasets and threat models that models, data loaders and the harness share."""

from __future__ import annotations

from .errors import UnknownNameError, close_matches_hint

NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "svhn": 10}

# The Lp threat models the harness evaluates (RobustBench's leaderboards add "corruptions").
THREAT_MODELS = ("Linf", "L2", "L1")

# Size of the official test split (a leaderboard evaluation uses all of it).
TEST_SIZE = {"cifar10": 10_000, "cifar100": 10_000, "svhn": 26_032}

# Label names in label order (CIFAR-100: the fine labels, which are in alphabetical order).
CLASS_NAMES = {
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    "cifar100": (
        "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
        "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
        "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
        "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
        "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
        "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
        "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
        "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
        "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
        "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
    ),
    "svhn": tuple(str(d) for d in range(10)),
}

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


def check_threat_model(name: str, allowed: tuple[str, ...] = THREAT_MODELS) -> str:
    """Return the canonical threat-model name among ``allowed`` (``linf`` -> ``Linf``) or raise ``UnknownNameError``."""
    canon = {t.lower(): t for t in allowed}
    if not isinstance(name, str) or name.lower() not in canon:
        raise UnknownNameError(f"unknown threat model '{name}'; choose one of {', '.join(allowed)}."
                               + close_matches_hint(str(name), allowed))
    return canon[name.lower()]
