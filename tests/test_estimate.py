"""score-harness estimate: the projection's arithmetic, its range, and one-line refusals."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from scipy.stats import beta

from harness.cli import main
from harness.estimate import project, sample_size

# A sample of 10 images in chunks of 10, one worker: 10 clean passes (1 s); 5 survivors entered APGD-CE
# (100 forward-with-grad and 100 backward passes each, 1 s per image); none reached Square.
COST = {"stages": [
    {"stage": "clean", "eps": None, "images": 10, "forward": 10, "forward_grad": 0, "backward": 0, "seconds": 1.0},
    {"stage": "apgd-ce", "eps": "8/255", "images": 5, "forward": 10, "forward_grad": 500, "backward": 500,
     "seconds": 5.0},
    {"stage": "square", "eps": "8/255", "images": 0, "forward": 0, "forward_grad": 0, "backward": 0,
     "seconds": 0.0}],
    "checks": {"model": {"forward": 5, "forward_grad": 0, "backward": 0, "seconds": 0.2},
               "determinism": {"forward": 15, "forward_grad": 0, "backward": 0, "seconds": 0.3}},
    "diagnostics": {"forward": 40, "forward_grad": 300, "backward": 300, "seconds": 8.0}}


def test_each_stage_scales_with_the_run_times_the_share_that_entered_it():
    """100 images projected from 10: the clean pass 100 images, APGD-CE the 50 that the sample's half-share
    predicts, Square none; the determinism check scales with the run, the check before the run does not, the
    indicators (32 examples) by 32/10 of the sample's.
    Broken by scaling a stage by the sample's entering images instead of their share (x100 too much), by
    scaling the indicators like the checks, or by leaving out the overhead."""
    report = project(COST, n_sample=10, n_run=100, overhead_s=2.0, batch_size=10, workers=1)
    by_stage = {s["stage"]: s for s in report["stages"]}
    assert by_stage["clean"]["images"][1] == 100 and by_stage["apgd-ce"]["images"][1] == 50
    assert by_stage["square"]["images"][1] == 0
    expected = 2.0 + 100 * 0.1 + 50 * 1.0 + 0.2 + 0.3 * 10 + 8.0 * 32 / 10
    assert report["seconds"]["expected"] == pytest.approx(expected)
    assert report["passes"] == {"forward": 100 + 50 * 2 + 5 + 15 * 10 + round(40 * 3.2),
                                "forward_grad": 50 * 100 + round(300 * 3.2), "backward": 50 * 100 + round(300 * 3.2)}


def test_the_range_is_each_shares_clopper_pearson_interval():
    """APGD-CE's share 5 of 10 gives images 100 x the exact binomial interval (scipy's beta quantiles, computed
    here); a stage no sample image reached costs the dearest attack's seconds per image at the top. Broken by a
    range from the expected share alone (low == high), or by an unreached stage costing nothing at the top."""
    report = project(COST, n_sample=10, n_run=100, overhead_s=0.0, batch_size=10, workers=1)
    apgd, square = report["stages"][1], report["stages"][2]
    low, high = beta.ppf(0.025, 5, 6), beta.ppf(0.975, 6, 5)
    assert apgd["images"][0] == pytest.approx(100 * low) and apgd["images"][2] == pytest.approx(100 * high)
    assert square["seconds"][0] == square["seconds"][1] == 0
    assert square["seconds"][2] == pytest.approx(100 * (1 - 0.025 ** (1 / 10)) * 1.0)
    assert report["seconds"]["low"] < report["seconds"]["expected"] < report["seconds"]["high"]


def test_workers_share_a_stage_only_as_far_as_its_chunks_go():
    """A stage's wall time is its busiest worker's: APGD-CE's 50 images are 5 chunks of 10, 3 of them on one of
    two workers (30 s at 1 s per image), the clean pass's 10 chunks 5 each; a stage of one chunk runs on one
    worker. The range stays ordered where a stage's chunks outnumber the workers only at the top. Broken by
    dividing every stage by the worker count, or by dividing by the workers its chunks keep busy (a stage
    would get faster as it grows past one chunk)."""
    two = project(COST, n_sample=10, n_run=100, overhead_s=0.0, batch_size=10, workers=2)
    assert two["stages"][0]["seconds"][1] == pytest.approx(50 * 0.1)
    assert two["stages"][1]["seconds"][1] == pytest.approx(30 * 1.0)
    few = project(COST, n_sample=10, n_run=10, overhead_s=0.0, batch_size=10, workers=2)
    assert few["stages"][1]["seconds"][1] == pytest.approx(5.0)   # 5 images: one chunk, one worker
    wide = project(COST, n_sample=10, n_run=18, overhead_s=0.0, batch_size=10, workers=2)
    low, mid, high = wide["stages"][1]["seconds"]   # 9 images expected (one chunk), up to 15.9 (two)
    assert low <= mid <= high and mid == pytest.approx(9.0) and high == pytest.approx(10.0)


def test_the_default_sample_is_one_percent_and_at_least_a_chunk_per_worker():
    """Broken by a default of one chunk in all (the sample would run on another worker layout than the run)."""
    assert sample_size(10_000, 50, None, workers=1) == 100
    assert sample_size(200, 50, None, workers=2) == 100
    assert sample_size(60, 50, None, workers=2) == 60
    assert sample_size(200, 50, 80) == 80


@pytest.mark.parametrize("args, message", [
    (["--n-examples", "20", "--sample", "30"], "--sample 30 is more than the 20 images of the run"),
    (["--n-examples", "20", "--sample", "0"], "--sample must be at least 1"),
    (["--n-examples", "0"], "--n-examples must be at least 1"),
    (["--n-examples", "20", "--shard", "1/2"], "estimate projects a whole run, not a shard"),
])
def test_bad_input_is_one_line(args, message):
    """Broken by letting a sample larger than the run through (it would evaluate more than the run)."""
    result = CliRunner().invoke(main, ["estimate", "cifar10-linf-tiny", *args])
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and len(lines) == 1 and message in lines[0], result.output


@pytest.mark.filterwarnings("ignore::harness.data.BundledSubsetWarning")
def test_a_sample_of_the_whole_run_projects_exactly_the_runs_passes():
    """When the sample is the run, every share is exact and the projection must be the run's own count, kind by
    kind: the stages, the check before the run and the determinism check. Broken by leaving the checks out of
    the projection."""
    from harness.estimate import estimate
    from harness.evaluation import evaluate

    kw = dict(n_examples=12, batch_size=5, version="custom", attacks=["apgd-ce", "apgd-t"], n_iter=4, workers=1,
              diagnostics=False, progress=False)
    report = estimate("cifar10-linf-tiny", sample=12, **kw)
    total = evaluate("cifar10-linf-tiny", **kw).evaluation.cost["total"]
    assert report["passes"] == {k: total[k] for k in ("forward", "forward_grad", "backward")}
    assert report["n_sample"] == report["n_run"] == 12 and report["seconds"]["expected"] > 0


def test_the_cli_prints_the_table_and_says_how_it_projects():
    """Broken by dropping the line that says how the projection was made."""
    result = CliRunner().invoke(main, ["estimate", "cifar10-linf-tiny", "--n-examples", "10", "--batch-size", "5",
                                       "--sample", "5", "--version", "custom", "--attacks", "apgd-ce",
                                       "--n-iter", "2", "--workers", "1", "--no-diagnostics"])
    assert result.exit_code == 0, result.output
    assert "projected for 10 images" in result.output and "Clopper-Pearson" in result.output
    assert [line.split()[0] for line in result.output.splitlines()[1:3]] == ["clean", "apgd-ce"]
