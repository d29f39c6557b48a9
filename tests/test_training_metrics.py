"""training.metrics: an epoch's totals, its record and its one-line summary."""

from __future__ import annotations

import math

import torch

from training.metrics import EpochStats, batch_totals, epoch_line


def test_batch_totals_count_hits_only_where_they_exist():
    y = torch.tensor([0, 1, 1])
    right, wrong = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), torch.tensor([[0.0, 1.0]] * 3)
    assert batch_totals(torch.tensor(0.5), right, wrong, y).tolist() == [1.5, 3.0, 2.0, 3.0]
    no_clean = batch_totals(torch.tensor(0.5), None, wrong, y)
    assert math.isnan(no_clean[1]) and no_clean[2] == 2.0
    soft = batch_totals(torch.tensor(0.5), right, wrong, torch.eye(2)[y])  # CutMix labels: no hits
    assert math.isnan(soft[1]) and math.isnan(soft[2]) and soft[3] == 3.0


def test_epoch_stats_sum_batches_and_give_percent_or_none():
    stats = EpochStats()
    stats.add(torch.tensor([1.5, 3.0, 2.0, 3.0], dtype=torch.float64))
    stats.add(torch.tensor([0.5, 0.0, 0.0, 1.0], dtype=torch.float64))
    assert stats.train_record() == {"train_loss": 0.5, "train_clean_acc": 75.0, "train_adv_acc": 50.0}
    assert EpochStats(**stats.as_dict()) == stats
    stats.add(torch.tensor([0.0, float("nan"), 1.0, 1.0], dtype=torch.float64))
    assert stats.train_record()["train_clean_acc"] is None


def test_epoch_line_names_only_the_accuracies_measured():
    record = {"epoch": 2, "train_loss": 1.23456, "train_adv_acc": None}
    assert epoch_line(record, 10) == "epoch 3/10: loss 1.2346"
    record.update(train_adv_acc=40.06, holdout_clean_acc=60.0, holdout_robust_acc=30.04, test_clean_acc=61.0)
    assert epoch_line(record, 10) == ("epoch 3/10: loss 1.2346, train adv acc 40.1%, "
                                      "held-out clean 60.0% / PGD-CW 30.0%, test clean 61.0%")
    record["test_robust_acc"] = 29.0
    assert epoch_line(record, 10).endswith("test clean 61.0% / PGD-CW 29.0%")
