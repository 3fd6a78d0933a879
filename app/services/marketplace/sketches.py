"""Latency quantiles as KLL sketches (Apache DataSketches `kll_doubles_sketch`), mergeable
across rollup buckets so that any range's percentiles come from a union of stored sketches
plus the raw latencies of the part no rollup holds yet.

Error bound: with k = 200 a KLL sketch answers a quantile query with a normalized rank error
of at most RANK_ERROR (~1.65%, the library's two-sided bound, at 99% confidence): the value
returned for p95 has a true rank between 93.35% and 96.65% of the executions. Small sets
(fewer items than the sketch's first level holds) are answered exactly.
"""

from __future__ import annotations

from collections.abc import Iterable

from datasketches import kll_doubles_sketch

KLL_K = 200
RANK_ERROR: float = kll_doubles_sketch.get_normalized_rank_error(KLL_K, True)


def new_sketch() -> kll_doubles_sketch:
    return kll_doubles_sketch(KLL_K)


def merged_sketch(stored: bytes | None, values: Iterable[float]) -> bytes:
    """A stored sketch (or none) with more latencies added, serialized again."""
    sketch = kll_doubles_sketch.deserialize(stored) if stored else new_sketch()
    for value in values:
        sketch.update(float(value))
    return sketch.serialize()


class Latencies:
    """The union of stored sketches and raw latencies; `quantile(q)` answers within RANK_ERROR."""

    __slots__ = ("_sketch",)

    def __init__(self) -> None:
        self._sketch: kll_doubles_sketch | None = None

    def _target(self) -> kll_doubles_sketch:
        if self._sketch is None:
            self._sketch = new_sketch()
        return self._sketch

    def add_sketch(self, data: bytes | None) -> None:
        if data:
            self._target().merge(kll_doubles_sketch.deserialize(data))

    def add_value(self, value: float) -> None:
        self._target().update(float(value))

    def merge(self, other: Latencies) -> None:
        if other._sketch is not None and not other._sketch.is_empty():
            self._target().merge(other._sketch)

    def quantile(self, rank: float) -> float | None:
        """The latency at normalized rank `rank` (0..1); None without executions."""
        if self._sketch is None or self._sketch.is_empty():
            return None
        return float(self._sketch.get_quantile(rank, True))
