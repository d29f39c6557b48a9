"""Training data: real/generated mixing, held-out split and batch plan.

Every random choice here is a pure function of (seed, epoch, step), so a run
resumed in the middle of an epoch sees exactly the batches it would have seen,
and with more than one process each rank takes its own slice of every global
batch (a deterministic distributed sampler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from harness.data import load_arrays
from zoo.datasets_meta import NUM_CLASSES
from zoo.errors import DataError

def load_generated(path: str | Path, dataset: str) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate a generated-data .npz (``image`` uint8 N×32×32×3, ``label`` (N,))."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"generated data file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not {"image", "label"} <= set(f.files):
                raise DataError(f"{path} has arrays {sorted(f.files)}; generated data needs 'image' and 'label'")
            images, labels = f["image"], f["label"]
    except (ValueError, OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .npz file ({e})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"{path}: 'image' must be uint8 of shape (N,32,32,3), got {images.dtype} {images.shape}")
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"{path}: 'label' must have shape ({len(images)},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'label' must hold integers, got {labels.dtype}")
    k = NUM_CLASSES[dataset]
    if len(labels) == 0:
        raise DataError(f"{path} holds no images")
    if labels.min() < 0 or labels.max() >= k:
        raise DataError(f"{path}: labels must lie in 0..{k - 1} for {dataset}, found {labels.min()}..{labels.max()}")
    return images, labels.astype(np.int64)


@dataclass
class TrainData:
    """Real training images (minus the held-out split) plus optional generated images, as uint8 tensors."""

    real_x: torch.Tensor
    real_y: torch.Tensor
    gen_x: torch.Tensor | None
    gen_y: torch.Tensor | None
    holdout_x: torch.Tensor
    holdout_y: torch.Tensor

    @classmethod
    def load(cls, dataset: str, data_dir: str, train_subset: int = 0, holdout_size: int = 1024,
             generated_data: str = "") -> "TrainData":
        """Load the training split, hold out its first ``holdout_size`` images, attach generated data."""
        x, y = load_arrays(dataset, "train", data_dir)
        return cls.from_arrays(x, y, dataset, train_subset, holdout_size, generated_data)

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray, dataset: str, train_subset: int = 0,
                    holdout_size: int = 1024, generated_data: str = "") -> "TrainData":
        """Like :meth:`load` but from arrays already in memory.

        The held-out split is the first ``holdout_size`` images, as the official
        code holds out ``train[:1024]`` for model selection.
        """
        if train_subset:
            x, y = x[:train_subset], y[:train_subset]
        if holdout_size >= len(x):
            raise DataError(f"holdout_size={holdout_size} leaves no training images out of {len(x)}")
        gen_x = gen_y = None
        if generated_data:
            gx, gy = load_generated(generated_data, dataset)
            gen_x, gen_y = torch.from_numpy(gx), torch.from_numpy(gy)
        t = torch.from_numpy
        return cls(t(np.ascontiguousarray(x[holdout_size:])), t(np.ascontiguousarray(y[holdout_size:])), gen_x, gen_y,
                   t(np.ascontiguousarray(x[:holdout_size])), t(np.ascontiguousarray(y[:holdout_size])))


class BatchPlan:
    """Which images make up global batch ``step`` of ``epoch``: the official SemiSupervisedSampler.

    An epoch has ceil(n / batch_size) batches with n the size of the training
    split before the held-out images were taken out (official: ``dataset_size``
    is read before ``train[1024:]``, so CIFAR-10 at 512 has 98 batches). Each
    batch holds ``batch_size - int(batch_size * generated_fraction)`` real
    images (all of it without generated data), taken in order from a fresh
    permutation of the real images per pass over them (the last chunk of a
    pass is shorter; a new pass begins when an epoch has more batches than a
    pass has chunks), filled up to ``batch_size`` with generated
    images drawn with replacement, then shuffled. Every draw is a pure
    function of (seed, epoch, step).
    """

    def __init__(self, data: TrainData, batch_size: int, generated_fraction: float, seed: int):
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.mixing = data.gen_x is not None and generated_fraction > 0
        self.n_real = batch_size - int(batch_size * generated_fraction) if self.mixing else batch_size
        self.steps_per_epoch = math.ceil((len(data.real_x) + len(data.holdout_x)) / batch_size)
        self.chunks_per_pass = math.ceil(len(data.real_x) / self.n_real)
        self._perm_cache: tuple[tuple[int, int], np.ndarray] | None = None

    def _pass_permutation(self, epoch: int, pass_index: int) -> np.ndarray:
        key = (epoch, pass_index)
        if self._perm_cache is None or self._perm_cache[0] != key:
            rng = np.random.default_rng([self.seed, epoch, pass_index, 1])
            self._perm_cache = (key, rng.permutation(len(self.data.real_x)))
        return self._perm_cache[1]

    def indices(self, epoch: int, step: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """Return (real indices, generated indices or None, order of the concatenated batch) of batch ``step``."""
        pass_index, chunk = divmod(step, self.chunks_per_pass)
        real = self._pass_permutation(epoch, pass_index)[chunk * self.n_real:(chunk + 1) * self.n_real]
        if not self.mixing:
            return real, None, np.arange(len(real))
        rng = np.random.default_rng([self.seed, epoch, step, 2])
        gen = rng.integers(0, len(self.data.gen_x), self.batch_size - len(real))
        return real, gen, rng.permutation(self.batch_size)

    def batch(self, epoch: int, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Return this rank's share of global batch ``step``: uint8 NHWC images and labels."""
        real_idx, gen_idx, order = self.indices(epoch, step)
        xs, ys = [self.data.real_x[real_idx]], [self.data.real_y[real_idx]]
        if gen_idx is not None:
            xs.append(self.data.gen_x[gen_idx])
            ys.append(self.data.gen_y[gen_idx])
        order = torch.from_numpy(order)
        x, y = torch.cat(xs)[order], torch.cat(ys)[order]
        if world_size > 1:
            x, y = x[rank::world_size], y[rank::world_size]
        return x, y


def to_float(x: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] on ``device``."""
    return x.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255).contiguous()
