"""Cached report answers, good until the data under them changes.

Every report (`app.runners.QueryRunner`) may keep its answer here under a key made of its
kind, its tenant and its inputs. An answer is served again only while

- the data versions of its tenant are the ones it was computed at: the worker bumps an
  organization's version when it commits a batch with that organization's events, and any
  mutation other than ingestion bumps every version (settings, costs, rules, rates feed the
  reports too);
- it is younger than its runner's `max_age` (moving ranges drift, and a lost invalidation
  message must not keep an answer for long);
- this process hears about versions bumped elsewhere: the bumps travel on the event bus
  (`PROCESSED_CHANNEL`), so while the bus is down nothing is served from the cache.

A process bumps its own versions at once (the in-process worker, the mutation that just
ran) and tells the others through the bus. Answers live in this process's memory, at most
`max_entries` of them, least recently used first out. With REDIS_URL set they are also shared
through Redis (`app.shared_answers`), where the data versions live too: an answer computed by
one process serves the others, and an announced change makes it stale for all of them.
Ingestion bumps only its own process's versions: without a shared tier its next answer
counts the open hour's raw events at once; with one, a shared answer may be served until the
worker has processed them (as in every other process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Collection, Hashable
from dataclasses import dataclass
from typing import Any

from app.eventbus import SubscriberDropped
from app.shared_answers import SharedAnswers

log = logging.getLogger("pulsegraph.result_cache")

PROCESSED_CHANNEL = "pg.processed"  # {"organizations": [...]} or {"all": true}
ALL = "*all"  # moved when anything may have changed for anyone (settings, rules, an outage)
ANY = "*any"  # moved by every change: what platform-wide answers depend on
DEFAULT_MAX_ENTRIES = 2048


@dataclass(frozen=True, slots=True)
class Stamp:
    """The data versions an answer was computed at: this process's, and the shared tier's."""

    local: tuple[int, ...]
    shared: tuple[int, ...] | None

    @property
    def full(self) -> tuple[int, ...]:
        return self.local + (self.shared or ())


def _names(tenants: Collection[str]) -> tuple[str, ...]:
    """The versions an answer depends on: everything's, and its organizations' (a
    platform-wide answer: any organization's)."""
    return (ALL, *(tenants or (ANY,)))


@dataclass(frozen=True, slots=True)
class _Entry:
    value: Any
    versions: tuple[int, ...]
    stored_at: float


class ResultCache:
    def __init__(self, *, max_entries: int = DEFAULT_MAX_ENTRIES, enabled: bool = True) -> None:
        self.max_entries = max_entries
        self.enabled = enabled
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._versions: dict[str, int] = {}
        self._bus: Any = None
        self.shared: SharedAnswers | None = None
        self._outage = False
        self._listener: asyncio.Task[None] | None = None

    # -- versions ---------------------------------------------------------------------------

    def versions(self, tenants: Collection[str]) -> tuple[int, ...]:
        """The data versions an answer for these organizations depends on; with none, a
        platform-wide answer, on every organization's."""
        return tuple(self._versions.get(t, 0) for t in _names(tenants))

    def bump(self, organizations: Collection[uuid.UUID | str] | None) -> None:
        """Data of these organizations changed (None: anyone's). Answers computed before are stale."""
        for key in (ANY, *(str(org) for org in organizations or ())) if organizations is not None else (ALL,):
            self._versions[key] = self._versions.get(key, 0) + 1
        if organizations is None:
            self._entries.clear()

    async def announce(self, organizations: Collection[uuid.UUID | str] | None, bus: Any = None) -> None:
        """Bump here, and tell the other processes."""
        self.bump(organizations)
        await self.tell_others(organizations, bus)

    async def tell_others(self, organizations: Collection[uuid.UUID | str] | None, bus: Any = None) -> None:
        """Move the shared versions (Redis) and tell the other processes through the bus (this
        process's, or `bus` in a worker process): best effort, as their answers also expire by
        age, and none are served while their bus is down."""
        if self.shared is not None:
            await self.shared.bump([ALL] if organizations is None else [ANY, *(str(o) for o in organizations)])
        bus = bus or self._bus
        if bus is None:
            return
        message = {"all": True} if organizations is None else {"organizations": sorted(str(o) for o in organizations)}
        try:
            if await bus.followed([PROCESSED_CHANNEL]):
                await bus.publish(PROCESSED_CHANNEL, message)
        except Exception as exc:  # noqa: BLE001 - BusUnavailable and the like: answers expire by age
            log.debug("could not announce changed data (%r)", exc)

    # -- answers ----------------------------------------------------------------------------

    async def lookup(self, key: Hashable, tenants: Collection[str], max_age: float) -> tuple[bool, Any, Stamp | None]:
        """(True, answer, None) when a fresh answer is kept here or in the shared tier; else
        (False, None, stamp): the versions to `store` the answer about to be computed with,
        read before its data is (None: do not keep it)."""
        if not self._usable():
            return False, None, None
        shared = await self.shared.versions(_names(tenants)) if self.shared is not None else None
        stamp = Stamp(self.versions(tenants), shared)
        entry = self._entries.get(key)
        if entry is not None and entry.versions == stamp.full and time.monotonic() - entry.stored_at <= max_age:
            self._entries.move_to_end(key)
            self.hits += 1
            return True, entry.value, None
        if shared is not None and self.shared is not None:
            found, value = await self.shared.get(key, shared)
            if found:
                self._keep(key, value, stamp.full)
                self.hits += 1
                return True, value, None
        self.misses += 1
        return False, None, stamp

    async def store(self, key: Hashable, value: Any, stamp: Stamp, max_age: float) -> None:
        """Keep an answer computed from data at `stamp`, here and in the shared tier."""
        self._keep(key, value, stamp.full)
        if stamp.shared is not None and self.shared is not None:
            await self.shared.put(key, stamp.shared, value, max_age)

    def _keep(self, key: Hashable, value: Any, versions: tuple[int, ...]) -> None:
        self._entries[key] = _Entry(value, versions, time.monotonic())
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def _usable(self) -> bool:
        """Not while the bus is down (bumps from elsewhere would be missed), and everything
        kept before an outage is dropped once it is back."""
        if self._bus is not None and not self._bus.connected:
            self._outage = True
            return False
        if self._outage:
            self._outage = False
            self.bump(None)
        return self.enabled

    # -- hearing about other processes -------------------------------------------------------

    async def listen(self, bus: Any) -> None:
        """Follow the bus's announcements of changed data, for as long as the process runs."""
        self._bus = bus
        self._listener = asyncio.create_task(self._follow(bus), name="pulsegraph-result-cache")

    def share(self, redis_url: str) -> None:
        """Keep answers and data versions in Redis too (REDIS_URL), for every process."""
        self.shared = SharedAnswers(redis_url)

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        self._bus = None
        shared, self.shared = self.shared, None
        if shared is not None:
            await shared.close()
        if listener is not None:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _follow(self, bus: Any) -> None:
        while True:
            try:
                async with bus.subscribe(PROCESSED_CHANNEL) as subscription:
                    async for message in subscription:
                        self.bump(None if message.get("all") else message.get("organizations", ()))
            except SubscriberDropped:  # fell behind: some bumps are lost, so everything is stale
                self.bump(None)


_cache = ResultCache()


def result_cache() -> ResultCache:
    """This process's cache (one per process, like the event bus)."""
    return _cache
