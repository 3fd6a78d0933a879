"""Per-credential ingestion rate limit: a token bucket per key, in process memory.

A bucket refills at `rate` events per second up to `burst`. A batch costs one token per
event and is refused whole when the bucket is short, with the seconds to wait, so a
client can back off instead of losing part of a batch silently. Limits are per API
process; behind N replicas a key gets N times the rate, which is what a per-replica
guard against a runaway client needs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(max(burst, rate))
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str, cost: int) -> None:
        """Spend `cost` tokens from `key`'s bucket or raise RATE_LIMITED with a retry hint."""
        if self.rate <= 0:
            return
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=self.burst, updated=now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if cost > bucket.tokens:
            wait = (cost - bucket.tokens) / self.rate
            raise RateLimited(
                f"ingestion rate limit of {int(self.rate)} events/s exceeded; retry in {wait:.2f}s",
                retryAfterSeconds=round(wait, 2),
            )
        bucket.tokens -= cost
