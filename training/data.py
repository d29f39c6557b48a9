"""Training data: real/generated mixing, held-out split and batch plan.

Every random choice here is a pure function of (seed, epoch, step), so a run
resumed in the middle of an epoch sees exactly the batches it would have seen,
and with more than one process each rank takes its own slice of every global
batch (a deterministic distributed sampler).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from harness.data import load_arrays
from zoo.errors import DataError

from .generated import GeneratedData, load_generated

@dataclass
class TrainData:
    """Real training images (minus the held-out split) as uint8 tensors, plus optional generated images
    (memory-mapped, read per batch)."""

    real_x: torch.Tensor
    real_y: torch.Tensor
    generated: GeneratedData | None
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
        generated = load_generated(generated_data, dataset) if generated_data else None
        t = torch.from_numpy
        return cls(t(np.ascontiguousarray(x[holdout_size:])), t(np.ascontiguousarray(y[holdout_size:])), generated,
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
        self.mixing = data.generated is not None and generated_fraction > 0
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
        gen = rng.integers(0, len(self.data.generated), self.batch_size - len(real))
        return real, gen, rng.permutation(self.batch_size)

    def batch(self, epoch: int, step: int, rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """Return this rank's share of global batch ``step`` (every ``world_size``-th image of the shuffled
        batch, from ``rank``): uint8 NHWC images and labels. Only that share's generated images are read."""
        real_idx, gen_idx, order = self.indices(epoch, step)
        mine = torch.from_numpy(order[rank::world_size])  # positions in real + generated
        is_real = mine < len(real_idx)
        x = torch.empty((len(mine), *self.data.real_x.shape[1:]), dtype=torch.uint8)
        y = torch.empty(len(mine), dtype=torch.int64)
        real_pos = torch.from_numpy(real_idx)[mine[is_real]]
        x[is_real], y[is_real] = self.data.real_x[real_pos], self.data.real_y[real_pos].long()
        if gen_idx is not None and not bool(is_real.all()):
            x[~is_real], y[~is_real] = self.data.generated.take(gen_idx[(mine[~is_real] - len(real_idx)).numpy()])
        return x, y


def to_float(x: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [0, 1] on ``device``."""
    return x.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255).contiguous()
