"""The worker's effects of marketplace events: service executions into the hour, day and
month rollups (`service_rollups`), searches, views and conversions into theirs
(`marketplace_rollups`), and today's counters pushed live after commit.

Exactly once: the rollups are written inside the batch's transaction, which also marks the
batch's outbox rows processed (and the outbox is keyed by event id), so a re-run batch is
never applied twice. Rows are created, then locked in primary-key order, then merged in
Python (sketches cannot be merged in SQL), so concurrent workers queue instead of
deadlocking. Searches, views and conversions are plain counters: one upsert in key order
(conversions also reach the ledger, through the revenue consumer).
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
import orjson

from app.consumers import Batch, Consumer
from app.database import connection
from app.live_messages import LiveMessage, MarketplaceCountersMessage
from app.services.claimed_events import CLAIMED_EVENTS, keys_of
from app.services.marketplace.sketches import merged_sketch
from app.services.marketplace.vocabulary import normalized_query
from app.services.revenue.counters import counters as revenue_counters
from app.timebuckets import day_start, hour_start, local_date, local_midnight, month_start, utcnow
from app.vocabulary import (
    MARKETPLACE_CONVERTED,
    MARKETPLACE_EVENT_TYPES,
    MARKETPLACE_SEARCHED,
    MARKETPLACE_VIEWED,
    SERVICE_EXECUTED,
)

ROLLUP_GRAINS = ("hour", "day", "month")
NO_CATEGORY = ""  # the rollups' category of executions sent without one

_EXECUTIONS = f"""
SELECT e.organization_id, e.occurred_at, e.properties ->> 'serviceId' AS service_id,
       COALESCE(e.properties ->> 'category', '') AS category, (e.properties ->> 'latencyMs')::float8 AS latency_ms,
       (e.properties ->> 'success')::boolean AS success, e.properties ->> 'errorCode' AS error_code
FROM {CLAIMED_EVENTS}
WHERE e.type = '{SERVICE_EXECUTED}'
"""
_ENSURE = """
INSERT INTO service_rollups (organization_id, grain, bucket_start, service_id, category)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[])
ORDER BY 1, 2, 3, 4, 5
ON CONFLICT DO NOTHING
"""
_LOCK = """
SELECT r.organization_id, r.grain, r.bucket_start, r.service_id, r.category, r.latency_kll, r.error_codes
FROM service_rollups r
JOIN unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[]) AS k(o, g, b, s, c)
  ON r.organization_id = k.o AND r.grain = k.g AND r.bucket_start = k.b AND r.service_id = k.s AND r.category = k.c
ORDER BY r.organization_id, r.grain, r.bucket_start, r.service_id, r.category
FOR UPDATE OF r
"""
_UPDATE = """
UPDATE service_rollups r SET
    executions = r.executions + u.executions,
    errors = r.errors + u.errors,
    latency_sum_ms = r.latency_sum_ms + u.latency_sum_ms,
    latency_kll = u.latency_kll,
    error_codes = u.error_codes,
    updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::bigint[], $7::bigint[],
            $8::float8[], $9::bytea[], $10::jsonb[])
     AS u(o, g, b, s, c, executions, errors, latency_sum_ms, latency_kll, error_codes)
WHERE r.organization_id = u.o AND r.grain = u.g AND r.bucket_start = u.b AND r.service_id = u.s AND r.category = u.c
"""

RollupKey = tuple[uuid.UUID, str, datetime, str, str]  # the table's primary key

_MARKET_TYPES = f"('{MARKETPLACE_SEARCHED}', '{MARKETPLACE_VIEWED}', '{MARKETPLACE_CONVERTED}')"
# A marketplace event's columns as the rollups and the reports' raw part read them.
MARKET_COLUMNS = """e.occurred_at AS at, e.type, e.properties ->> 'query' AS query, e.properties ->> 'serviceId' AS service_id,
       COALESCE(e.properties ->> 'category', '') AS category, (e.properties ->> 'resultsCount')::bigint AS results,
       e.amount_minor, rtrim(e.currency) AS currency"""
_MARKET_EVENTS = f"""
SELECT e.organization_id, {MARKET_COLUMNS}
FROM {CLAIMED_EVENTS}
WHERE e.type IN {_MARKET_TYPES}
"""
_UPSERT_MARKET = """
INSERT INTO marketplace_rollups AS r
    (organization_id, grain, bucket_start, kind, key, category, currency, events, zero_results, amount_minor)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::bigint[], $9::bigint[], $10::bigint[])
ORDER BY 1, 2, 3, 4, 5, 6, 7
ON CONFLICT (organization_id, grain, bucket_start, kind, key, category, currency)
DO UPDATE SET events = r.events + EXCLUDED.events, zero_results = r.zero_results + EXCLUDED.zero_results,
              amount_minor = r.amount_minor + EXCLUDED.amount_minor
