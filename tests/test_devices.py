"""Device decisions of every command: the pure placement function, exhaustively, and one-line CLI errors."""

from __future__ import annotations

import itertools

import pytest
from click.testing import CliRunner

from zoo import devices, distributed
from zoo.devices import Placement, World, plan_device, worker_devices
from zoo.errors import ConfigError

W1 = World()


@pytest.mark.parametrize("requested, world, gpus, expected", [
    # one process
    (None, W1, 0, Placement("cpu", (), W1)),
    (None, W1, 2, Placement("cuda:0", (0, 1), W1)),
    ("cpu", W1, 4, Placement("cpu", (), W1)),
    ("cuda", W1, 1, Placement("cuda:0", (0,), W1)),
    ("cuda", W1, 3, Placement("cuda:0", (0, 1, 2), W1)),
    ("cuda:2", W1, 3, Placement("cuda:2", (2,), W1)),
    (" CUDA:1 ".lower(), W1, 2, Placement("cuda:1", (1,), W1)),
    # torchrun: a bare cuda is the rank's GPU
    ("cuda", World(3, 3, 8), 4, Placement("cuda:3", (3,), World(3, 3, 8))),
    ("cuda", World(5, 1, 8), 4, Placement("cuda:1", (1,), World(5, 1, 8))),   # second node
    (None, World(1, 1, 2), 2, Placement("cuda:1", (1,), World(1, 1, 2))),
    (None, World(1, 1, 2), 0, Placement("cpu", (), World(1, 1, 2))),
    ("cpu", World(1, 1, 2), 8, Placement("cpu", (), World(1, 1, 2))),
    # torchrun with one process: an explicit GPU is fine
    ("cuda:1", World(0, 0, 1), 2, Placement("cuda:1", (1,), World(0, 0, 1))),
])
def test_placement(requested, world, gpus, expected):
    assert plan_device(requested, world, gpus) == expected


@pytest.mark.parametrize("requested, world, gpus, cuda_built, message", [
    ("tpu", W1, 0, True, "unknown device 'tpu'"),
    ("mps", W1, 0, True, "device 'mps' is not supported"),
    ("cuda:x", W1, 1, True, "unknown device 'cuda:x'"),
    ("cpu:1", W1, 0, True, "not supported"),
    ("", W1, 0, True, "unknown device"),
    ("cuda", W1, 0, True, "--device cuda: CUDA is not available on this machine (no GPU is visible)"),
    ("cuda:0", W1, 0, False, "this torch is built without CUDA"),
    ("cuda:7", W1, 1, True, "--device cuda:7 does not exist: this machine has 1 GPU(s), cuda:0 to cuda:0"),
    ("cuda:1", World(0, 0, 2), 2, True, "would put all 2 processes on GPU 1"),
    ("cuda:0", World(1, 1, 4), 4, True, "CUDA_VISIBLE_DEVICES"),
    ("cuda", World(2, 2, 4), 2, True, "torchrun started local rank 2, but this machine has 2 GPU(s)"),
])
def test_placement_refusals(requested, world, gpus, cuda_built, message):
    with pytest.raises(ConfigError) as info:
        plan_device(requested, world, gpus, cuda_built)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_every_combination_is_a_placement_or_one_clear_error():
    """No combination of request, ranks and GPU count crashes or puts two ranks of a node on one GPU."""
    requests = [None, "cpu", "cuda", "cuda:0", "cuda:1", "cuda:3"]
    for requested, gpus, world_size in itertools.product(requests, range(0, 5), (1, 2, 4)):
        used = {}
        for rank in range(world_size):
            world = World(rank, rank, world_size)
            try:
                where = plan_device(requested, world, gpus)
            except ConfigError as e:
                assert "\n" not in str(e)
                continue
            assert where.world == world
            if where.is_cuda:
                assert 0 <= where.index < gpus
                assert set(where.worker_gpus) <= set(range(gpus))
                if world.distributed:
                    assert used.setdefault(where.index, rank) == rank, (requested, gpus, world_size)
            assert where.backend == (None if world_size == 1 else "nccl" if where.is_cuda else "gloo")


