"""score-train: SCORE adversarial training (and the TRADES / PGD-AT baselines).

>>> from training import load_recipe, train
>>> cfg = load_recipe("cifar10-linf-tiny", {"data_dir": "/path/to/cifar10_train_jpeg.npz"})
>>> run_dir = train(cfg, "runs/tiny")          # run_dir / "model" loads with zoo.load_model
"""

from .config import TrainConfig, make_config, valid_keys
from .recipes import list_recipes, load_recipe
from .trainer import TrainingDivergedError, train

__all__ = ["TrainConfig", "TrainingDivergedError", "list_recipes", "load_recipe", "make_config", "train", "valid_keys"]