"""
KIND_OF = {MARKETPLACE_SEARCHED: "search", MARKETPLACE_VIEWED: "view", MARKETPLACE_CONVERTED: "conversion"}


@dataclass(frozen=True, slots=True)
class MarketFact:
    """One searched, viewed or converted event as the rollups count it."""

    kind: str  # search | view | conversion
    key: str  # the normalized query, or the service id
    category: str  # '' without one
    currency: str  # '' but for conversions
    zero_results: int
    amount_minor: int


def market_fact(row: Mapping[str, Any]) -> MarketFact:
    """The rollup key and counters of one event (a row with MARKET_COLUMNS)."""
    kind = KIND_OF[row["type"]]
    if kind == "search":
        return MarketFact(kind, normalized_query(row["query"]), row["category"], "", int(row["results"] == 0), 0)
    if kind == "conversion":
        return MarketFact(kind, row["service_id"], row["category"], row["currency"] or "", 0, row["amount_minor"] or 0)
    return MarketFact(kind, row["service_id"], row["category"], "", 0, 0)


@dataclass(slots=True)
class _Delta:
    """What a batch adds to one rollup row."""

    executions: int = 0
    errors: int = 0
    latency_sum_ms: float = 0.0
    latencies: list[float] = field(default_factory=list)
    error_codes: Counter[str] = field(default_factory=Counter)


@dataclass(slots=True)
class MarketplaceEffects:
    """The organizations whose marketplace events a batch applied (for the live counters)."""

    organizations: set[uuid.UUID] = field(default_factory=set)


async def apply_executions(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add a claimed batch's service executions to the rollups, in the caller's transaction."""
    executions = [r for r in rows if r["type"] == SERVICE_EXECUTED]
    if not executions:
        return
    found = await conn.fetch(_EXECUTIONS, *keys_of(executions))
    zones = await _timezones(conn, {r["organization_id"] for r in found})
    deltas = execution_deltas([r for r in found if r["organization_id"] in zones], zones)
    if deltas:
        await write_deltas(conn, deltas)


