"""Unique counts as HyperLogLog sketches (Apache DataSketches): made, estimated, merged.

Unique visitors and inquirers cannot be added up across buckets, so every rollup row keeps a
sketch of its ids; a report estimates the union of the sketches in its range together with
the raw ids of the part no rollup holds yet. The estimate of one stored sketch on its own
(a day of a daily series, a live snapshot) skips the union: see `register_estimate`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from datasketches import hll_sketch, hll_union, tgt_hll_type

# lg_k=14: ~0.8% relative standard error for a union (2% is 2.5 sigma); small sets stay in
# the sketch's exact list/set modes. HLL_4 packs the same registers as HLL_8 in half the
# bytes (a dense sketch is 8 KiB, not 16): the worker rewrites a sketch row per profile and
# grain in every batch, and those writes were the largest part of its time. Sketches of
# either type merge; rows written as HLL_8 before stay so until they are rebuilt.
HLL_LG_K = 14
HLL_TYPE = tgt_hll_type.HLL_4


def new_sketch() -> hll_sketch:
    return hll_sketch(HLL_LG_K, HLL_TYPE)


# DataSketches HLL serialization, the preamble: byte 0 its length in 4-byte words, 1 the
# serial version, 2 the family, 3 lg_k, 5 flags, 6 the coupon count of a LIST sketch, 7 the
# mode (bits 0-1: LIST 0, SET 1, HLL 2); bytes 8-11 the coupon count of a SET sketch (little
# endian). A compact coupon image is the preamble and then its coupons, 4 bytes each. Flag
# 16 marks a sketch whose ids did not all arrive through this sketch (a union result), so
# `get_estimate()` uses the estimator over its registers instead of the HIP accumulator.
_HLL_FLAGS_BYTE = 5
_HLL_COMPACT = 8
_HLL_OUT_OF_ORDER = 16
_HLL_MODE_BYTE = 7
_HLL_MODE_BITS = 3
_LIST, _SET = 0, 1
_PREAMBLE = struct.Struct("<3sBxBBB")  # (words, version, family), lg_k, flags, list count, mode
_SET_COUNT = struct.Struct("<I")
_COUPON_PREAMBLES = (b"\x02\x01\x07", b"\x03\x01\x07")  # of a LIST, of a SET sketch
CouponKey = tuple[int, int, int]  # (lg_k, mode, coupon count)
coupon_estimates: dict[CouponKey, int] = {}  # the library's estimate per key: at most one entry per count


def register_estimate(data: bytes) -> int:
    """The distinct count of one stored sketch, from its registers alone.

    A dense sketch's own estimate (HIP) depends on the order its ids were added, that is on
    how the worker happened to batch them; the register estimator gives the same number for
    the same visitors however they were processed, and a rebuild agrees. It is what a union
    of this one sketch reports, but a union first widens all 16,384 registers (~80 µs), so
    a daily series paid that per day. Marking the serialized sketch out-of-order makes the
    library use the same estimator on the sketch itself (~3 µs for a dense sketch);
    `test_profile_analytics` checks both agree from the sparse to the dense modes.

    A sketch of up to 1,536 ids is still a list or set of coupons, whose estimate depends
    only on lg_k and how many coupons there are, but deserializing it rebuilds the set
    (~30 µs at 1,000 ids). So the library's estimate of the first image with a given count
    is remembered and answers for every later one: one entry per count a coupon sketch can
    hold (1,537 for lg_k 14)."""
    key = coupon_key(data)
    if key is None:
        return _library_estimate(data)
    estimate = coupon_estimates.get(key)
    if estimate is None:
        estimate = coupon_estimates[key] = _library_estimate(data)
    return estimate


def coupon_key(data: bytes) -> CouponKey | None:
    """The key of a compact LIST or SET image whose length matches its count; None for
    anything else (dense, updatable or unexpected images take the library's path)."""
    if len(data) < 8 or data[_HLL_MODE_BYTE] & _HLL_MODE_BITS not in (_LIST, _SET):
        return None
    head, lg_k, flags, count, mode = _PREAMBLE.unpack_from(data)
    mode &= _HLL_MODE_BITS
    if mode == _SET:
        if len(data) < 12:
            return None
        (count,) = _SET_COUNT.unpack_from(data, 8)
    if head != _COUPON_PREAMBLES[mode] or not flags & _HLL_COMPACT or len(data) != 4 * (head[0] + count):
        return None
    return lg_k, mode, count


def _library_estimate(data: bytes) -> int:
    flagged = bytearray(data)
    flagged[_HLL_FLAGS_BYTE] |= _HLL_OUT_OF_ORDER
    return round(hll_sketch.deserialize(bytes(flagged)).get_estimate())


class Uniques:
    """A union of stored sketches and raw ids; `estimate()` is the distinct count."""

    def __init__(self) -> None:
        self._union: hll_union | None = None
        self._only: bytes | None = None  # the one stored sketch so far, still serialized
        self._raw: hll_sketch | None = None

    def add_sketch(self, data: bytes | None) -> None:
        if not data:
            return
        if self._union is None and self._only is None:
            self._only = data
            return
        self._union_of_stored().update(hll_sketch.deserialize(data))

    def add_ids(self, ids: Iterable[str] | None) -> None:
        for visitor in ids or ():
            if self._raw is None:
                self._raw = new_sketch()
            self._raw.update(visitor)

    def estimate(self) -> int:
        if self._raw is None:
            if self._only is not None:
                return register_estimate(self._only)
            return round(self._union.get_estimate()) if self._union is not None else 0
        if self._union is None and self._only is None:
            return round(self._raw.get_estimate())
        union = self._union_of_stored()
        union.update(self._raw)
        self._raw = None
        return round(union.get_estimate())

    def _union_of_stored(self) -> hll_union:
        """The union, made when a second source arrives (a single sketch needs none)."""
        if self._union is None:
            self._union = hll_union(HLL_LG_K)
        if self._only is not None:
            self._union.update(hll_sketch.deserialize(self._only))
            self._only = None
        return self._union


def conversion_rate(inquirers: int, visitors: int) -> float:
    """Inquirers per visitor, from two separate estimates: capped at 1, since the inquirers'
    estimate can come out above the visitors'."""
    if visitors <= 0:
        return 0.0
    return min(1.0, inquirers / visitors)