@pytest.mark.parametrize("env, expected", [
    ({}, World(0, 0, 1)),
    ({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"}, World(3, 1, 4)),
    ({"WORLD_SIZE": ""}, World(0, 0, 1)),
])
def test_world_from_env(env, expected):
    assert World.from_env(env) == expected


@pytest.mark.parametrize("env", [{"WORLD_SIZE": "two"}, {"RANK": "2", "WORLD_SIZE": "2"}, {"LOCAL_RANK": "-1"}])
def test_world_from_bad_env(env):
    with pytest.raises(ConfigError):
        World.from_env(env)


def test_worker_devices():
    cpu = plan_device("cpu")
    assert worker_devices(None, cpu, n_tasks=10, cores=2) == ["cpu", "cpu"]
    assert worker_devices(None, cpu, n_tasks=1, cores=8) == ["cpu"]
    assert worker_devices(3, cpu, n_tasks=2, cores=8) == ["cpu", "cpu"]  # never more workers than tasks
    gpus = plan_device("cuda", W1, 3)
    assert worker_devices(None, gpus, n_tasks=10, cores=16) == ["cuda:0", "cuda:1", "cuda:2"]
    assert worker_devices(4, gpus, n_tasks=10, cores=16) == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]
    one = plan_device("cuda:2", W1, 3)
    assert worker_devices(2, one, n_tasks=10, cores=16) == ["cuda:2", "cuda:2"]
    rank = plan_device("cuda", World(1, 1, 2), 2)
    assert worker_devices(None, rank, n_tasks=10, cores=16) == ["cuda:1"]
    with pytest.raises(ConfigError, match="cannot be combined with torchrun"):
        worker_devices(2, rank, n_tasks=10, cores=16)
    with pytest.raises(ConfigError, match="at least 1"):
        worker_devices(0, cpu, n_tasks=10, cores=2)


def test_single_process_group_is_a_no_op():
    with distributed.joined(plan_device("cpu")) as group:
        assert (group.rank, group.world_size, group.enabled, group.is_main) == (0, 1, False, True)
        assert group.all_gather_object({"a": 1}) == [{"a": 1}]
        group.barrier()


@pytest.mark.parametrize("argv", [
    ["score-zoo", "load", "cifar10-linf-tiny", "--device", "cuda"],
    ["score-zoo", "load", "cifar10-linf-tiny", "--device", "cuda:7"],
    ["score-zoo", "load", "cifar10-linf-tiny", "--device", "tpu"],
    ["score-train", "--recipe", "cifar10-linf-tiny", "--out", "RUN", "--device", "tpu"],
    ["score-train", "--recipe", "cifar10-linf-tiny", "--out", "RUN", "--device", "cuda"],
    ["score-harness", "evaluate", "cifar10-linf-tiny", "--n-examples", "8", "--device", "mps"],
    ["score-harness", "evaluate", "cifar10-linf-tiny", "--n-examples", "8", "--device", "cuda:3"],
])
def test_every_command_refuses_a_bad_device_in_one_line(argv, tmp_path):
    if devices.visible_gpus():
        pytest.skip("this machine has a GPU: the CUDA requests are valid here")
    from harness.cli import main as harness_main
    from training.cli import main as train_main
    from zoo.cli import main as zoo_main

    main = {"score-zoo": zoo_main, "score-train": train_main, "score-harness": harness_main}[argv[0]]
    args = [str(tmp_path / "run") if a == "RUN" else a for a in argv[1:]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "device" in lines[0].lower(), result.output
    assert not (tmp_path / "run").exists()


def test_cpu_name_reads_the_model_and_its_widest_vector_extension(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert devices.cpu_name(str(info)) == "AMD EPYC (AVX512-BF16)"
    info.write_text("model name\t: Intel Xeon\nflags\t\t: fpu avx2\n")
    assert devices.cpu_name(str(info)) == "Intel Xeon (AVX2)"
    assert devices.cpu_name(str(tmp_path / "none"))  # no /proc: the platform's name