async def apply_market_events(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Add a claimed batch's searches, views and conversions to the rollups, in the caller's transaction."""
    market = [r for r in rows if r["type"] in KIND_OF]
    if not market:
        return
    found = await conn.fetch(_MARKET_EVENTS, *keys_of(market))
    zones = await _timezones(conn, {r["organization_id"] for r in found})
    added: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in found:
        if row["organization_id"] not in zones:
            continue
        fact = market_fact(row)
        buckets = rollup_buckets(zones[row["organization_id"]], _quarter_hour(row["at"]))
        for grain, bucket in zip(ROLLUP_GRAINS, buckets, strict=True):
            counters = added[(row["organization_id"], grain, bucket, fact.kind, fact.key, fact.category, fact.currency)]
            counters[0] += 1
            counters[1] += fact.zero_results
            counters[2] += fact.amount_minor
    if added:
        keys = sorted(added)
        await conn.execute(
            _UPSERT_MARKET, *([k[i] for k in keys] for i in range(7)), *([added[k][i] for k in keys] for i in range(3))
        )


def execution_deltas(executions: Iterable[Mapping[str, Any]], zones: Mapping[uuid.UUID, str]) -> dict[RollupKey, _Delta]:
    """What executions (organization_id, occurred_at, service_id, category, latency_ms, success,
    error_code) add to each rollup row of their organization's zone."""
    deltas: dict[RollupKey, _Delta] = defaultdict(_Delta)
    for row in executions:
        buckets = rollup_buckets(zones[row["organization_id"]], _quarter_hour(row["occurred_at"]))
        for grain, bucket in zip(ROLLUP_GRAINS, buckets, strict=True):
            delta = deltas[(row["organization_id"], grain, bucket, row["service_id"], row["category"])]
            delta.executions += 1
            delta.latency_sum_ms += row["latency_ms"]
            delta.latencies.append(row["latency_ms"])
            if not row["success"]:
                delta.errors += 1
                delta.error_codes[row["error_code"] or ""] += 1
    return deltas


async def write_deltas(conn: asyncpg.Connection, deltas: dict[RollupKey, _Delta]) -> None:
    """Create the rows, lock them in key order, merge the sketches and add the counters."""
    keys = sorted(deltas)
    columns = [[k[i] for k in keys] for i in range(5)]
    await conn.execute(_ENSURE, *columns)
    stored = {tuple(r[:5]): r for r in await conn.fetch(_LOCK, *columns)}
    sketches, codes = [], []
    for key in keys:
        row, delta = stored[key], deltas[key]
        sketches.append(merged_sketch(row["latency_kll"], delta.latencies))
        codes.append(orjson.dumps(dict(Counter(orjson.loads(row["error_codes"])) + delta.error_codes)).decode())
    await conn.execute(
        _UPDATE, *columns, [deltas[k].executions for k in keys], [deltas[k].errors for k in keys],
        [deltas[k].latency_sum_ms for k in keys], sketches, codes,
    )  # fmt: skip


def _quarter_hour(instant: datetime) -> datetime:
    instant = instant.astimezone(UTC)
    return instant.replace(minute=instant.minute - instant.minute % 15, second=0, microsecond=0)


@lru_cache(maxsize=65_536)
def rollup_buckets(timezone: str, quarter: datetime) -> tuple[datetime, datetime, datetime]:
    """(local hour, day and month start) of every instant of a UTC quarter hour: no local
    hour, day or month boundary of a current zone falls inside one, so the zone arithmetic
    is done once per quarter hour instead of per event."""
    return hour_start(quarter, timezone), day_start(quarter, timezone), month_start(quarter, timezone)


async def _timezones(conn: asyncpg.Connection, organizations: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not organizations:
        return {}
    rows = await conn.fetch("SELECT id, timezone FROM organizations WHERE id = ANY($1::uuid[])", list(organizations))
    return {r["id"]: r["timezone"] for r in rows}


# -- today's counters ---------------------------------------------------------------------

_TODAY_EXECUTIONS = """
SELECT COALESCE(sum(executions), 0)::bigint AS executions, COALESCE(sum(errors), 0)::bigint AS errors
FROM service_rollups WHERE organization_id = $1 AND grain = 'day' AND bucket_start = $2
"""
_TODAY_EVENTS = """
SELECT COALESCE(sum(events) FILTER (WHERE kind = 'search'), 0)::bigint AS searches,
       COALESCE(sum(events) FILTER (WHERE kind = 'view'), 0)::bigint AS views,
       COALESCE(sum(events) FILTER (WHERE kind = 'conversion'), 0)::bigint AS conversions
FROM marketplace_rollups WHERE organization_id = $1 AND grain = 'day' AND bucket_start = $2
"""


async def today_counters(conn: asyncpg.Connection, organization_id: uuid.UUID, timezone: str) -> MarketplaceCountersMessage:
    """Today's counters (the organization's local day): executions, searches, views and
    conversions as the worker rolled them up, revenue from the ledger."""
    now = utcnow()
    start = day_start(now, timezone)
    end = local_midnight(local_date(now, timezone) + timedelta(days=1), timezone)
    executed = await conn.fetchrow(_TODAY_EXECUTIONS, organization_id, start)
    seen = await conn.fetchrow(_TODAY_EVENTS, organization_id, start)
    money = await revenue_counters(conn, organization_id, timezone)
    return MarketplaceCountersMessage(
        organization_id=organization_id, start=start, end=end, executions=executed["executions"],
        errors=executed["errors"], searches=seen["searches"], views=seen["views"], conversions=seen["conversions"],
        revenue=money.revenue, updated_at=now,
    )  # fmt: skip


async def current_counters(organization_id: uuid.UUID) -> MarketplaceCountersMessage:
    """Today's counters of one organization, read now (a stream's first update)."""
    async with connection() as conn:
        timezone = await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", organization_id)
        return await today_counters(conn, organization_id, timezone or "UTC")


class MarketplaceConsumer(Consumer):
    """Executions, searches, views and conversions into the rollups; fresh counters of the day to each touched
    organization's marketplace channel after commit (its ledger sales included).

    Runs after the processed mark: busy services' day and month rows are locked until commit."""

    name = "marketplace"
    event_types = MARKETPLACE_EVENT_TYPES
    after_mark = True

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> MarketplaceEffects:
        await apply_executions(conn, rows)
        await apply_market_events(conn, rows)
        return MarketplaceEffects({r["organization_id"] for r in rows})

    def _organizations(self, batch: Batch) -> set[uuid.UUID]:
        ledger = batch.effects.get("revenue")
        return batch.effects[self.name].organizations | (ledger.organizations if ledger is not None else set())

    def channels(self, batch: Batch) -> set[str]:
        return {MarketplaceCountersMessage.channel_of(str(org)) for org in self._organizations(batch)}

    async def totals(self, batch: Batch, followed: Collection[str]) -> list[LiveMessage]:
        watched = [org for org in self._organizations(batch) if MarketplaceCountersMessage.channel_of(str(org)) in followed]
        if not watched:
            return []
        async with connection() as conn:
            zones = await _timezones(conn, set(watched))
            return [await today_counters(conn, org, zones[org]) for org in sorted(watched) if org in zones]
