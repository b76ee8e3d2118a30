"""MMSA regression metrics against values worked out by hand (no scikit-learn in the loop)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from audiorep.scoring import (
    mosi_metrics,
    pearson,
    regression_metrics,
    sims_metrics,
    weighted_f1,
)
from audiorep.errors import ConfigError
from audiorep.train.select import is_better  # the one selection rule, where it lives


def test_weighted_f1_two_classes():
    # class 1: TP 2, FP 1, FN 1 -> F1 2/3 (support 3); class 0: TP 1, FP 1, FN 1 -> F1 1/2 (support 2)
    assert weighted_f1([1, 1, 0, 0, 1], [1, 1, 1, 0, 0]) == pytest.approx((3 * 2 / 3 + 2 * 0.5) / 5)


def test_weighted_f1_class_only_in_predictions():
    # class 0: P 1, R 1/2 -> 2/3; class 1: 1; class 2 (predicted once, never true): F1 0 with weight 0
    assert weighted_f1([0, 2, 1, 1], [0, 0, 1, 1]) == pytest.approx((2 * 2 / 3 + 2 * 1.0) / 4)


def test_weighted_f1_all_wrong_and_perfect():
    assert weighted_f1([0, 0], [1, 1]) == 0.0
    assert weighted_f1([1, 0, 1], [1, 0, 1]) == 1.0
    assert weighted_f1([], []) == 0.0


def test_mosi_metrics_by_hand():
    y = [-3.0, -1.2, 0.0, 0.4, 2.6, 1.5]
    p = [-2.1, 0.3, -0.2, 0.6, 3.5, 1.4]
    m = mosi_metrics(torch.tensor(p), y)
    assert m["Has0_acc_2"] == pytest.approx(4 / 6)
    assert m["Has0_F1"] == pytest.approx((4 * 0.75 + 2 * 0.5) / 6)
    assert m["Non0_acc_2"] == pytest.approx(4 / 5)  # the label-0 sample is dropped
    assert m["Non0_F1"] == pytest.approx((3 * (2 * 0.75 / 1.75) + 2 * (2 / 3)) / 5)
    assert m["Mult_acc_7"] == pytest.approx(2 / 6)  # 3.5 clips to 3; 1.5 rounds to 2 (half to even)
    assert m["Mult_acc_5"] == pytest.approx(3 / 6)
    assert m["MAE"] == pytest.approx(3.8 / 6)
    assert m["Corr"] == pytest.approx(np.corrcoef(p, y)[0, 1])


def test_sims_metrics_by_hand():
    y = [-1.0, -0.5, 0.0, 0.05, 0.8, 1.2]  # 1.2 clips to 1
    p = [-0.9, 0.2, -0.05, 0.15, 0.6, 1.0]
    m = sims_metrics(p, y)
    assert m["Mult_acc_2"] == pytest.approx(5 / 6)  # 0 belongs to the negative class (-1, 0]
    assert m["Mult_acc_3"] == pytest.approx(4 / 6)
    assert m["Mult_acc_5"] == pytest.approx(3 / 6)
    assert m["F1_score"] == pytest.approx((3 * (2 * 0.75 / 1.75) + 3 * 0.8) / 6)
    y_clip = np.clip(y, -1, 1)
    assert m["MAE"] == pytest.approx(np.abs(np.array(p) - y_clip).mean())
    assert m["Corr"] == pytest.approx(np.corrcoef(p, y_clip)[0, 1])


def test_pearson_constant_is_nan_and_dispatch():
    assert math.isnan(pearson(np.ones(4), np.arange(4.0)))
    assert regression_metrics([0.5], [1.0], "synth")["MAE"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="unknown dataset"):
        regression_metrics([0.0], [0.0], "iemocap")
    with pytest.raises(ConfigError, match="differ in size"):
        mosi_metrics([0.0, 1.0], [0.0])
    with pytest.raises(ConfigError, match="NaN"):
        mosi_metrics([float("nan")], [0.0])


def test_is_better():
    assert is_better("MAE", 0.5, 0.6) and not is_better("MAE", 0.7, 0.6)
    assert is_better("Corr", 0.7, 0.6) and is_better("Corr", 0.1, None)
    assert not is_better("Corr", float("nan"), 0.1)
