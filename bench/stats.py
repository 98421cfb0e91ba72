"""The few statistics the benchmarks report, each written once."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile of `values` (p in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    """The middle value (the mean of the two middle ones for an even count); NaN for none."""
    ordered = list(values)
    return statistics.median(ordered) if ordered else math.nan


def ratio(numerator: float | None, denominator: float | None) -> float:
    """numerator / denominator; NaN when either is missing or the denominator is zero or NaN,
    so a phase that did not run shows as `nan` in the report, never as a crash or a zero."""
    if numerator is None or denominator is None or not denominator or math.isnan(denominator):
        return math.nan
    return float(numerator) / float(denominator)


def per_unit_ms(cpu_seconds: float | None, count: float | None) -> float:
    """Milliseconds of CPU per unit (request, transfer, transaction); NaN for none counted."""
    return ratio(None if cpu_seconds is None else cpu_seconds * 1000, count)
