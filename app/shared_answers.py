"""The result cache's shared tier: answers and data versions in Redis, for every process.

With REDIS_URL set, an answer one API process computed serves the others too, and data
versions live in Redis (`INCR` when data changes), so an answer kept there is stale for every
process the moment any of them, or a worker, announces a change. Answers are pickled:
the Redis server is the installation's own, like its database. Any Redis failure is a miss,
never an error: the report is computed as if there were no shared tier.
"""

from __future__ import annotations

import hashlib
import logging
import math
import pickle
from collections.abc import Collection, Hashable, Sequence
from typing import Any

from redis import asyncio as redis

log = logging.getLogger("pulsegraph.result_cache")

PREFIX = "pulsegraph:cache"
TIMEOUT_SECONDS = 0.5  # a slow Redis must not make a report slower than computing it


class SharedAnswers:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url, socket_timeout=TIMEOUT_SECONDS, socket_connect_timeout=TIMEOUT_SECONDS)

    async def versions(self, names: Sequence[str]) -> tuple[int, ...] | None:
        """The shared versions of these names (None when Redis does not answer)."""
        try:
            values = await self._redis.mget([f"{PREFIX}:v:{name}" for name in names])
        except Exception as exc:  # noqa: BLE001 - any failure is a miss
            log.debug("shared versions unavailable (%r)", exc)
            return None
        return tuple(int(v) if v is not None else 0 for v in values)

    async def bump(self, names: Collection[str]) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.incr(f"{PREFIX}:v:{name}")
                await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - answers also expire by age
            log.debug("could not bump shared versions (%r)", exc)

    async def get(self, key: Hashable, versions: tuple[int, ...]) -> tuple[bool, Any]:
        try:
            blob = await self._redis.get(_address(key, versions))
            return (False, None) if blob is None else (True, pickle.loads(blob))  # noqa: S301 - our own Redis
        except Exception as exc:  # noqa: BLE001 - any failure is a miss
            log.debug("shared answer unavailable (%r)", exc)
            return False, None

    async def put(self, key: Hashable, versions: tuple[int, ...], value: Any, max_age: float) -> None:
        try:
            blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
            await self._redis.set(_address(key, versions), blob, ex=max(1, math.ceil(max_age)))
        except Exception as exc:  # noqa: BLE001 - an answer that cannot be shared is kept locally only
            log.debug("could not share an answer (%r)", exc)

    async def close(self) -> None:
        await self._redis.aclose()


def _address(key: Hashable, versions: tuple[int, ...]) -> str:
    """Where an answer for `key` computed at `versions` lives: a new version is a new address."""
    digest = hashlib.sha256(repr((key, versions)).encode()).hexdigest()
    return f"{PREFIX}:a:{digest}"
