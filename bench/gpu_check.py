"""Every CUDA path of SCORE Zoo end to end on one GPU, with a table of what passed and the figures.

    python bench/gpu_check.py                       # on a GPU machine: about 6 minutes on one H200
    python bench/gpu_check.py --device cpu --quick  # the same checks on CPU (gloo instead of nccl), small

Checks, each in fresh processes as a user runs them:
 1. evaluate the bundled tiny model with the defaults (TF32 convolutions, channels_last) and with
    --exact; each must agree example by example with bare pyautoattack under the same flags
 2. --workers 2 on one GPU: the same per-example result as one process
 3. torchrun with one process (nccl: init, barrier, gather, --out): the same result
 4. score-harness verify of that result on the GPU
 5. training the tiny recipe for a few dozen steps with bf16 + channels_last (native bf16 expected)
 6. SIGKILL mid-run and --resume: the same weights as an uninterrupted run, or the largest difference
    (CUDA kernels need not be bit-reproducible; the run is deterministic=true with CUBLAS_WORKSPACE_CONFIG)
 7. score-train register of the run on the GPU
 8. the harness speed-up bench against RobustBench's benchmark() and the training-step bench
Everything it writes goes to --work (default: a temporary folder); --out keeps the table as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "harness" / "bundled" / "cifar10_test_first1000.npz"


class Check:
    """Runs the steps, keeps one row per step."""

    def __init__(self, work: Path, device: str):
        self.work, self.device, self.rows = work, device, []
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "SCORE_ZOO_REGISTRY": str(work / "registry.json"),
                    "CUBLAS_WORKSPACE_CONFIG": os.environ.get("CUBLAS_WORKSPACE_CONFIG", ":4096:8")}

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, env=self.env, cwd=self.work)

    def step(self, name: str, fn) -> None:
        t0 = time.perf_counter()
        try:
            ok, figure = fn()
        except Exception as e:  # a failing step is a row of the table, and the next step still runs
            ok, figure = False, f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"[:300]
        self.rows.append({"check": name, "ok": bool(ok), "seconds": round(time.perf_counter() - t0, 1),
                          "figure": figure})
        print(f"[{'PASS' if ok else 'FAIL'}] {name} ({self.rows[-1]['seconds']} s): {figure}", flush=True)


def _outcomes(path: Path) -> list:
    return json.loads(path.read_text())["evaluation"]["per_example"]["outcome"]


def _bare_agreement(result: Path, exact: bool, device: str, n_iter: int | None) -> str:
    """Bare pyautoattack under the flags the result records; agreement with the result, per example."""
    import torch
    from pyautoattack import AutoAttack

    import zoo
    from harness.engine.autoattack_setup import set_iterations
    from harness.data import load_tensors
    from harness.engine.numerics import applied, choose_numerics

    ev = json.loads(result.read_text())["evaluation"]
    model = zoo.load_model("cifar10-linf-tiny", device=device)
    numerics = choose_numerics(model, exact=exact)
    if numerics.channels_last:
        model = model.to(memory_format=torch.channels_last)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, y = load_tensors("cifar10", "test", None, ev["n_examples"])
    aa = AutoAttack(model, norm="Linf", eps=8 / 255, seed=ev["seed"], version=ev["autoattack"]["version"],
                    attacks=ev["autoattack"]["attacks"] if ev["autoattack"]["version"] == "custom" else None,
                    device=device)
    if n_iter:
        set_iterations(aa, n_iter)
    with applied(numerics):
        _, y_adv = aa.run_standard_evaluation(x.to(device), y.to(device), batch_size=ev["batch_size"])
    bare = (y_adv.cpu() == y).tolist()
    ours = [o is None for o in ev["per_example"]["outcome"]]
    agree = sum(a == b for a, b in zip(bare, ours))
    return f"{agree}/{len(ours)} agree with bare pyautoattack ({ev['numerics']})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--quick", action="store_true", help="Fewer images and attack iterations (a smoke run).")
    p.add_argument("--work", default=None, help="Folder for everything written (default: temporary).")
    p.add_argument("--out", default=None, help="Write the table as JSON here.")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="gpu-check-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    c = Check(work, args.device)
    py = sys.executable
    n, batch = ("32", "16") if args.quick else ("500", "250")
    smoke = ["--n-iter", "3", "--version", "custom", "--attacks", "apgd-ce,apgd-t"] if args.quick else []
    n_iter = 3 if args.quick else None
    common = ["cifar10-linf-tiny", "--n-examples", n, "--batch-size", batch, *smoke]
    print(f"gpu_check on {args.device}, writing to {work}", flush=True)

    def env_facts():
        import torch
        if args.device.startswith("cuda"):
            d = torch.device(args.device)
            return True, (f"{torch.cuda.get_device_name(d)}, capability {torch.cuda.get_device_capability(d)}, "
                          f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)")
        return True, f"cpu, torch {torch.__version__}"
    c.step("device", env_facts)

    def evaluate(name: str, *extra: str):
        res = c.run(py, "-m", "harness", "evaluate", *common, "--device", args.device, "--out", f"{name}.json",
                    *extra)
        if res.returncode:
            return False, res.stderr.strip().splitlines()[-1]
        line = res.stdout.strip().splitlines()[0]
        agreement = _bare_agreement(work / f"{name}.json", "--exact" in extra, args.device, n_iter)
        same = agreement.startswith(f"{n}/{n}")
        return same, f"{line}; {agreement}"
    c.step("1a evaluate, defaults", lambda: evaluate("default", "--workers", "1", "--save-adversarial", "adv.safetensors"))
    c.step("1b evaluate, --exact", lambda: evaluate("exact", "--workers", "1", "--exact"))

    def workers():
        res = c.run(py, "-m", "harness", "evaluate", *common, "--device", args.device, "--workers", "2",
                    "--out", "workers.json")
        if res.returncode:
            return False, res.stderr.strip().splitlines()[-1]
        same = _outcomes(work / "workers.json") == _outcomes(work / "default.json")
        return same, f"2 workers on {args.device}: per-example result {'equal to' if same else 'DIFFERENT from'} 1 process"
    c.step("2 --workers 2 on one GPU", workers)

    def torchrun():
        device = "cuda" if args.device.startswith("cuda") else "cpu"
        res = c.run(py, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m", "harness",
                    "evaluate", *common, "--device", device, "--out", "torchrun.json")
        if res.returncode:
            return False, res.stderr.strip().splitlines()[-1]
        same = _outcomes(work / "torchrun.json") == _outcomes(work / "default.json")
        backend = "nccl" if device == "cuda" else "gloo"
        return same, f"torchrun 1 process ({backend}): result {'equal to' if same else 'DIFFERENT from'} 1 process"
    c.step("3 torchrun (init, barrier, gather, --out)", torchrun)

    def verify():
        res = c.run(py, "-m", "harness", "verify", "torchrun.json", "--n-examples", "32", "--device", args.device,
                    "--workers", "1")
        return res.returncode == 0, (res.stdout or res.stderr).strip().splitlines()[-1]
    c.step("4 verify", verify)

    train = ["--recipe", "cifar10-linf-tiny", "--data-dir", str(BUNDLED), "--set", "train_subset=1000",
             "--set", "holdout_size=128", "--set", "epochs=2", "--set", "batch_size=32", "--set", "checkpoint_every=5",
             "--set", "test_clean_every=0", "--no-progress", "--device", args.device]

    def training():
        res = c.run(py, "-m", "training", *train, "--out", "run-a")
        if res.returncode:
            return False, res.stderr.strip().splitlines()[-1]
        info = json.loads((work / "run-a" / "run_info.json").read_text())
        epochs = [json.loads(line) for line in (work / "run-a" / "metrics.jsonl").read_text().splitlines()]
        return info["bf16"] or not args.device.startswith("cuda"), (
            f"{epochs[-1]['global_step']} steps, bf16 {info['bf16']}, {sum(e['epoch_seconds'] for e in epochs):.1f} s "
            f"of epochs, held-out PGD {epochs[-1].get('holdout_robust_acc')}")
    c.step("5 train tiny recipe (bf16 + channels_last)", training)

    def kill_resume():
        from safetensors.torch import load_file

        proc = subprocess.Popen([py, "-m", "training", *train, "--out", "run-b"], env=c.env, cwd=work,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ckpt = work / "run-b" / "checkpoint.pt"
        deadline = time.time() + 120
        while time.time() < deadline and not ckpt.is_file() and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        res = c.run(py, "-m", "training", *train, "--out", "run-b", "--resume")
        if res.returncode:
            return False, res.stderr.strip().splitlines()[-1]
        a = load_file(str(work / "run-a" / "model" / "model.safetensors"))
        b = load_file(str(work / "run-b" / "model" / "model.safetensors"))
        diff = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
        return diff == 0.0, ("bit-identical to the uninterrupted run" if diff == 0.0 else
                             f"largest weight difference {diff:.3g} against the uninterrupted run")
    c.step("6 SIGKILL mid-run, --resume", kill_resume)

    def register():
        res = c.run(py, "-m", "training", "register", "run-a", "--name", "gpu-check-tiny", "--n-examples", n,
                    "--batch-size", batch, "--device", args.device, *smoke, "--no-progress", timeout=600)
        return res.returncode == 0, (res.stdout or res.stderr).strip().splitlines()[-1]
    c.step("7 score-train register", register)

    def bench_eval():
        size = ["--n", "64", "--batch-size", "32", "--n-iter", "3"] if args.quick else ["--n", "1000", "--batch-size", "250"]
        res = c.run(py, str(REPO / "bench" / "bench_harness_speedup.py"), *size, "--device", args.device,
                    "--skip-per-batch", timeout=900)
        out = res.stdout.strip().splitlines()
        return res.returncode == 0, " | ".join(out[-4:]) if out else res.stderr.strip().splitlines()[-1]
    c.step("8a harness vs RobustBench benchmark()", bench_eval)

    def bench_step():
        res = c.run(py, str(REPO / "bench" / "bench_train_step.py"), "--device", args.device, "--repeats", "5")
        out = res.stdout.strip().splitlines()
        return res.returncode == 0, " | ".join(out[-3:]) if out else res.stderr.strip().splitlines()[-1]
    c.step("8b training step fp32 vs bf16 + channels_last", bench_step)

    print("\n| check | result | seconds | figure |\n|---|---|---|---|")
    for row in c.rows:
        print(f"| {row['check']} | {'pass' if row['ok'] else 'FAIL'} | {row['seconds']} | {row['figure']} |")
    if args.out:
        Path(args.out).write_text(json.dumps(c.rows, indent=2))
    sys.exit(0 if all(r["ok"] for r in c.rows) else 1)


if __name__ == "__main__":
    main()
