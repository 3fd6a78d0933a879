"""Durations in fixed log-spaced buckets: what every API process records per request and
what readers merge across processes and minutes by adding bucket counts.

Bucket 0 holds durations under FIRST_BOUND_MS; bucket i (1 <= i < BUCKETS) holds
[FIRST_BOUND_MS * GROWTH**(i-1), FIRST_BOUND_MS * GROWTH**i), the last one everything above.
A percentile is reported as the geometric middle of the bucket that holds the rank, so for
any duration from FIRST_BOUND_MS up to the last bound the answer is within a factor
sqrt(GROWTH) (about 9%) of the exact nearest-rank percentile.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

GROWTH = 2**0.25
FIRST_BOUND_MS = 0.1
BUCKETS = 96  # the last bound is 0.1 ms * 2**(95/4), about 23 minutes
RELATIVE_ERROR = math.sqrt(GROWTH) - 1
_LOG_GROWTH = math.log(GROWTH)


def bucket_of(duration_ms: float) -> int:
    if duration_ms < FIRST_BOUND_MS:
        return 0
    index = int(math.log(duration_ms / FIRST_BOUND_MS) / _LOG_GROWTH) + 1
    return index if index < BUCKETS else BUCKETS - 1


def bucket_middle_ms(index: int) -> float:
    """The value a bucket stands for: the geometric middle of its bounds."""
    if index == 0:
        return FIRST_BOUND_MS / math.sqrt(GROWTH)
    return FIRST_BOUND_MS * GROWTH ** (index - 0.5)


def percentile_ms(buckets: Sequence[int], quantile: float) -> float | None:
    """The nearest-rank percentile (the smallest duration with at least `quantile` of all
    durations at or below it), read from merged bucket counts; None without durations."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = max(1, math.ceil(quantile * total))
    seen = 0
    for index, count in enumerate(buckets):
        seen += count
        if seen >= rank:
            return bucket_middle_ms(index)
    return bucket_middle_ms(len(buckets) - 1)


def merged(histograms: Sequence[Sequence[int]]) -> list[int]:
    totals = [0] * BUCKETS
    for histogram in histograms:
        for index, count in enumerate(histogram):
            totals[index] += count
    return totals
