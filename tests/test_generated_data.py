"""Generated data from the Hub: downloaded, pinned, memory-mapped, read per rank; TensorBoard logs read back."""

import hashlib
import io
import json

import numpy as np
import pytest
from click.testing import CliRunner

from training.cli import main
from training.data import BatchPlan
from training.generated import GeneratedData, load_generated
from training_helpers import bundled_images, tiny_config, tiny_data
from zoo.errors import DataError, HubError

REPO = "score-zoo-test/edm"


def npz_bytes(n=64, seed=0, compressed=False, **arrays) -> bytes:
    """An .npz in the format of the DM-Improves-AT dataset: image (N,32,32,3) uint8, label (N,)."""
    rng = np.random.default_rng(seed)
    arrays = {"image": rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), "label": rng.integers(0, 10, n),
              **arrays}
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


@pytest.fixture(scope="module")
def cifar():
    return bundled_images()


@pytest.fixture()
def dataset_repo(hub):
    """A Hub dataset holding one generated file; returns (server, commit, the file's bytes)."""
    data = npz_bytes()
    repo = hub.create_repo(f"datasets/{REPO}")
    commit = repo.commit("main", "add 64 images", {"cifar10/64.npz": data})
    return hub, commit.oid, data


def test_hub_file_trains_and_is_recorded_and_logged(dataset_repo, cifar, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    hub, commit, data = dataset_repo
    reference = f"hf://datasets/{REPO}/cifar10/64.npz"
    train_data = tiny_data(cifar, n=64, holdout=16, generated=reference)
    assert len(train_data.generated) == 64
    x, y = train_data.generated.take(np.array([5, 0, 63]))
    expected = np.load(io.BytesIO(data))
    assert np.array_equal(x.numpy(), expected["image"][[5, 0, 63]]) and np.array_equal(y.numpy(), expected["label"][[5, 0, 63]])
    assert f"datasets--{REPO.replace('/', '--')}" in train_data.generated.sources[0]["path"]

    from training import train

    cfg = tiny_config(epochs=1, generated_data=reference, generated_fraction=0.5, test_clean_every=0, attack_steps=1,
                      eval_attack_steps=1)
    run = train(cfg, tmp_path / "run", data=train_data, progress=False)
    info = json.loads((run / "run_info.json").read_text())
    assert info["generated_data"] == [{"reference": reference, "repo_id": REPO, "filename": "cifar10/64.npz",
                                       "revision": commit, "path": train_data.generated.sources[0]["path"],
                                       "images": 64, "sha256": hashlib.sha256(data).hexdigest()}]
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"step/loss", "step/lr", "step/images_per_second", "train/loss", "holdout/clean_acc",
            "holdout/pgd_acc", "epoch/lr"} <= tags
    assert [e.step for e in events.Scalars("step/loss")] == [1, 2]
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert events.Scalars("holdout/pgd_acc")[0].value == pytest.approx(record["holdout_robust_acc"])
    assert events.Scalars("train/loss")[0].step == record["global_step"] == 2

    # pinned to the commit: a later commit on main does not change what is read
    hub.repos[f"datasets/{REPO}"].commit("main", "replace", {"cifar10/64.npz": npz_bytes(seed=1)})
    pinned = load_generated(f"{reference}@{commit}", "cifar10")
    assert pinned.sources[0]["revision"] == commit and np.array_equal(pinned.take(np.array([5]))[0].numpy()[0], x.numpy()[0])
    with pytest.raises(HubError, match="revision 'nope' does not exist"):
        load_generated(f"{reference}@nope", "cifar10")


def test_each_rank_reads_only_its_share(tmp_path, cifar, monkeypatch):
    path = tmp_path / "gen.npz"
    path.write_bytes(npz_bytes())
    data = tiny_data(cifar, n=96, holdout=32, generated=str(path))
    plan = BatchPlan(data, batch_size=32, generated_fraction=0.75, seed=0)
    whole_x, whole_y = plan.batch(0, 1)
    read = []
    take = GeneratedData.take
    monkeypatch.setattr(GeneratedData, "take", lambda self, idx: (read.append(len(idx)), take(self, idx))[1])
    for rank in range(2):
        x, y = plan.batch(0, 1, rank, 2)
        assert np.array_equal(x.numpy(), whole_x[rank::2].numpy()) and np.array_equal(y.numpy(), whole_y[rank::2].numpy())
    assert sum(read) == 24 and max(read) < 24  # the 24 generated images of the batch, each read by one rank


@pytest.mark.parametrize("content,match", [
    (lambda: npz_bytes()[:20000], "not a readable .npz file, truncated or damaged"),
    (lambda: npz_bytes(image=np.zeros((64, 3, 32, 32), np.uint8)), r"'image' must be uint8 of shape \(N,32,32,3\)"),
    (lambda: npz_bytes(label=np.zeros((64, 2), np.int64)), r"'label' must have shape \(64,\)"),
    (lambda: npz_bytes(compressed=True), "compressed .npz.*score-train convert-generated"),
])
def test_bad_files_are_one_clear_line(tmp_path, content, match):
    path = tmp_path / "gen.npz"
    path.write_bytes(content())
    with pytest.raises(DataError, match=match) as error:
        load_generated(str(path), "cifar10")
    assert "\n" not in str(error.value)


def test_a_file_cut_inside_the_images_is_refused(tmp_path):
    """An uncompressed file whose zip directory survives but whose image bytes end early."""
    data = npz_bytes()
    path = tmp_path / "gen.npz"
    path.write_bytes(data)
    from training.generated import _open_member

    _, _, offset = _open_member(path, "image")
    path.write_bytes(data[:offset + 1000])
    with pytest.raises(DataError, match="truncated|not a readable"):
        load_generated(str(path), "cifar10")


def test_convert_writes_one_uncompressed_file_from_parts(tmp_path):
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    a.write_bytes(npz_bytes(n=10, compressed=True))
    b.write_bytes(npz_bytes(n=7, seed=1))
    result = CliRunner().invoke(main, ["convert-generated", str(a), str(b), str(tmp_path / "ab.npz"), "--no-progress"])
    assert result.exit_code == 0, result.output
    merged = load_generated(str(tmp_path / "ab.npz"), "cifar10")
    parts = [np.load(a), np.load(b)]
    assert len(merged) == 17
    x, y = merged.take(np.arange(17))
    assert np.array_equal(x.numpy(), np.concatenate([p["image"] for p in parts]))
    assert np.array_equal(y.numpy(), np.concatenate([p["label"] for p in parts]))
    bad = CliRunner().invoke(main, ["convert-generated", str(tmp_path / "missing.npz"), str(tmp_path / "x.npz")])
    assert bad.exit_code == 1 and "does not exist" in bad.output and not (tmp_path / "x.npz").exists()
