"""curves.py: reading a learning curve at a budget, the common point, mean ± sd bands."""

from __future__ import annotations

import math

import pytest

from lstmlab import curves


def test_points_sorted_by_axis_dropping_unusable_records():
    records = [
        {"tokens": 2000, "elapsed_s": 4.0, "bpc": 2.5},
        {"tokens": 1000, "elapsed_s": 2.0, "bpc": 3.0},
        {"tokens": 3000, "elapsed_s": None, "bpc": 2.4},  # no time: on the token axis only
        {"tokens": 4000, "elapsed_s": 8.0, "bpc": math.nan},
        {"tokens": True, "elapsed_s": 9.0, "bpc": 2.0},  # a bool is no count: time axis only
    ]
    assert curves.points(records, "tokens") == [(1000, 3.0), (2000, 2.5), (3000, 2.4)]
    assert curves.points(records, "elapsed_s") == [(2.0, 3.0), (4.0, 2.5), (9.0, 2.0)]


def test_value_at_interpolates_between_validations_and_never_extrapolates():
    curve = [(1000.0, 3.0), (2000.0, 2.0), (4000.0, 1.0)]
    assert curves.value_at(curve, 1500) == pytest.approx(2.5)
    assert curves.value_at(curve, 3000) == pytest.approx(1.5)
    assert curves.value_at(curve, 2000) == 2.0 and curves.value_at(curve, 4000) == 1.0
    assert curves.value_at(curve, 999) is None and curves.value_at(curve, 4001) is None
    assert curves.value_at([], 1) is None
    assert curves.value_at([(5.0, 2.0)], 5) == 2.0


def test_common_point_is_the_shortest_curve_end():
    assert curves.common_point([[(1, 3.0), (8, 2.0)], [(2, 3.0), (5, 2.5)], []]) == 5
    assert curves.common_point([[], []]) is None


def test_mean_sd_is_the_sample_deviation():
    assert curves.mean_sd([]) == (None, None)
    assert curves.mean_sd([2.0]) == (2.0, None)
    mean, sd = curves.mean_sd([1.0, 2.0, 3.0])
    assert mean == 2.0 and sd == pytest.approx(1.0)


def test_band_on_the_span_every_curve_covers():
    a = [(0.0, 4.0), (10.0, 2.0), (20.0, 1.0)]
    b = [(5.0, 4.0), (15.0, 2.0)]
    grid, mean, sd = curves.band([a, b])
    assert grid == [5.0, 10.0, 15.0]  # a's 0 and 20 lie outside b's span
    assert mean == pytest.approx([(3.0 + 4.0) / 2, (2.0 + 3.0) / 2, (1.5 + 2.0) / 2])
    assert sd == pytest.approx([math.sqrt(0.5), math.sqrt(0.5), math.sqrt(0.125)])
    assert curves.band([a, [(30.0, 1.0), (40.0, 0.5)]]) == ([], [], [])  # no shared span
    assert curves.band([]) == ([], [], [])
