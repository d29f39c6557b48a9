"""Clean accuracy: a model's accuracy without attack on the first images of a test split."""

from __future__ import annotations

import torch

from zoo import devices
from zoo.datasets_meta import check_dataset

from .data import load_tensors
from .engine.numerics import choose_numerics, placed
from .models import resolve_model


def clean_accuracy(model, dataset: str | None = None, data_dir=None, n_examples: int | None = None,
                   batch_size: int = 500, device: str | None = None, exact: bool = False,
                   channels_last: bool | None = None, tf32: bool | None = None) -> float:
    """Accuracy (percent) without attack on the first ``n_examples`` test images.

    ``model`` is anything ``evaluate`` takes (a spec string or an nn.Module);
    layout and precision are chosen as ``evaluate`` chooses them (``numerics``).
    """
    resolved = resolve_model(model, dataset)
    dataset = check_dataset(dataset or resolved.defaults.get("dataset", "cifar10"))
    x, y = load_tensors(dataset, "test", data_dir, n_examples)
    device = devices.placement(device).device
    numerics = choose_numerics(resolved.model, exact, channels_last, tf32)
    correct = 0
    with placed(resolved.model.eval(), device, numerics) as net, torch.no_grad():
        for lo in range(0, len(x), batch_size):
            correct += (net(x[lo:lo + batch_size].to(device)).argmax(1).cpu() == y[lo:lo + batch_size]).sum().item()
    return 100.0 * correct / len(x)
