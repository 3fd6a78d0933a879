"""The per-process API timing recorder: each GraphQL operation and HTTP request adds its
duration to an in-memory cell for its minute (a few dict and list operations, no I/O); a
background task writes the cells that changed to `api_timings` every few seconds, and the
process's database pool to `api_processes`, then tells live subscribers on the bus.

A process writes its own running totals for a minute (overwriting them), so a flush that
fails is simply repeated and readers add up processes and minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.database import connection
from app.services.system_health.histogram import BUCKETS, bucket_of
from app.services.system_health.pool import PoolFigures, pool_figures
from app.vocabulary import API_TIMINGS_CHANNEL

log = logging.getLogger("pulsegraph.system_health")

SLOW_MS = 1000.0
RETENTION_DAYS = 8  # the longest window is 7 days
CellKey = tuple[int, str, str, uuid.UUID | None]  # (minute since the epoch, kind, name, organization)


@dataclass(slots=True)
class Cell:
    count: int = 0
    errors: int = 0
    slow: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)


class ApiTimingRecorder:
    """One per API process (`recorder()`); disabled, `record` returns at once."""

    def __init__(self) -> None:
        self.enabled = False
        self.process = _process_name()
        self.started_at = datetime.now(UTC)
        self._cells: dict[CellKey, Cell] = {}
        self._dirty: set[CellKey] = set()
        self._task: asyncio.Task[None] | None = None
        self._last_purge = 0.0

    def record(self, kind: str, name: str, duration_ms: float, *, error: bool,
               organization_id: uuid.UUID | None = None) -> None:  # fmt: skip
        if not self.enabled:
            return
        key = (int(time.time() // 60), kind, name, organization_id)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = Cell()
        cell.count += 1
        cell.total_ms += duration_ms
        if duration_ms > cell.max_ms:
            cell.max_ms = duration_ms
        if error:
            cell.errors += 1
        if duration_ms >= SLOW_MS:
            cell.slow += 1
        cell.buckets[bucket_of(duration_ms)] += 1
        self._dirty.add(key)

    async def flush(self, bus: Any | None = None) -> int:
        """Write the changed cells and this process's pool; returns the cells written."""
        keys = list(self._dirty)
        self._dirty.clear()
        rows = [_row(self.process, key, self._cells[key]) for key in keys]
        try:
            async with connection() as conn:
                if rows:
                    await conn.executemany(UPSERT_TIMING, rows)
                await conn.execute(UPSERT_PROCESS, *self._process_row(pool_figures()))
                await self._purge_if_due(conn)
        except BaseException:
            self._dirty.update(keys)
            raise
        self._forget_finished_minutes()
        if rows and bus is not None:
            with contextlib.suppress(Exception):  # live figures are a courtesy; the table has them
                await bus.publish(API_TIMINGS_CHANNEL, {"process": self.process, "cells": len(rows)})
        return len(rows)

    def start(self, *, interval_seconds: float, bus: Any | None) -> None:
        """Named at start, not at import: an API process forked after the import is another process."""
        self.process, self.started_at = _process_name(), datetime.now(UTC)
        self.enabled = True
        self._task = asyncio.create_task(self._flush_forever(interval_seconds, bus), name="pulsegraph-api-timings")

    async def stop(self, bus: Any | None = None) -> None:
        """Flush what is left (a process that stops keeps its last seconds) and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.enabled:
            with contextlib.suppress(Exception):
                await self.flush(bus)
        self.enabled = False

    async def _flush_forever(self, interval_seconds: float, bus: Any | None) -> None:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await self.flush(bus)
            except Exception as exc:  # noqa: BLE001 - kept in memory and written next time
                log.warning("writing API timings failed (%r); retrying at the next flush", exc)

    def _forget_finished_minutes(self) -> None:
        current = int(time.time() // 60)
        for key in [k for k in self._cells if k[0] < current and k not in self._dirty]:
            del self._cells[key]

    def _process_row(self, pool: PoolFigures) -> tuple[Any, ...]:
        return (self.process, socket.gethostname(), os.getpid(), self.started_at, pool.min_size, pool.max_size,
                pool.size, pool.in_use, pool.idle, pool.waiting)  # fmt: skip

    async def _purge_if_due(self, conn: Any) -> None:
        if time.monotonic() - self._last_purge < 3600:
            return
        self._last_purge = time.monotonic()
        await conn.execute(PURGE_TIMINGS, RETENTION_DAYS)
        await conn.execute(PURGE_PROCESSES)


def _process_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _row(process: str, key: CellKey, cell: Cell) -> tuple[Any, ...]:
    minute, kind, name, organization_id = key
    return (datetime.fromtimestamp(minute * 60, UTC), process, kind, name, organization_id, cell.count, cell.errors,
            cell.slow, cell.total_ms, cell.max_ms, cell.buckets)  # fmt: skip


UPSERT_TIMING = """
INSERT INTO api_timings (minute, process, kind, name, organization_id, count, errors, slow, total_ms, max_ms, buckets)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (minute, process, kind, name, organization_id) DO UPDATE SET
    count = excluded.count, errors = excluded.errors, slow = excluded.slow, total_ms = excluded.total_ms,
    max_ms = excluded.max_ms, buckets = excluded.buckets
"""
UPSERT_PROCESS = """
INSERT INTO api_processes (process, host, pid, started_at, seen_at, pool_min, pool_max, pool_size, pool_in_use,
                           pool_idle, pool_waiting)
VALUES ($1, $2, $3, $4, now(), $5, $6, $7, $8, $9, $10)
ON CONFLICT (process) DO UPDATE SET
    seen_at = now(), pool_min = excluded.pool_min, pool_max = excluded.pool_max, pool_size = excluded.pool_size,
    pool_in_use = excluded.pool_in_use, pool_idle = excluded.pool_idle, pool_waiting = excluded.pool_waiting
"""
PURGE_TIMINGS = "DELETE FROM api_timings WHERE minute < now() - make_interval(days => $1)"
PURGE_PROCESSES = "DELETE FROM api_processes WHERE seen_at < now() - interval '1 day'"

_recorder = ApiTimingRecorder()


def recorder() -> ApiTimingRecorder:
    return _recorder
