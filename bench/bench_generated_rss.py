"""Peak resident memory of training's data path with a generated-data file larger than 2 GB.

Writes an uncompressed .npz of random uint8 images in the DM-Improves-AT format (``image`` N x 32 x 32 x 3,
``label`` N) into a temporary folder, streaming (the file is never in memory), then runs --steps batches
of the real data path: ``TrainData`` (the bundled images as the real split, the file memory-mapped), the
``BatchPlan`` of a DM-AT recipe (batch 2048, generated fraction 0.7) and the trainer's uint8 -> float +
augmentation. Prints the peak RSS of the process (VmHWM, reset after writing the file) before and after, against the file size.
Goal: peak RSS < 1.5 GB.

    python bench/bench_generated_rss.py --images 700000 --steps 300
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def peak_rss_mb() -> float:
    """Peak RSS since the start (or since :func:`reset_peak`): VmHWM on Linux, else getrusage."""
    status = Path("/proc/self/status")
    if status.is_file():
        return int(next(line for line in status.read_text().splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def reset_peak() -> bool:
    """Restart the peak at the current RSS (Linux: /proc/self/clear_refs), so the data path is measured alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def write_npz(path: Path, n: int, chunk: int = 50_000) -> None:
    """An uncompressed .npz of ``n`` random images and labels, written chunk by chunk."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, shape, dtype in (("image", (n, 32, 32, 3), np.uint8), ("label", (n,), np.int64)):
            with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array_header_2_0(
                    f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape})
                for start in range(0, n, chunk):
                    m = min(chunk, n - start)
                    block = rng.integers(0, 256, (m, *shape[1:]), dtype=np.uint8) if name == "image" \
                        else rng.integers(0, 10, m).astype(dtype)
                    f.write(block.tobytes())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=700_000, help="generated images (3,072 bytes each)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--fraction", type=float, default=0.7)
    parser.add_argument("--dir", default=None, help="where to write the file (default: a temporary folder)")
    args = parser.parse_args()

    import torch

    from training.augment import augment
    from training.data import BatchPlan, TrainData, to_float
    from training.randomness import step_generator
    from training_helpers import bundled_images

    torch.set_num_threads(1)
    x, y = bundled_images()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="gen-rss-") as tmp:
        path = Path(tmp) / "generated.npz"
        t0 = time.time()
        write_npz(path, args.images)
        size_mb = path.stat().st_size / 2**20
        print(f"wrote {path} ({size_mb:.0f} MiB, {args.images} images) in {time.time() - t0:.1f} s; "
              f"peak RSS so far {peak_rss_mb():.0f} MiB", flush=True)
        print(f"peak RSS reset before opening the file: {reset_peak()}")
        before = peak_rss_mb()
        data = TrainData.from_arrays(x, y, "cifar10", holdout_size=100, generated_data=str(path))
        plan = BatchPlan(data, args.batch_size, args.fraction, seed=0)
        t0 = time.time()
        read = 0
        for step in range(args.steps):
            epoch, s = divmod(step, plan.steps_per_epoch)
            xb, yb = plan.batch(epoch, s)
            augment(to_float(xb), "crop-flip", step_generator(0, epoch, s, 0, torch.device("cpu")))
            read += int((len(xb) * args.fraction))
        seconds = time.time() - t0
        peak = peak_rss_mb()
        print(f"{args.steps} batches of {args.batch_size} ({args.fraction:.0%} generated, about {read} generated "
              f"images read) in {seconds:.1f} s ({args.steps * args.batch_size / seconds:.0f} images/s)")
        print(f"peak RSS: {before:.0f} MiB before opening the file (torch and the real images), {peak:.0f} MiB "
              f"after {args.steps} batches; "
              f"file {size_mb:.0f} MiB; peak / file = {peak / size_mb:.2f}; goal < 1536 MiB: "
              f"{'met' if peak < 1536 else 'NOT met'}")


if __name__ == "__main__":
    main()
