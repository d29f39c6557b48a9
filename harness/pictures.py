"""Pictures of what robust models do: input gradients side by side, and the examples an attack broke.

- :func:`gradient_grid`: for the same test images, the gradient of each model's
  cross-entropy loss with respect to the input, one column per model. Each
  gradient is shown as robustness papers show them (Tsipras et al. 2019): per
  image, centred on its mean, scaled by three standard deviations, clipped and
  mapped to [0, 1], colour channels kept. Robust models' gradients look like
  the object; a standard or untrained network's look like noise.
- :func:`adversarial_grid`: from a ``--save-adversarial`` file, for each broken
  example the clean image, the adversarial image and the perturbation magnified
  to the full range (grey is zero; the eps ball's edges are black and white), with
  the true label, the prediction after the attack and the attack that broke it.

Figures are PNG files written atomically.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.datasets_meta import CLASS_NAMES
from zoo.errors import ConfigError
from zoo.fileio import atomic_file


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """d CE(model(x), y) / dx per image (the model in eval mode; its parameters get no gradient)."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(x), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
    return grad.detach()


def show_gradient(grad: torch.Tensor) -> torch.Tensor:
    """A (C, H, W) gradient as an image in [0, 1]: centred, scaled by 3 std, clipped (0.5 is zero)."""
    g = grad - grad.mean()
    scale = 3 * g.std()
    if not torch.isfinite(scale) or scale == 0:
        return torch.full_like(g, 0.5)
    return (g / scale).clamp(-1, 1).add(1).div(2)


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_file(path) as f:
        fig.savefig(f, format="png", dpi=100, bbox_inches="tight")


def _hwc(t: torch.Tensor):
    return t.detach().to("cpu").permute(1, 2, 0).clamp(0, 1).numpy()


def gradient_grid(models: list[tuple[str, nn.Module]], x: torch.Tensor, y: torch.Tensor, dataset: str,
                  path: str | os.PathLike) -> None:
    """One row per image: the image, then each model's input gradient (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grads = [input_gradients(model, x, y) for _, model in models]
    names = CLASS_NAMES[dataset]
    rows, cols = len(x), len(models) + 1
    fig, axes = plt.subplots(rows, cols, figsize=(2.1 * cols, 1.7 * rows), squeeze=False)
    for i in range(rows):
        axes[i][0].imshow(_hwc(x[i]))
        axes[i][0].set_ylabel(names[int(y[i])], fontsize=8)
        for j, g in enumerate(grads, start=1):
            axes[i][j].imshow(_hwc(show_gradient(g[i])))
    for j, title in enumerate(["image"] + [label for label, _ in models]):
        axes[0][j].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("input gradients of the loss", fontsize=9)
    _save(fig, path)
    plt.close(fig)


def adversarial_grid(tensors: dict[str, torch.Tensor], about: dict, path: str | os.PathLike,
                     max_examples: int = 8) -> int:
    """Draw up to ``max_examples`` broken examples (clean, adversarial, perturbation); return how many."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(max_examples, len(tensors["indices"]))
    if count == 0:
        raise ConfigError("the file holds no adversarial examples: the attacks broke no example")
    names = CLASS_NAMES[about["dataset"]]
    fig, axes = plt.subplots(count, 3, figsize=(5.4, 1.9 * count), squeeze=False)
    for i in range(count):
        x, adv = tensors["x"][i], tensors["x_adv"][i]
        delta = adv - x
        peak = float(delta.abs().max()) or 1.0
        attack = about["attacks"][int(tensors["attack"][i])]
        eps = about["eps"][int(tensors["eps_index"][i])]
        axes[i][0].imshow(_hwc(x))
        axes[i][0].set_ylabel(f"#{int(tensors['indices'][i])}", fontsize=8)
        axes[i][0].set_title(f"true: {names[int(tensors['labels'][i])]}", fontsize=8)
        axes[i][1].imshow(_hwc(adv))
        axes[i][1].set_title(f"pred: {names[int(tensors['predictions'][i])]}", fontsize=8)
        axes[i][2].imshow(_hwc(delta / (2 * peak) + 0.5))
        axes[i][2].set_title(f"{attack} {about['threat_model']} {eps} (x{0.5 / peak:.0f})", fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{about['model']}: clean, adversarial, perturbation", fontsize=9)
    _save(fig, path)
    plt.close(fig)
    return count
