"""Defenses that mask gradients, built around the bundled ``cifar10-linf-tiny`` model (no training).

Each is a classic way an AutoAttack number goes wrong: input quantization (zero
gradients everywhere), a MeanSparse-style hard threshold on the input (pixels
within one standard deviation of their channel mean snap to it: zero gradient
there, yet the forward pass moves once a pixel leaves the band), a randomized
input layer, a saturated softmax (logits scaled by 1000: the cross-entropy
gradient underflows to zero on confident examples) and a test-time defense that
runs autograd in its forward pass. bench/bench_diagnostics.py measures them too.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn

import zoo
from harness.data import load_tensors


def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` bundled test images and labels."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_tensors("cifar10", "test", None, n)


def bundled(name: str = "cifar10-linf-tiny") -> nn.Module:
    return zoo.load_model(name)


class Quantize(nn.Module):
    """Input quantization to ``levels`` grey levels per channel."""

    def __init__(self, levels: int = 16):
        super().__init__()
        self.levels = levels

    def forward(self, x):
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)


class MeanSparse(nn.Module):
    """MeanSparse's hard threshold (Amini et al., 2024): values within ``threshold`` of the channel mean become it."""

    def __init__(self, mean: torch.Tensor, threshold: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("threshold", threshold)

    def forward(self, x):
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean, threshold = self.mean.view(shape), self.threshold.view(shape)
        return torch.where((x - mean).abs() > threshold, x, mean.expand_as(x))


class GaussianNoise(nn.Module):
    """A randomized defense: fresh Gaussian noise on the input at every call."""

    def __init__(self, sigma: float = 0.02):
        super().__init__()
        self.sigma = sigma

    def forward(self, x):
        return x + self.sigma * torch.randn_like(x)


class Scale(nn.Module):
    """Multiplies the logits: a large factor saturates the softmax."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class EntropyStep(nn.Module):
    """A test-time defense: one signed-gradient step that lowers the prediction's entropy, then classify."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        with torch.enable_grad():
            z = x.detach().requires_grad_(True)
            p = self.inner(z).softmax(1)
            (g,) = torch.autograd.grad(-(p * p.clamp_min(1e-12).log()).sum(), z)
        return self.inner((x - g.sign() / 255).clamp(0, 1))


def quantized_model() -> nn.Module:
    return nn.Sequential(Quantize(), bundled()).eval()


def mean_sparse_model() -> nn.Module:
    """The threshold is one standard deviation of each channel over bundled images 256..511 (not tested on)."""
    x = images(512)[0][256:].transpose(0, 1).flatten(1)
    return nn.Sequential(MeanSparse(x.mean(1), x.std(1)), bundled()).eval()


def randomized_model() -> nn.Module:
    return nn.Sequential(GaussianNoise(), bundled()).eval()


def saturated_model() -> nn.Module:
    return nn.Sequential(bundled(), Scale(1000.0)).eval()


def dynamic_model() -> nn.Module:
    return EntropyStep(bundled()).eval()


MASKED = {"quantized": quantized_model, "mean-sparse": mean_sparse_model, "randomized": randomized_model,
          "saturated": saturated_model, "dynamic": dynamic_model}
