"""Warm load time of WRN-28-10 weights: safetensors (zoo) vs. a .pt pickle.

    python bench/bench_load.py [--repeats 7]

Both files hold the same state dict; each is read and copied into a built
model (load_state_dict), timed after one warm-up read so the file is in the
page cache. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from timing import median_seconds

import zoo
from zoo.checkpoints import read_checkpoint
from zoo.model_dir import load_weights, make_config, save_model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    model = zoo.create_model("wrn-28-10-swish")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_model_dir(model, tmp / "m", make_config("wrn-28-10-swish", 10, "cifar10"))
        torch.save({"model_state_dict": model.state_dict()}, tmp / "m.pt")
        size_mb = (tmp / "m" / "model.safetensors").stat().st_size / 2**20
        st = median_seconds(lambda: model.load_state_dict(load_weights(tmp / "m" / "model.safetensors")), args.repeats, warmup=1)
        pt = median_seconds(lambda: model.load_state_dict(read_checkpoint(tmp / "m.pt")), args.repeats, warmup=1)
        full = median_seconds(lambda: zoo.load_model(tmp / "m"), args.repeats, warmup=1)
    print(f"WRN-28-10 weights: {size_mb:.0f} MiB, median of {args.repeats} warm loads")
    print(f"safetensors -> load_state_dict           {st * 1e3:8.1f} ms")
    print(f"torch.load(weights_only=True) -> same    {pt * 1e3:8.1f} ms")
    print(f"ratio pickle / safetensors               {pt / st:8.2f}x")
    print(f"zoo.load_model (build + strict load)     {full * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
