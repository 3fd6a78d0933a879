"""This process's database pool, as asyncpg exposes it: size, bounds and idle connections
are public (`Pool.get_*`); callers waiting for a connection are not, so they are counted
from the pool's holder queue (the futures of `acquire()` calls with no connection yet)."""

from __future__ import annotations

from dataclasses import dataclass

from tortoise import connections


@dataclass(frozen=True)
class PoolFigures:
    min_size: int
    max_size: int
    size: int
    in_use: int
    idle: int
    waiting: int


NO_POOL = PoolFigures(0, 0, 0, 0, 0, 0)


def pool_figures() -> PoolFigures:
    try:
        pool = getattr(connections.get("default"), "_pool", None)
    except Exception:  # noqa: BLE001 - no database configured in this process
        return NO_POOL
    if pool is None:
        return NO_POOL
    size, idle = pool.get_size(), pool.get_idle_size()
    return PoolFigures(pool.get_min_size(), pool.get_max_size(), size, max(size - idle, 0), idle, _waiting(pool))


def _waiting(pool: object) -> int:
    queue = getattr(pool, "_queue", None)
    getters = getattr(queue, "_getters", None) or ()
    return sum(not future.done() for future in getters)
