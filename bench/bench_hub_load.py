"""Cold (download) and warm (cache) Hub load of a WRN-28-10 vs torch.load of the same weights.

Publishes random WRN-28-10-Swish weights to the loopback test Hub
(tests/hub_server.py), then times, as medians of --runs runs:
- cold: zoo.load_model with an empty HF cache (download + sha256 + build + strict load),
- warm: zoo.load_model with the cache filled (pinned commit, no network request),
- torch.load: build the model + load_state_dict(torch.load(pickle, weights_only=True)),
- sha256: hashing the 146 MB safetensors file once.

    python bench/bench_hub_load.py --runs 3
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from timing import median_seconds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--arch", default="wrn-28-10-swish")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-hub-"))
    from hub_server import HubServer

    with HubServer() as server:
        os.environ.update(HF_ENDPOINT=server.url, HF_TOKEN=server.token, HF_HUB_DISABLE_TELEMETRY="1",
                          HF_HUB_DISABLE_XET="1", SCORE_ZOO_REGISTRY=str(tmp / "registry.json"),
                          HF_HUB_DISABLE_PROGRESS_BARS="1")
        import torch

        import zoo
        from zoo.fileio import sha256_file
        from zoo.publish import publish
        from zoo.model_dir import WEIGHTS_NAME, make_config, save_model_dir
        from zoo.registry import Entry, add_user_entry

        torch.manual_seed(0)
        model = zoo.create_model(args.arch, dataset="cifar10")
        digest = save_model_dir(model, tmp / "model", make_config(args.arch, 10, "cifar10", "Linf", 8 / 255))
        entry = Entry(name="bench", dataset="cifar10", threat_model="Linf", eps="8/255", architecture=args.arch,
                      num_classes=10, builtin=False)
        result = publish(entry, tmp / "model", "bench/wrn")
        add_user_entry(dataclasses.replace(entry, **result.entry_update))
        pickle_path = tmp / "weights.pt"
        torch.save(model.state_dict(), pickle_path)
        size_mb = (tmp / "model" / WEIGHTS_NAME).stat().st_size / 1e6
        n_params = sum(p.numel() for p in model.parameters())

        counter = iter(range(10**6))

        def fresh_cache():
            os.environ["HF_HOME"] = str(tmp / f"hf-{next(counter)}")

        cold = median_seconds(lambda: zoo.load_model("bench"), args.runs, setup=fresh_cache)
        server.requests.clear()
        warm = median_seconds(lambda: zoo.load_model("bench"), args.runs)
        assert server.requests == [], "warm load made requests"

        def torch_load():
            m = zoo.create_model(args.arch, dataset="cifar10")
            m.load_state_dict(torch.load(pickle_path, map_location="cpu", weights_only=True))
            m.eval()

        baseline = median_seconds(torch_load, args.runs)
        build = median_seconds(lambda: zoo.create_model(args.arch, dataset="cifar10"), args.runs)
        hashing = median_seconds(lambda: sha256_file(tmp / "model" / WEIGHTS_NAME), args.runs)
        assert digest == result.sha256

    print(f"{args.arch}: {n_params / 1e6:.1f}M parameters, model.safetensors {size_mb:.0f} MB; "
          f"median of {args.runs} runs, torch {torch.__version__}, {os.cpu_count()} CPUs")
    print(f"  cold load (loopback download + sha256 + build + load)  {cold:7.2f} s")
    print(f"  warm load (HF cache, no request, sha256 + build + load){warm:7.2f} s")
    print(f"  torch.load pickle (build + load_state_dict)            {baseline:7.2f} s")
    print(f"  of which: building the architecture                    {build:7.2f} s")
    print(f"  of which: one sha256 of the weights file               {hashing:7.2f} s")


if __name__ == "__main__":
    main()
