"""Make ``architecture_logits.pt``: the logits of RobustBench's own architecture definitions (robustbench 1.1.1:
``DMWideResNet``, and ``PreActResNet`` with ``bn_before_fc=True, out_shortcut=True`` on inputs normalised with
its CIFAR-10 constants) under the weights and inputs of ``tests/architecture_reference.py``.

The core test suite (no robustbench) compares the zoo's architectures with these logits, so an architecture change
fails there too. Run from the repository root with the robustbench extra installed:

    .venv-rb/bin/python tests/data/make_architecture_logits.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from architecture_reference import ARCHITECTURES, LOGITS_FILE, reference_inputs, reference_state  # noqa: E402


def robustbench_model(arch: str, dataset: str):
    """RobustBench's definition of ``arch`` and a function from images in [0, 1] to its input."""
    from importlib.metadata import version as dist_version

    from robustbench.model_zoo.architectures import dm_wide_resnet as dm
    from robustbench.model_zoo.architectures.resnet import PreActBlock, PreActResNet

    num_classes = {"cifar10": 10, "cifar100": 100}[dataset]
    if arch == "preact-resnet-18":
        mean = torch.tensor(dm.CIFAR10_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(dm.CIFAR10_STD).view(1, 3, 1, 1)
        model = PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes=num_classes, bn_before_fc=True, out_shortcut=True)
        return model, lambda x: (x - mean) / std, dist_version("robustbench")
    _, depth, width, *act = arch.split("-")
    activation = dm.Swish if act == ["swish"] else torch.nn.ReLU
    norm = {"cifar10": (dm.CIFAR10_MEAN, dm.CIFAR10_STD), "cifar100": (dm.CIFAR100_MEAN, dm.CIFAR100_STD)}[dataset]
    model = dm.DMWideResNet(num_classes=num_classes, depth=int(depth), width=int(width), activation_fn=activation,
                            mean=norm[0], std=norm[1])
    return model, lambda x: x, dist_version("robustbench")


def main() -> None:
    out = {}
    x = reference_inputs()
    for arch, dataset in ARCHITECTURES:
        model, prepare, version = robustbench_model(arch, dataset)
        model.load_state_dict(reference_state(model.state_dict()), strict=True)
        with torch.no_grad():
            out[f"{arch}/{dataset}"] = model.eval()(prepare(x)).float().clone()
        print(arch, dataset, tuple(out[f"{arch}/{dataset}"].shape), f"robustbench {version}")
    torch.save(out, LOGITS_FILE)
    print(f"wrote {LOGITS_FILE} ({LOGITS_FILE.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
