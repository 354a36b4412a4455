"""Learning curves as data: the value at a budget, the budget every run reached, mean ± sd bands.

A curve is a list of (x, bpc) points, x being training tokens seen or seconds of
step time (`elapsed_s` in metrics.jsonl: training steps only, what
`train.max_minutes` counts; validation and checkpoints are left out). Between
two validations a curve is read by linear interpolation; outside its first and
last validation it has no value (nothing is extrapolated). `fit` validates once
more when a budget ends between validations, so a finished run's curve reaches
its last token.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence

Point = tuple[float, float]  # (tokens or step seconds, bpc)
AXES = ("tokens", "elapsed_s")  # the two budgets a curve can be read at


def points(curve: Iterable[dict], axis: str) -> list[Point]:
    """(x, bpc) from valid records (dicts with `axis` and `bpc`), sorted by x; unusable ones dropped."""
    found = []
    for record in curve:
        x, bpc = record.get(axis), record.get("bpc")
        if _finite(x) and _finite(bpc):
            found.append((float(x), float(bpc)))
    return sorted(found, key=lambda p: p[0])


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def value_at(curve: Sequence[Point], x: float) -> float | None:
    """The curve at `x`, linear between the validations around it; None outside the curve."""
    if not curve or x < curve[0][0] or x > curve[-1][0]:
        return None
    xs = [p[0] for p in curve]
    right = bisect.bisect_left(xs, x)
    if xs[right] == x:
        return curve[right][1]
    (x0, y0), (x1, y1) = curve[right - 1], curve[right]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def common_point(curves: Iterable[Sequence[Point]]) -> float | None:
    """The largest x every curve reached: the smallest last x (None without any curve)."""
    ends = [curve[-1][0] for curve in curves if curve]
    return min(ends) if ends else None


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n - 1); sd is None for fewer than two values."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def band(curves: Sequence[Sequence[Point]]) -> tuple[list[float], list[float], list[float]]:
    """Mean and sd of several curves on a common grid: every x any of them validated at,
    within the span all of them cover. Empty lists when the curves share no span."""
    curves = [c for c in curves if c]
    if not curves:
        return [], [], []
    start, stop = max(c[0][0] for c in curves), min(c[-1][0] for c in curves)
    grid = sorted({x for c in curves for x, _ in c if start <= x <= stop})
    means, sds = [], []
    for x in grid:
        mean, sd = mean_sd([value_at(c, x) for c in curves])
        means.append(mean)
        sds.append(sd or 0.0)
    return grid, means, sds


__all__ = ["AXES", "Point", "band", "common_point", "mean_sd", "points", "value_at"]
