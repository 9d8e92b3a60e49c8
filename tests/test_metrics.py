"""The accuracy metrics on tiny arrays whose values are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamcast import metrics

Y = np.array([1.0, 2.0, 3.0, 4.0])
YHAT = np.array([2.0, 2.0, 2.0, 2.0])  # errors -1, 0, 1, 2


def test_mae_is_the_mean_absolute_error():
    assert metrics.mae(Y, YHAT) == pytest.approx((1 + 0 + 1 + 2) / 4)


def test_rmse_is_the_root_of_the_mean_squared_error():
    assert metrics.mse(Y, YHAT) == pytest.approx((1 + 0 + 1 + 4) / 4)
    assert metrics.rmse(Y, YHAT) == pytest.approx(math.sqrt(1.5))


def test_smape_is_200_times_the_error_over_the_sum_of_magnitudes():
    # 200 * 2 / (1 + 3) = 100 at the first point; both zero counts as 0 at the second.
    assert metrics.smape(np.array([1.0, 0.0]), np.array([3.0, 0.0])) == pytest.approx(50.0)


def test_mase_scale_is_the_in_sample_seasonal_naive_error():
    # season 2: |2 - 1|, |4 - 3|, |3 - 2| -> 1
    assert metrics.mase_scale(np.array([1.0, 3.0, 2.0, 4.0, 3.0]), 2) == pytest.approx(1.0)
    assert math.isnan(metrics.mase_scale(np.array([1.0, 2.0]), 2))  # no full season to compare


def test_mase_divides_each_series_by_its_own_scale_and_leaves_out_zero_scales():
    y = np.array([[10.0, 10.0], [5.0, 5.0], [0.0, 0.0]])
    yhat = np.array([[12.0, 14.0], [5.0, 6.0], [9.0, 9.0]])
    scale = np.array([2.0, 0.5, 0.0])  # the third series is left out
    # series 1: 2/2, 4/2 -> 1, 2; series 2: 0/0.5, 1/0.5 -> 0, 2
    assert metrics.mase(y, yhat, scale) == pytest.approx((1 + 2 + 0 + 2) / 4)


def test_pinball_weights_under_and_over_forecasts_by_the_quantile():
    # y = 10; q0.1 forecast 8 (under by 2): 0.1 * 2 = 0.2; q0.9 forecast 12 (over by 2): 0.1 * 2 = 0.2
    q = np.array([[8.0, 12.0]])  # (H=1, Q=2)
    assert metrics.pinball(np.array([10.0]), q, (0.1, 0.9)) == pytest.approx(0.2)
    # q0.9 forecast 8 (under by 2) costs 0.9 * 2
    assert metrics.pinball(np.array([10.0]), np.array([[8.0]]), (0.9,)) == pytest.approx(1.8)


def test_coverage_counts_values_on_the_bounds_as_inside():
    y = np.array([1.0, 5.0, 10.0])
    assert metrics.coverage(y, np.array([0.0, 6.0, 10.0]), np.array([2.0, 7.0, 10.0])) == pytest.approx(2 / 3)
