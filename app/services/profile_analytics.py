"""Profile analytics: the worker's effects on a batch of events, and the reports.

Writing (`apply_events`, called inside the worker's claiming transaction): each profile
event is inserted once into `profile_events` (keyed by its event id); only the events that
insert update the hourly and daily rollups, so reprocessing a batch changes nothing. Unique
visitors and inquirers are HyperLogLog sketches, merged in Python under row locks taken in
one global order, so any number of workers can run at once.

Reading (one query-runner class per report, PostHog style: validate, plan, fetch,
compute): a range is split by `plan_segments` into
  * the open part (at or after the start of the current local hour): raw `events`, which
    also counts events the worker has not processed yet;
  * whole local days before it: 'day' rollups;
  * the remaining whole local hours: 'hour' rollups;
  * partial-hour edges of custom ranges: raw `events`.
Counters add up; unique visitors are the estimate of the union of every sketch in the
range plus the raw visitor ids, never a sum.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import struct
import uuid
from collections import Counter, defaultdict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
from datasketches import hll_sketch, hll_union, tgt_hll_type

from app import partitions
from app.auth import Viewer, readable_profile
from app.consumers import Batch, Consumer, Message
from app.database import connection
from app.errors import BadInput
from app.services.claimed_events import EVENT_OF_KEY
from app.services.gov_alerts import GovAlert, alerts_of_views
from app.timebuckets import (
    BucketIndex,
    Grain,
    RangeSpec,
    TimeRange,
    bucket_starts,
    day_ceil,
    day_start,
    hour_ceil,
    hour_start,
    local_date,
    local_midnight,
    month_ceil,
    month_start,
    resolve_range,
    utcnow,
)
from app.vocabulary import (
    BOOKING_COMPLETED,
    GOV_ALERTS,
    GOV_ASSESSMENT,
    MONEY_EVENT_TYPES,
    PROFILE_ANALYTICS,
    PROFILE_EVENT_KIND,
    PROFILE_INQUIRY,
    PROFILE_VIEWED,
    REVENUE_SOURCE,
    engagement_channel,
    view_channel,
)

log = logging.getLogger("pulsegraph.profile_analytics")

# lg_k=14: ~0.8% relative standard error for a union (2% is 2.5 sigma); small sets stay in
# the sketch's exact list/set modes. HLL_4 packs the same registers as HLL_8 in half the
# bytes (a dense sketch is 8 KiB, not 16): the worker rewrites a sketch row per profile and
# grain in every batch, and those writes were the largest part of its time. Sketches of
# either type merge; rows written as HLL_8 before stay so until they are rebuilt.
HLL_LG_K = 14
HLL_TYPE = tgt_hll_type.HLL_4
# Every rollup table keeps these grains; a month row makes a 12-month report read 12 sketches
# instead of 365 day sketches.
ROLLUP_GRAINS = ("hour", "day", "month")
DIRECT = "direct"
TOP_REFERRERS = 10
MAX_SERIES_BUCKETS = 1500  # ~62 days of hours; a year of days or weeks or months is fine
MAX_RECENT_VIEWS = 200
PROFILE_TYPES = sorted(PROFILE_EVENT_KIND)
MONEY_TYPES = sorted(MONEY_EVENT_TYPES)

# -- sketches -----------------------------------------------------------------------------


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
_coupon_estimates: dict[CouponKey, int] = {}


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
    key = _coupon_key(data)
    if key is None:
        return _library_estimate(data)
    estimate = _coupon_estimates.get(key)
    if estimate is None:
        estimate = _coupon_estimates[key] = _library_estimate(data)
    return estimate


def _coupon_key(data: bytes) -> CouponKey | None:
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
    if visitors <= 0:
        return 0.0
    return min(1.0, inquirers / visitors)


# == writing: the worker's effects ==========================================================


@dataclass(frozen=True, slots=True)
class DayTotals:
    """A day rollup row's counters and sketches as a batch left them: what an engagement
    snapshot reports."""

    views: int = 0
    inquiries: int = 0
    visitors_hll: bytes | None = None
    inquirers_hll: bytes | None = None


DayKey = tuple[uuid.UUID, uuid.UUID, datetime]  # (organization, profile, local day start)


@dataclass
class AppliedBatch:
    """What a batch changed: the profile events that were new (duplicates are left out),
    the time zones of their organizations, and the day rows it wrote (so that the live
    snapshots after commit need not read them back)."""

    events: list[dict[str, Any]] = field(default_factory=list)
    timezones: dict[uuid.UUID, str] = field(default_factory=dict)
    days: dict[DayKey, DayTotals] = field(default_factory=dict)

    @property
    def views(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == "view"]

    @property
    def touched_profiles(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        return sorted({(e["organization_id"], e["profile_id"]) for e in self.events})


PROFILE_EVENT_COLUMNS = (
    "organization_id",
    "profile_id",
    "occurred_at",
    "event_id",
    "kind",
    "visitor_id",
    "session_id",
    "country",
    "city",
    "device_type",
    "browser",
    "os",
    "referrer_domain",
    "utm_source",
    "amount_minor",
    "currency",
    "engagement_ms",
    "is_gov",
)
# Every column but the kind (of the event's type) and the gov flag (of the batch's checks)
# is the event's own. The rows are copied from `events` inside the database, so only their
# keys travel: sending every column of every row again was the worker's largest statement.
# Each event is a primary-key probe (see app.services.claimed_events).
EVENT_COLUMNS = tuple(name for name in PROFILE_EVENT_COLUMNS if name not in ("kind", "is_gov"))
_selected = ", ".join(f"e.{name}" if name in EVENT_COLUMNS else f"k.{name}" for name in PROFILE_EVENT_COLUMNS)
INSERT_PROFILE_EVENTS = f"""
INSERT INTO profile_events ({", ".join(PROFILE_EVENT_COLUMNS)})
SELECT {_selected}
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::boolean[])
     AS k(organization_id, occurred_at, event_id, kind, is_gov)
CROSS JOIN {EVENT_OF_KEY}
ON CONFLICT DO NOTHING
RETURNING organization_id, event_id
"""

ENSURE_ROLLUP_KEYS = """
INSERT INTO profile_rollups (organization_id, profile_id, grain, bucket_start)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[])
ORDER BY 1, 2, 3, 4
ON CONFLICT DO NOTHING
"""

LOCK_ROLLUPS = """
SELECT r.organization_id, r.profile_id, r.grain, r.bucket_start, r.views, r.inquiries,
       r.visitors_hll, r.inquirers_hll
FROM profile_rollups r
JOIN unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[]) AS k(o, p, g, b)
  ON r.organization_id = k.o AND r.profile_id = k.p AND r.grain = k.g AND r.bucket_start = k.b
ORDER BY r.organization_id, r.profile_id, r.grain, r.bucket_start
FOR UPDATE OF r
"""

UPDATE_ROLLUPS = """
UPDATE profile_rollups r SET
    views = r.views + u.views,
    inquiries = r.inquiries + u.inquiries,
    conversions = r.conversions + u.conversions,
    engagement_ms = r.engagement_ms + u.engagement_ms,
    visitors_hll = COALESCE(u.visitors_hll, r.visitors_hll),
    inquirers_hll = COALESCE(u.inquirers_hll, r.inquirers_hll),
    updated_at = now()
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::bigint[], $6::bigint[],
            $7::bigint[], $8::bigint[], $9::bytea[], $10::bytea[])
     AS u(o, p, g, b, views, inquiries, conversions, engagement_ms, visitors_hll, inquirers_hll)
WHERE r.organization_id = u.o AND r.profile_id = u.p AND r.grain = u.g AND r.bucket_start = u.b
"""

UPSERT_REFERRERS = """
INSERT INTO profile_referrer_rollups AS r (organization_id, profile_id, grain, bucket_start, referrer, views)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::bigint[])
ORDER BY 1, 2, 3, 4, 5
ON CONFLICT (organization_id, profile_id, grain, bucket_start, referrer)
DO UPDATE SET views = r.views + EXCLUDED.views
"""

UPSERT_REVENUE = """
INSERT INTO profile_revenue_rollups AS r
    (organization_id, profile_id, grain, bucket_start, source, currency, amount_minor, transactions)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::text[], $6::text[],
                     $7::bigint[], $8::bigint[])
ORDER BY 1, 2, 3, 4, 5, 6
ON CONFLICT (organization_id, profile_id, grain, bucket_start, source, currency)
DO UPDATE SET amount_minor = r.amount_minor + EXCLUDED.amount_minor,
              transactions = r.transactions + EXCLUDED.transactions
"""


async def apply_events(
    conn: asyncpg.Connection,
    rows: Sequence[Mapping[str, Any]],
    *,
    gov_flagged: Collection[tuple[uuid.UUID, str]] = (),
) -> AppliedBatch:
    """Apply a batch of claimed events (rows of `events`) inside the caller's transaction.

    One statement per table: profile events (copied from their event rows), rollup keys,
    rollup locks, rollup update, referrers, revenue. Events already in `profile_events` are
    skipped entirely.
    `gov_flagged` holds the (organization, event id) of views the gov checks flagged.
    """
    candidates = [
        _profile_event(r, gov_flagged) for r in rows if r["profile_id"] is not None and r["type"] in PROFILE_EVENT_KIND
    ]
    if not candidates:
        return AppliedBatch()
    timezones = await _timezones(conn, {e["organization_id"] for e in candidates})
    candidates = [e for e in candidates if e["organization_id"] in timezones]  # org deleted: nothing to roll up
    await partitions.ensure(conn, {("profile_events", partitions.month_of(e["occurred_at"])) for e in candidates})
    keys = [[e[name] for e in candidates] for name in ("organization_id", "occurred_at", "event_id", "kind", "is_gov")]
    inserted = await conn.fetch(INSERT_PROFILE_EVENTS, *keys)
    fresh = {(r["organization_id"], r["event_id"]) for r in inserted}
    events = [e for e in candidates if (e["organization_id"], e["event_id"]) in fresh]
    days = await _apply_rollups(conn, _RollupDelta.of(events, timezones)) if events else {}
    return AppliedBatch(events=events, timezones=timezones, days=days)


def _profile_event(row: Mapping[str, Any], gov_flagged: Collection[tuple[uuid.UUID, str]]) -> dict[str, Any]:
    event = {name: row[name] for name in EVENT_COLUMNS}
    event["kind"] = PROFILE_EVENT_KIND[row["type"]]
    event["type"] = row["type"]
    event["occurred_at"] = row["occurred_at"].astimezone(UTC)
    event["is_gov"] = (row["organization_id"], row["event_id"]) in gov_flagged
    return event


async def _timezones(conn: asyncpg.Connection, org_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
    rows = await conn.fetch("SELECT id, timezone FROM organizations WHERE id = ANY($1::uuid[])", list(org_ids))
    return {r["id"]: r["timezone"] for r in rows}


class _RollupDelta:
    """What a batch adds to each rollup row, keyed like the tables' primary keys."""

    def __init__(self) -> None:
        self.counters: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.visitors: dict[tuple, set[str]] = defaultdict(set)
        self.inquirers: dict[tuple, set[str]] = defaultdict(set)
        self.referrers: Counter[tuple] = Counter()
        self.revenue: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])

    @classmethod
    def of(cls, events: Iterable[Mapping[str, Any]], timezones: Mapping[uuid.UUID, str]) -> _RollupDelta:
        delta = cls()
        for event in events:
            buckets = _rollup_buckets(timezones[event["organization_id"]], _quarter_hour(event["occurred_at"]))
            for grain, bucket in zip(ROLLUP_GRAINS, buckets, strict=True):
                delta._add(event, (event["organization_id"], event["profile_id"], grain, bucket))
        return delta

    def _add(self, event: Mapping[str, Any], key: tuple) -> None:
        event_type = event["type"]
        if event_type == PROFILE_VIEWED:
            self.counters[key][0] += 1
            if event["visitor_id"]:
                self.visitors[key].add(event["visitor_id"])
            self.referrers[(*key, event["referrer_domain"] or DIRECT)] += 1
        elif event_type == PROFILE_INQUIRY:
            self.counters[key][1] += 1
            if event["visitor_id"]:
                self.inquirers[key].add(event["visitor_id"])
        elif event_type == BOOKING_COMPLETED:
            self.counters[key][2] += 1
        if event["engagement_ms"]:
            self.counters[key][3] += event["engagement_ms"]
        if event_type in MONEY_EVENT_TYPES and event["amount_minor"] is not None and event["currency"]:
            money = self.revenue[(*key, REVENUE_SOURCE[event_type], event["currency"])]
            money[0] += event["amount_minor"]
            money[1] += 1


def _quarter_hour(instant: datetime) -> datetime:
    return instant.replace(minute=instant.minute - instant.minute % 15, second=0, microsecond=0)


@lru_cache(maxsize=65_536)
def _rollup_buckets(timezone: str, quarter: datetime) -> tuple[datetime, datetime, datetime]:
    """(local hour, day and month start) of every instant in [quarter, quarter + 15 min).

    UTC offsets and DST transitions of current zones fall on quarter hours, so no local
    hour, day or month boundary lies strictly inside a UTC quarter hour; caching per
    quarter keeps the zone arithmetic out of the per-event loop.
    """
    return hour_start(quarter, timezone), day_start(quarter, timezone), month_start(quarter, timezone)


def _columns(keys: Sequence[tuple], width: int) -> list[list[Any]]:
    return [[k[i] for k in keys] for i in range(width)]


async def _apply_rollups(conn: asyncpg.Connection, delta: _RollupDelta) -> dict[DayKey, DayTotals]:
    """Add the delta to the rollup rows; returns the day rows as they now stand."""
    days: dict[DayKey, DayTotals] = {}
    keys = sorted(delta.counters)
    if keys:
        key_columns = _columns(keys, 4)
        # Create missing rows, then lock them all in primary-key order, so concurrent
        # workers touching the same buckets queue up instead of deadlocking.
        await conn.execute(ENSURE_ROLLUP_KEYS, *key_columns)
        locked = await conn.fetch(LOCK_ROLLUPS, *key_columns)
        stored = {(r["organization_id"], r["profile_id"], r["grain"], r["bucket_start"]): r for r in locked}
        visitors_hll: list[bytes | None] = []
        inquirers_hll: list[bytes | None] = []
        for key in keys:
            row = stored[key]
            visitors_hll.append(_merged(row["visitors_hll"], delta.visitors.get(key)))
            inquirers_hll.append(_merged(row["inquirers_hll"], delta.inquirers.get(key)))
        counters = [delta.counters[k] for k in keys]
        await conn.execute(
            UPDATE_ROLLUPS,
            *key_columns,
            *_columns(counters, 4),
            visitors_hll,
            inquirers_hll,
        )
        for key, added, visitors, inquirers in zip(keys, counters, visitors_hll, inquirers_hll, strict=True):
            if key[2] == "day":
                row = stored[key]
                days[(key[0], key[1], key[3])] = DayTotals(
                    views=row["views"] + added[0],
                    inquiries=row["inquiries"] + added[1],
                    visitors_hll=visitors or row["visitors_hll"],
                    inquirers_hll=inquirers or row["inquirers_hll"],
                )
    if delta.referrers:
        items = sorted(delta.referrers.items())
        await conn.execute(UPSERT_REFERRERS, *_columns([k for k, _ in items], 5), [v for _, v in items])
    if delta.revenue:
        items = sorted(delta.revenue.items())
        await conn.execute(
            UPSERT_REVENUE,
            *_columns([k for k, _ in items], 6),
            [v[0] for _, v in items],
            [v[1] for _, v in items],
        )
    return days


def _merged(stored: bytes | None, ids: set[str] | None) -> bytes | None:
    """The stored sketch with `ids` added; None means "unchanged"."""
    if not ids:
        return None
    sketch = hll_sketch.deserialize(stored) if stored else new_sketch()
    for visitor in ids:
        sketch.update(visitor)
    return sketch.serialize_compact()


# -- live payloads (published by the worker after commit) ---------------------------------


def view_payload(event: Mapping[str, Any], gov_alert: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A processed view as the `profileViews` subscription sends it (camelCase), with the
    gov alert's payload when the view was flagged."""
    return {
        "eventId": event["event_id"],
        "profileId": str(event["profile_id"]),
        "occurredAt": event["occurred_at"].astimezone(UTC).isoformat(),
        "country": _strip(event.get("country")),
        "city": event.get("city"),
        "deviceType": event.get("device_type"),
        "browser": event.get("browser"),
        "os": event.get("os"),
        "referrer": event.get("referrer_domain"),
        "utmSource": event.get("utm_source"),
        "isGov": bool(event.get("is_gov")),
        "govAlert": gov_alert,
    }


def _strip(value: str | None) -> str | None:
    return value.strip() if value else value


TODAY_ROLLUPS = """
SELECT k.o AS organization_id, k.p AS profile_id, k.b AS since,
       r.views, r.inquiries, r.visitors_hll, r.inquirers_hll
FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[]) AS k(o, p, b)
LEFT JOIN profile_rollups r
  ON r.organization_id = k.o AND r.profile_id = k.p AND r.grain = 'day' AND r.bucket_start = k.b
"""


async def engagement_snapshots(
    profiles: Sequence[tuple[uuid.UUID, uuid.UUID]],
    timezones: Mapping[uuid.UUID, str],
    *,
    written: Mapping[DayKey, DayTotals] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Today's totals (organization time zone) of each profile, from its day rollup.

    `written` holds the day rows a batch just committed (`AppliedBatch.days`): those are
    today's totals already, and the database is asked only about the others (a profile
    whose batch events all fell on earlier days).
    """
    now = now or utcnow()
    wanted = [(org, profile, day_start(now, timezones[org])) for org, profile in profiles]
    totals = {key: written[key] for key in wanted if written and key in written}
    missing = [key for key in wanted if key not in totals]
    if missing:
        async with connection() as conn:
            totals.update(await _stored_day_totals(conn, missing))
    return [_snapshot(key, totals.get(key, DayTotals()), now) for key in wanted]


async def _stored_day_totals(conn: asyncpg.Connection, keys: Sequence[DayKey]) -> dict[DayKey, DayTotals]:
    rows = await conn.fetch(TODAY_ROLLUPS, *_columns(keys, 3))
    return {
        (r["organization_id"], r["profile_id"], r["since"]): DayTotals(
            int(r["views"] or 0), int(r["inquiries"] or 0), r["visitors_hll"], r["inquirers_hll"]
        )
        for r in rows
    }


def _snapshot(key: DayKey, totals: DayTotals, now: datetime) -> dict[str, Any]:
    """The `engagementUpdates` payload (camelCase) of one profile's day."""
    visitors, inquirers = Uniques(), Uniques()
    visitors.add_sketch(totals.visitors_hll)
    inquirers.add_sketch(totals.inquirers_hll)
    unique_visitors = visitors.estimate()
    return {
        "profileId": str(key[1]),
        "since": key[2].astimezone(UTC).isoformat(),
        "views": totals.views,
        "uniqueVisitors": unique_visitors,
        "inquiries": totals.inquiries,
        "conversionRate": conversion_rate(inquirers.estimate(), unique_visitors),
        "updatedAt": now.astimezone(UTC).isoformat(),
    }


# == reading: the planner ===================================================================


@dataclass(frozen=True)
class Segment:
    """A piece of a range answered by one source: 'month', 'day' or 'hour' rollups, or 'raw' events."""

    source: str
    start: datetime
    end: datetime


def plan_segments(
    time_range: TimeRange, *, now: datetime, whole_days: bool = True, whole_months: bool = False
) -> list[Segment]:
    """Split [start, end) so that every instant is read from exactly one source.

    The open local hour (at or after the current hour start) and partial-hour edges come
    from raw events; whole local months from 'month' rollups when `whole_months` (reports
    that never split a month: overviews, monthly series); whole local days from 'day'
    rollups (unless `whole_days` is off, as for hourly series); the remaining whole local
    hours from 'hour' rollups. Rollups are only read for buckets that closed before the
    current hour, so a month row is used only for months before the current one.
    """
    tz = time_range.zone
    cutoff = hour_start(now, tz)
    segments: list[Segment] = []
    closed_end = min(time_range.end, cutoff)
    if time_range.start < closed_end:
        a, b = time_range.start, closed_end
        a_hour, b_hour = hour_ceil(a, tz), hour_start(b, tz)
        if a_hour >= b_hour:
            segments.append(Segment("raw", a, b))
        else:
            if a < a_hour:
                segments.append(Segment("raw", a, a_hour))
            d_a, d_b = day_ceil(a_hour, tz), day_start(b_hour, tz)
            if whole_days and d_a < d_b:
                if a_hour < d_a:
                    segments.append(Segment("hour", a_hour, d_a))
                segments += _days_and_months(d_a, d_b, tz, whole_months)
                if d_b < b_hour:
                    segments.append(Segment("hour", d_b, b_hour))
            else:
                segments.append(Segment("hour", a_hour, b_hour))
            if b_hour < b:
                segments.append(Segment("raw", b_hour, b))
    open_start = max(time_range.start, cutoff)
    if open_start < time_range.end:
        segments.append(Segment("raw", open_start, time_range.end))
    return segments


def _days_and_months(start: datetime, end: datetime, tz: Any, whole_months: bool) -> list[Segment]:
    """[start, end) between local midnights: whole local months, and the days around them."""
    m_a, m_b = month_ceil(start, tz), month_start(end, tz)
    if not whole_months or m_a >= m_b:
        return [Segment("day", start, end)]
    pieces = [Segment("day", start, m_a), Segment("month", m_a, m_b), Segment("day", m_b, end)]
    return [p for p in pieces if p.start < p.end]


class _Params:
    """Positional parameters of a statement built from a segment plan."""

    def __init__(self, *values: Any) -> None:
        self.values = list(values)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _rollup_filter(params: _Params, segments: Sequence[Segment], alias: str = "r") -> str | None:
    """`(grain = .. AND bucket_start in [lo, hi)) OR ...`: one primary-key range scan each
    (a join against unnest() would read every rollup row of the profile)."""
    parts = [
        f"({alias}.grain = {params.add(s.source)} AND {alias}.bucket_start >= {params.add(s.start)}"
        f" AND {alias}.bucket_start < {params.add(s.end)})"
        for s in segments
        if s.source != "raw"
    ]
    return " OR ".join(parts) or None


def _raw_filter(params: _Params, segments: Sequence[Segment], alias: str = "e") -> str | None:
    parts = [
        f"({alias}.occurred_at >= {params.add(s.start)} AND {alias}.occurred_at < {params.add(s.end)})"
        for s in segments
        if s.source == "raw"
    ]
    return " OR ".join(parts) or None


ROLLUP_ROWS = """
SELECT r.grain, r.bucket_start, r.views, r.inquiries, r.conversions, r.engagement_ms,
       r.visitors_hll, r.inquirers_hll
FROM profile_rollups r
WHERE r.organization_id = $1 AND r.profile_id = $2 AND ({segments})
"""

# Raw events grouped by local hour start: the same shape as an hour rollup row. The local
# hour start is the instant minus the local minutes and seconds (see timebuckets.hour_start).
RAW_HOURS = """
SELECT e.occurred_at - ((e.occurred_at AT TIME ZONE $3) - date_trunc('hour', e.occurred_at AT TIME ZONE $3))
           AS bucket_start,
       count(*) FILTER (WHERE e.type = $5) AS views,
       count(*) FILTER (WHERE e.type = $6) AS inquiries,
       count(*) FILTER (WHERE e.type = $7) AS conversions,
       COALESCE(sum(e.engagement_ms), 0) AS engagement_ms,
       array_agg(DISTINCT e.visitor_id) FILTER (WHERE e.type = $5 AND e.visitor_id IS NOT NULL) AS visitors,
       array_agg(DISTINCT e.visitor_id) FILTER (WHERE e.type = $6 AND e.visitor_id IS NOT NULL) AS inquirers
FROM events e
WHERE e.organization_id = $1 AND e.profile_id = $2 AND e.type = ANY($4::text[]) AND ({segments})
GROUP BY 1
"""

REFERRER_ROLLUPS = """
SELECT r.referrer, r.views FROM profile_referrer_rollups r
WHERE r.organization_id = $1 AND r.profile_id = $2 AND ({segments})
"""
REFERRER_EVENTS = """
SELECT COALESCE(NULLIF(e.referrer_domain, ''), 'direct'), 1 FROM events e
WHERE e.organization_id = $1 AND e.profile_id = $2 AND e.type = {event_type} AND ({segments})
"""
TOP_REFERRERS_SQL = """
SELECT referrer, sum(views)::bigint AS views FROM ({parts}) AS x(referrer, views)
GROUP BY referrer
ORDER BY views DESC, referrer
LIMIT $3
"""

REVENUE_ROLLUPS = """
SELECT r.currency::text, r.amount_minor FROM profile_revenue_rollups r
WHERE r.organization_id = $1 AND r.profile_id = $2 AND ({segments})
"""
REVENUE_EVENTS = """
SELECT e.currency::text, e.amount_minor FROM events e
WHERE e.organization_id = $1 AND e.profile_id = $2 AND e.type = ANY({event_types}::text[])
  AND e.amount_minor IS NOT NULL AND e.currency IS NOT NULL AND ({segments})
"""
REVENUE_SQL = """
SELECT currency, sum(amount_minor)::bigint AS amount_minor FROM ({parts}) AS x(currency, amount_minor)
GROUP BY currency
ORDER BY currency
"""


def _union_query(
    params: _Params, segments: Sequence[Segment], rollups: str, events: str, outer: str, event_args: Mapping[str, Any]
) -> str | None:
    """`outer` over the UNION ALL of a rollup part and a raw-event part (either may be absent).
    The raw part's own arguments become parameters only when it is there: PostgreSQL cannot
    type a parameter no statement uses."""
    parts = []
    if (condition := _rollup_filter(params, segments)) is not None:
        parts.append(rollups.format(segments=condition))
    if (condition := _raw_filter(params, segments)) is not None:
        parts.append(events.format(segments=condition, **{k: params.add(v) for k, v in event_args.items()}))
    return outer.format(parts=" UNION ALL ".join(parts)) if parts else None


@dataclass
class Totals:
    """Counters and visitor unions of one report bucket (or a whole range)."""

    views: int = 0
    inquiries: int = 0
    conversions: int = 0
    engagement_ms: int = 0
    visitors: Uniques = field(default_factory=Uniques)
    inquirers: Uniques = field(default_factory=Uniques)

    def add_rollup(self, row: Mapping[str, Any]) -> None:
        self.views += row["views"]
        self.inquiries += row["inquiries"]
        self.conversions += row["conversions"]
        self.engagement_ms += row["engagement_ms"]
        self.visitors.add_sketch(row["visitors_hll"])
        self.inquirers.add_sketch(row["inquirers_hll"])

    def add_raw(self, row: Mapping[str, Any]) -> None:
        self.views += row["views"]
        self.inquiries += row["inquiries"]
        self.conversions += row["conversions"]
        self.engagement_ms += row["engagement_ms"]
        self.visitors.add_ids(row["visitors"])
        self.inquirers.add_ids(row["inquirers"])


# == reading: the reports ===================================================================


@dataclass(frozen=True)
class Overview:
    profile_id: uuid.UUID
    range: TimeRange
    views: int
    unique_visitors: int
    inquiries: int
    conversions: int
    conversion_rate: float
    avg_time_on_profile_seconds: float
    revenue: list[tuple[str, int]]  # (currency, amount in minor units), by currency
    top_referrers: list[tuple[str, int]]  # (referrer, views), most views first


@dataclass(frozen=True)
class Timeseries:
    profile_id: uuid.UUID
    range: TimeRange
    granularity: Grain
    buckets: list[datetime]
    views: list[int]
    unique_visitors: list[int]
    inquiries: list[int]
    conversions: list[int]
    engagement_seconds: list[float]


@dataclass(frozen=True)
class RecentView:
    event_id: str
    profile_id: uuid.UUID
    occurred_at: datetime
    country: str | None
    city: str | None
    device_type: str | None
    browser: str | None
    os: str | None
    referrer: str | None
    utm_source: str | None
    is_gov: bool
    gov_alert: GovAlert | None = None


class _RangeQuery:
    """Shared steps of the range reports: scope, resolve the range, plan, fetch rows."""

    whole_days = True
    whole_months = True

    def __init__(
        self, *, viewer: Viewer, profile_id: uuid.UUID | str, time_range: RangeSpec, now: datetime | None = None
    ):
        self.viewer = viewer
        self.profile_id = profile_id
        self.spec = time_range
        self.now = now or utcnow()

    async def _prepare(self) -> None:
        self.profile = await readable_profile(self.viewer, self.profile_id)
        self.org_id = self.profile.organization_id
        self.timezone = self.profile.timezone
        self.range = resolve_range(self.spec, self.timezone, now=self.now)
        self.validate()
        self.segments = plan_segments(
            self.range, now=self.now, whole_days=self.whole_days, whole_months=self.whole_months
        )

    def validate(self) -> None:
        """Report-specific argument checks, after the range is known."""

    def _base(self) -> tuple[uuid.UUID, uuid.UUID]:
        return self.org_id, self.profile.id

    async def _rollup_rows(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        params = _Params(*self._base())
        condition = _rollup_filter(params, self.segments)
        if condition is None:
            return []
        return await conn.fetch(ROLLUP_ROWS.format(segments=condition), *params.values)

    async def _raw_hours(self, conn: asyncpg.Connection) -> list[asyncpg.Record]:
        params = _Params(
            *self._base(), self.timezone, PROFILE_TYPES, PROFILE_VIEWED, PROFILE_INQUIRY, BOOKING_COMPLETED
        )
        condition = _raw_filter(params, self.segments)
        if condition is None:
            return []
        return await conn.fetch(RAW_HOURS.format(segments=condition), *params.values)


class ProfileOverviewQuery(_RangeQuery):
    """Headline numbers of one profile over a range."""

    async def run(self) -> Overview:
        await self._prepare()
        totals = Totals()
        async with connection() as conn:
            for row in await self._rollup_rows(conn):
                totals.add_rollup(row)
            for row in await self._raw_hours(conn):
                totals.add_raw(row)
            referrers = await self._fetch_union(
                conn, REFERRER_ROLLUPS, REFERRER_EVENTS, TOP_REFERRERS_SQL, TOP_REFERRERS, event_type=PROFILE_VIEWED
            )
            revenue = await self._fetch_union(
                conn, REVENUE_ROLLUPS, REVENUE_EVENTS, REVENUE_SQL, event_types=MONEY_TYPES
            )
        unique_visitors = totals.visitors.estimate()
        return Overview(
            profile_id=self.profile.id,
            range=self.range,
            views=totals.views,
            unique_visitors=unique_visitors,
            inquiries=totals.inquiries,
            conversions=totals.conversions,
            conversion_rate=conversion_rate(totals.inquirers.estimate(), unique_visitors),
            avg_time_on_profile_seconds=(totals.engagement_ms / 1000 / totals.views) if totals.views else 0.0,
            revenue=[(r["currency"], int(r["amount_minor"])) for r in revenue],
            top_referrers=[(r["referrer"], int(r["views"])) for r in referrers],
        )

    async def _fetch_union(
        self, conn: asyncpg.Connection, rollups: str, events: str, outer: str, *outer_args: Any, **event_args: Any
    ) -> list[asyncpg.Record]:
        params = _Params(*self._base(), *outer_args)
        sql = _union_query(params, self.segments, rollups, events, outer, event_args)
        return await conn.fetch(sql, *params.values) if sql else []


class ProfileTimeseriesQuery(_RangeQuery):
    """A zero-filled series, one entry per local hour/day/ISO week/month bucket."""

    def __init__(self, *, granularity: Grain | str = Grain.DAY, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.granularity = Grain(granularity)
        # Day rollups cannot be split into hours, nor month rollups into days or weeks.
        self.whole_days = self.granularity is not Grain.HOUR
        self.whole_months = self.granularity is Grain.MONTH

    def validate(self) -> None:
        self.buckets = bucket_starts(self.range, self.granularity)
        if len(self.buckets) > MAX_SERIES_BUCKETS:
            raise BadInput(
                f"{len(self.buckets)} {self.granularity.value} buckets requested; at most {MAX_SERIES_BUCKETS}: "
                "choose a coarser granularity or a shorter range",
                field="granularity",
            )

    async def run(self) -> Timeseries:
        await self._prepare()
        index = BucketIndex(self.buckets)
        totals = [Totals() for _ in self.buckets]
        async with connection() as conn:
            rollups = await self._rollup_rows(conn)
            raw = await self._raw_hours(conn)
        # Every rollup row and raw hour lies inside one report bucket: hours and days never
        # straddle a local day, week or month boundary.
        for rows, add in ((rollups, Totals.add_rollup), (raw, Totals.add_raw)):
            for row in rows:
                position = index.find(row["bucket_start"])
                if position is None:  # a raw partial hour starting before the range
                    position = 0
                add(totals[position], row)
        return Timeseries(
            profile_id=self.profile.id,
            range=self.range,
            granularity=self.granularity,
            buckets=self.buckets,
            views=[t.views for t in totals],
            unique_visitors=[t.visitors.estimate() for t in totals],
            inquiries=[t.inquiries for t in totals],
            conversions=[t.conversions for t in totals],
            engagement_seconds=[t.engagement_ms / 1000 for t in totals],
        )


RECENT_VIEWS = """
SELECT event_id, profile_id, occurred_at, country, city, device_type, browser, os,
       referrer_domain, utm_source, is_gov
FROM profile_events
WHERE organization_id = $1 AND profile_id = $2 AND kind = 'view'
ORDER BY occurred_at DESC, event_id DESC
LIMIT $3
"""


class RecentProfileViewsQuery:
    """The latest processed views of a profile, newest first."""

    def __init__(self, *, viewer: Viewer, profile_id: uuid.UUID | str, limit: int = 50) -> None:
        self.viewer = viewer
        self.profile_id = profile_id
        self.limit = limit

    async def run(self) -> list[RecentView]:
        profile = await readable_profile(self.viewer, self.profile_id)
        if not 1 <= self.limit <= MAX_RECENT_VIEWS:
            raise BadInput(f"limit must be between 1 and {MAX_RECENT_VIEWS}", field="limit")
        async with connection() as conn:
            rows = await conn.fetch(RECENT_VIEWS, profile.organization_id, profile.id, self.limit)
        alerts = await alerts_of_views(profile.organization_id, [r["event_id"] for r in rows if r["is_gov"]])
        return [
            RecentView(
                event_id=r["event_id"],
                profile_id=r["profile_id"],
                occurred_at=r["occurred_at"],
                country=_strip(r["country"]),
                city=r["city"],
                device_type=r["device_type"],
                browser=r["browser"],
                os=r["os"],
                referrer=r["referrer_domain"],
                utm_source=r["utm_source"],
                is_gov=r["is_gov"],
                gov_alert=alerts.get(r["event_id"]),
            )
            for r in rows
        ]


# == rebuilding the rollups from the worker's ledger =========================================
#
# `profile_events` holds exactly the events whose effects the worker applied (it is the
# worker's exactly-once ledger), so the rollups are a function of it. Everything is grouped
# by local hour in SQL (the same formula as RAW_HOURS); the local day and month of an hour are
# the worker's own (`day_start`, `month_start`, `local_midnight`), so the rebuild cannot
# disagree with it about DST. Four connections work at once:
#   * reader: the hour rows of profile_rollups (counters and visitor ids) from a server-side
#     cursor in (profile, hour) order (a profile's rows are all it needs together; a uuid
#     first sorts faster than one of a few organization ids). Python builds each hour's sketch from its ids
#     (repeats are harmless: an HLL update is idempotent, so SQL need not sort them for
#     DISTINCT); a day is the union of its hours' sketch objects and a month the union of its
#     days', emitted when the local day or month changes, so memory stays bounded;
#   * two sources: referrer and revenue rows (hours, and their sums per day and month found
#     through a (zone, local date) table computed in Python, since SQL's midnight of an
#     ambiguous local date is not zoneinfo's) never become Python objects: a binary COPY TO
#     is handed over to a binary COPY FROM on the writer. Their queries aggregate and sort
#     while the writer loads profile_rollups;
#   * writer: the one transaction that empties the tables and loads them. Referrer and revenue
#     rows come in primary-key order, so their index grows at its right edge; a full rebuild
#     builds profile_rollups' index after loading instead (one sort, not a descent per row).
#
# Concurrency: the rebuild locks the three rollup tables (SHARE ROW EXCLUSIVE) before it
# reads. A worker batch that committed earlier is in what we read; one that has not yet
# written its rollups blocks on the lock and applies its delta on top of the rebuilt rows
# once we commit. Readers see the old rollups until the commit (a full rebuild TRUNCATEs,
# which makes reports wait for the commit instead).

_KIND = PROFILE_EVENT_KIND
_REVENUE_OF_KIND = {_KIND[t]: REVENUE_SOURCE[t] for t in MONEY_EVENT_TYPES}
_LOCAL_HOUR = (
    "pe.occurred_at - ((pe.occurred_at AT TIME ZONE o.timezone)"
    " - date_trunc('hour', pe.occurred_at AT TIME ZONE o.timezone))"
)
_REBUILD_FROM = """
FROM profile_events pe JOIN organizations o ON o.id = pe.organization_id
WHERE ($1::uuid IS NULL OR pe.organization_id = $1::uuid)
"""
# Grouping by o.id (a primary key) rather than by the zone name keeps text comparisons out
# of the sort: the zone follows from the organization.
REBUILD_HOURS = f"""
SELECT o.id AS organization_id, pe.profile_id, o.timezone, {_LOCAL_HOUR} AS bucket,
       count(*) FILTER (WHERE pe.kind = $2) AS views,
       count(*) FILTER (WHERE pe.kind = $3) AS inquiries,
       count(*) FILTER (WHERE pe.kind = $4) AS conversions,
       COALESCE(sum(pe.engagement_ms), 0)::bigint AS engagement_ms,
       array_agg(pe.visitor_id) FILTER (WHERE pe.kind = $2 AND pe.visitor_id <> '') AS visitors,
       array_agg(pe.visitor_id) FILTER (WHERE pe.kind = $3 AND pe.visitor_id <> '') AS inquirers
{_REBUILD_FROM}
GROUP BY pe.profile_id, o.id, bucket
HAVING count(*) FILTER (WHERE pe.kind IN ($2, $3, $4) OR pe.engagement_ms > 0) > 0
ORDER BY 2, 1, 4
"""
# The rows of one table: its hour rows (`hours`: a query with $1 the organization or NULL and
# $2-$5 the local days), then their sums per local day and per local month; in the table's
# column order, for a binary COPY into it. The sort compares the grain (and the referrer)
# bytewise, COLLATE "C": the database's collation (C.UTF-8 is not "C" to PostgreSQL 15) would
# call strcoll millions of times. Both put ASCII in the same order, and the order only decides
# where in the primary key a row lands, not what is stored.
_LOCAL_DAYS = "unnest($2::text[], $3::date[], $4::timestamptz[], $5::timestamptz[]) AS d(timezone, local_date, day, month)"
_HOURS_AND_SUMS = """
WITH hours AS MATERIALIZED (
    SELECT h.*, d.day, d.month
    FROM ({hours}) h
    JOIN {days} ON d.timezone = h.timezone AND d.local_date = (h.bucket AT TIME ZONE h.timezone)::date
)
SELECT organization_id, profile_id, 'hour' COLLATE "C", bucket, {keys}, {values} FROM hours
UNION ALL
SELECT organization_id, profile_id, 'day', day, {keys}, {sums} FROM hours GROUP BY organization_id, profile_id, day, {keys}
UNION ALL
SELECT organization_id, profile_id, 'month', month, {keys}, {sums} FROM hours GROUP BY organization_id, profile_id, month, {keys}
ORDER BY 1, 2, 3, 4, {order}
"""
_REFERRER_HOURS = f"""
SELECT o.id AS organization_id, pe.profile_id, o.timezone, {_LOCAL_HOUR} AS bucket,
       COALESCE(NULLIF(pe.referrer_domain, ''), $7) COLLATE "C" AS referrer, count(*) AS views
{_REBUILD_FROM} AND pe.kind = $6
GROUP BY o.id, pe.profile_id, bucket, referrer
"""
_REVENUE_HOURS = f"""
SELECT o.id AS organization_id, pe.profile_id, o.timezone, {_LOCAL_HOUR} AS bucket, s.source, pe.currency,
       sum(pe.amount_minor)::bigint AS amount_minor, count(*) AS transactions
FROM profile_events pe JOIN organizations o ON o.id = pe.organization_id
JOIN unnest($6::text[], $7::text[]) AS s(kind, source) ON s.kind = pe.kind
WHERE ($1::uuid IS NULL OR pe.organization_id = $1::uuid) AND pe.amount_minor IS NOT NULL AND pe.currency <> ''
GROUP BY o.id, pe.profile_id, bucket, s.source, pe.currency
"""
REBUILD_REFERRERS = _HOURS_AND_SUMS.format(
    hours=_REFERRER_HOURS, days=_LOCAL_DAYS, keys="referrer", values="views", sums="sum(views)::bigint", order="5"
)
REBUILD_REVENUE = _HOURS_AND_SUMS.format(
    hours=_REVENUE_HOURS, days=_LOCAL_DAYS, keys="source, currency", values="amount_minor, transactions",
    sums="sum(amount_minor)::bigint, sum(transactions)::bigint", order="5, 6",
)  # fmt: skip
REFERRER_COLUMNS = ("organization_id", "profile_id", "grain", "bucket_start", "referrer", "views")
REVENUE_COLUMNS = (
    "organization_id", "profile_id", "grain", "bucket_start", "source", "currency", "amount_minor", "transactions",
)  # fmt: skip
REBUILD_SPAN = """
SELECT o.timezone, min(pe.occurred_at) AS first, max(pe.occurred_at) AS last
FROM profile_events pe JOIN organizations o ON o.id = pe.organization_id
WHERE ($1::uuid IS NULL OR pe.organization_id = $1::uuid)
GROUP BY 1
"""
ROLLUP_TABLES = ("profile_rollups", "profile_referrer_rollups", "profile_revenue_rollups")
# updated_at is left to its default, now(): the rebuild's transaction time.
ROLLUP_COLUMNS = (
    "organization_id", "profile_id", "grain", "bucket_start", "views", "inquiries", "conversions",
    "engagement_ms", "visitors_hll", "inquirers_hll",
)  # fmt: skip
REBUILD_FETCH = 20_000
# Hash aggregates of a year of events fit in memory instead of spilling sorts to disk; JIT
# compilation costs more than it saves on these one-pass statements; a merge join would sort
# every hour row to find its local day in a table of a few thousand rows.
REBUILD_SETTINGS = (
    "SET LOCAL work_mem = '256MB'; SET LOCAL maintenance_work_mem = '256MB';"
    " SET LOCAL jit = off; SET LOCAL enable_mergejoin = off"
)
# A full rebuild drops the indexes of these (truncated) tables and builds them again after
# loading: profile_rollups rows arrive in (org, profile, hour) order, not in key order. Indexes
# a foreign key depends on stay.
INDEXED_AFTER_LOAD = ("profile_rollups",)
ROLLUP_INDEXES = """
SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS definition,
       c.conname AS constraint_name, pg_get_constraintdef(c.oid) AS constraint_definition
FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = $1::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = i.indexrelid)
ORDER BY 1
"""


@dataclass
class RebuildStats:
    organization_id: uuid.UUID | None = None
    hour_rows: int = 0
    day_rows: int = 0
    month_rows: int = 0
    referrer_rows: int = 0
    revenue_rows: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "organization_id": str(self.organization_id) if self.organization_id else None}


async def _local_days(conn: asyncpg.Connection, org: uuid.UUID | None) -> tuple[list[Any], ...]:
    """(zone, local date, day start, month start) of every local date from the first event to
    the last, as four columns for `_LOCAL_DAYS`: `day_start` and `month_start` as the worker
    computes them (zoneinfo's midnight, also when it is ambiguous or skipped)."""
    columns: tuple[list[Any], ...] = ([], [], [], [])
    for span in await conn.fetch(REBUILD_SPAN, org):
        timezone = span["timezone"]
        day, last = local_date(span["first"], timezone), local_date(span["last"], timezone)
        while day <= last:
            row = (timezone, day, local_midnight(day, timezone), local_midnight(day.replace(day=1), timezone))
            for column, value in zip(columns, row, strict=True):
                column.append(value)
            day += timedelta(days=1)
    return columns


# The hour rows' timestamps arrive, and the rollup rows leave, as PostgreSQL's own integer
# (microseconds since 2000-01-01 UTC, in a 1-tuple: asyncpg's "tuple" format). Decoding and
# encoding a datetime per row, and hashing it to look up its local day, took a third of the
# Python time of a rebuild; integers cost next to nothing.
Instant = tuple[int]
_POSTGRES_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


@asynccontextmanager
async def _instants_as_integers(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """timestamptz values cross `conn` as `Instant`s inside. Setting and resetting a codec of
    a built-in type sends nothing to the server, so the reset also works on a broken
    connection, and the pooled connection goes back with its usual codecs."""
    await conn.set_type_codec("timestamptz", schema="pg_catalog", encoder=tuple, decoder=tuple, format="tuple")
    try:
        yield
    finally:
        await conn.reset_type_codec("timestamptz", schema="pg_catalog")


def _instant(moment: datetime) -> Instant:
    return ((moment - _POSTGRES_EPOCH) // _MICROSECOND,)


@lru_cache(maxsize=65_536)
def _day_and_month(timezone: str, hour: Instant) -> tuple[Instant, Instant]:
    """The local day and month starts of a local hour, as the worker computes them."""
    moment = _POSTGRES_EPOCH + hour[0] * _MICROSECOND
    return _instant(day_start(moment, timezone)), _instant(month_start(moment, timezone))


class _Grain:
    """A day or month being summed: its key, counters and the union of its parts' sketches."""

    __slots__ = ("key", "views", "inquiries", "conversions", "engagement", "visitors", "inquirers")

    def __init__(self, key: tuple) -> None:
        self.key = key
        self.views = self.inquiries = self.conversions = self.engagement = 0
        self.visitors: hll_union | None = None
        self.inquirers: hll_union | None = None

    def add(self, views: int, inquiries: int, conversions: int, engagement: int, visitors: hll_sketch | None,
            inquirers: hll_sketch | None) -> None:  # fmt: skip
        self.views += views
        self.inquiries += inquiries
        self.conversions += conversions
        self.engagement += engagement
        if visitors is not None:
            if self.visitors is None:
                self.visitors = hll_union(HLL_LG_K)
            self.visitors.update(visitors)
        if inquirers is not None:
            if self.inquirers is None:
                self.inquirers = hll_union(HLL_LG_K)
            self.inquirers.update(inquirers)

    def close(self, into: _Grain | None) -> tuple:
        """The row of this grain; its counters and sketches are added to `into` (its month)."""
        visitors = self.visitors.get_result(HLL_TYPE) if self.visitors is not None else None
        inquirers = self.inquirers.get_result(HLL_TYPE) if self.inquirers is not None else None
        if into is not None:
            into.add(self.views, self.inquiries, self.conversions, self.engagement, visitors, inquirers)
        return (*self.key, self.views, self.inquiries, self.conversions, self.engagement,
                _serialized(visitors), _serialized(inquirers))  # fmt: skip


def _serialized(sketch: hll_sketch | None) -> bytes | None:
    """None when no id was seen, as the worker leaves it."""
    return sketch.serialize_compact() if sketch is not None else None


def _sketch_of(ids: Sequence[str] | None) -> hll_sketch | None:
    if not ids:
        return None
    sketch = new_sketch()
    for visitor in ids:
        sketch.update(visitor)
    return sketch


class _RollupRecords:
    """profile_rollups records of hour rows in (profile, hour) order: each hour, then a day
    row whenever the (org, profile, local day) changes and a month row (the sum and union of
    its days) whenever the local month does."""

    def __init__(self, stats: RebuildStats) -> None:
        self.stats = stats
        self.day: _Grain | None = None
        self.month: _Grain | None = None

    def of(self, rows: Sequence[asyncpg.Record]) -> list[tuple]:
        out: list[tuple] = []
        day, month, stats = self.day, self.month, self.stats
        for o, p, timezone, hour, views, inquiries, conversions, engagement, visitor_ids, inquirer_ids in rows:
            visitors, inquirers = _sketch_of(visitor_ids), _sketch_of(inquirer_ids)
            out.append((o, p, "hour", hour, views, inquiries, conversions, engagement,
                        _serialized(visitors), _serialized(inquirers)))  # fmt: skip
            day_start_, month_start_ = _day_and_month(timezone, hour)
            if day is None or day.key != (o, p, "day", day_start_):
                if day is not None:
                    out.append(day.close(month))
                    stats.day_rows += 1
                if month is None or month.key != (o, p, "month", month_start_):
                    if month is not None:
                        out.append(month.close(None))
                        stats.month_rows += 1
                    month = _Grain((o, p, "month", month_start_))
                day = _Grain((o, p, "day", day_start_))
            day.add(views, inquiries, conversions, engagement, visitors, inquirers)
        self.day, self.month = day, month
        stats.hour_rows += len(rows)
        return out

    def last(self) -> list[tuple]:
        if self.day is None or self.month is None:
            return []
        self.stats.day_rows += 1
        self.stats.month_rows += 1
        return [self.day.close(self.month), self.month.close(None)]


async def _hour_batches(conn: asyncpg.Connection, org: uuid.UUID | None) -> AsyncIterator[list[asyncpg.Record]]:
    """REBUILD_HOURS in batches from a server-side cursor, its hours as `Instant`s. The first
    batch is requested at once, so the server sorts while the caller's other statements run."""
    async with _instants_as_integers(conn), conn.transaction(isolation="repeatable_read", readonly=True):
        await conn.execute(REBUILD_SETTINGS)
        cursor = await conn.cursor(REBUILD_HOURS, org, _KIND[PROFILE_VIEWED], _KIND[PROFILE_INQUIRY],
                                   _KIND[BOOKING_COMPLETED])  # fmt: skip
        batch = asyncio.ensure_future(cursor.fetch(REBUILD_FETCH))
        try:
            while rows := await batch:
                batch = asyncio.ensure_future(cursor.fetch(REBUILD_FETCH))
                yield rows
        finally:
            batch.cancel()


async def _rollup_records(batches: AsyncIterator[list[asyncpg.Record]], stats: RebuildStats) -> AsyncIterator[tuple]:
    records = _RollupRecords(stats)
    async for rows in batches:
        with _collector_paused():
            built = records.of(rows)
        for record in built:
            yield record
    for record in records.last():
        yield record


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (a synchronous stretch: no other task runs). A
    batch allocates some 100,000 tuples and sketches, none of them in a cycle, and each
    allocation count past the threshold made the collector walk every live object again:
    a sixth of the Python time of a rebuild."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def _dropped_indexes(conn: asyncpg.Connection) -> list[str]:
    """Drop the indexes of INDEXED_AFTER_LOAD; the statements that build them again."""
    builds = []
    for table in INDEXED_AFTER_LOAD:
        for index in await conn.fetch(ROLLUP_INDEXES, table):
            if index["constraint_name"]:
                name = index["constraint_name"]
                await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
                builds.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {index["constraint_definition"]}')
            else:
                await conn.execute(f"DROP INDEX {index['name']}")
                builds.append(index["definition"])
    return builds


class _Pipe:
    """The rows of a query on its own connection, binary, on their way into a COPY on the
    writer. Started early, the query aggregates (one backend) while the writer is busy with
    other tables; once it is consumed, Python only hands buffers over."""

    def __init__(self, source: asyncpg.Connection, sql: str, *args: Any) -> None:
        self._chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=16)
        self._producer = asyncio.ensure_future(self._produce(source, sql, args))

    async def _produce(self, source: asyncpg.Connection, sql: str, args: tuple) -> None:
        try:
            async with source.transaction(isolation="repeatable_read", readonly=True):
                await source.execute(REBUILD_SETTINGS)
                await source.copy_from_query(sql, *args, output=self._chunks.put, format="binary")
        finally:
            await self._chunks.put(None)

    async def _rows(self) -> AsyncIterator[bytes]:
        while (chunk := await self._chunks.get()) is not None:
            yield chunk

    async def into(self, target: asyncpg.Connection, table: str, columns: Sequence[str]) -> int:
        """COPY everything into `table`; the number of rows."""
        try:
            status = await target.copy_to_table(table, source=self._rows(), columns=columns, format="binary")
        except asyncpg.PostgresError:
            if self._producer.done() and not self._producer.cancelled() and self._producer.exception():
                await self._producer  # the query's error, not the half-fed COPY's
            raise
        await self._producer  # a failed query must not leave a partial table behind
        return int(status.rsplit(" ", 1)[1])

    async def stop(self) -> None:
        """After a failure (the transaction rolls back): stop the query, drop what it sent so
        that its end mark finds room, and wait until it has let go of its connection."""
        if not self._producer.done():
            self._producer.cancel()
            while not self._chunks.empty():
                self._chunks.get_nowait()
        await asyncio.gather(self._producer, return_exceptions=True)


async def _cleared(conn: asyncpg.Connection, org: uuid.UUID | None) -> list[str]:
    """Lock the rollup tables and empty them (of `org`); the index builds to run after loading."""
    await conn.execute(REBUILD_SETTINGS)
    await conn.execute(f"LOCK TABLE {', '.join(ROLLUP_TABLES)} IN SHARE ROW EXCLUSIVE MODE")
    if org is None:
        await conn.execute(f"TRUNCATE {', '.join(ROLLUP_TABLES)}")
        return await _dropped_indexes(conn)
    for table in ROLLUP_TABLES:
        await conn.execute(f"DELETE FROM {table} WHERE organization_id = $1", org)
    return []


async def rebuild_rollups(organization_id: uuid.UUID | str | None = None) -> RebuildStats:
    """Recompute the hour, day and month rollups (counters, sketches, referrers, revenue) of one
    organization, or of all, from `profile_events`; identical to what the worker built."""
    import time

    from app.database import transaction

    started = time.perf_counter()
    org = uuid.UUID(str(organization_id)) if organization_id is not None else None
    stats = RebuildStats(organization_id=org)
    async with (
        transaction() as conn,
        connection() as reader,
        connection() as referrer_source,
        connection() as revenue_source,
    ):
        builds = await _cleared(conn, org)
        hours = _hour_batches(reader, org)
        first = asyncio.ensure_future(anext(hours, None))
        days = await _local_days(conn, org)
        sources = list(_REVENUE_OF_KIND.items())
        referrers = _Pipe(referrer_source, REBUILD_REFERRERS, org, *days, _KIND[PROFILE_VIEWED], DIRECT)
        revenue = _Pipe(revenue_source, REBUILD_REVENUE, org, *days, [k for k, _ in sources], [s for _, s in sources])
        try:
            async with _instants_as_integers(conn):
                await conn.copy_records_to_table(
                    "profile_rollups", records=_rollup_records(_chained(first, hours), stats), columns=ROLLUP_COLUMNS
                )
            stats.referrer_rows = await referrers.into(conn, "profile_referrer_rollups", REFERRER_COLUMNS)
            stats.revenue_rows = await revenue.into(conn, "profile_revenue_rollups", REVENUE_COLUMNS)
        finally:
            # Nothing may touch a connection once it is back in the pool; after a failure the
            # errors of these are echoes of the first one.
            first.cancel()
            await asyncio.gather(first, hours.aclose(), referrers.stop(), revenue.stop(), return_exceptions=True)
        for build in builds:
            await conn.execute(build)
    stats.seconds = time.perf_counter() - started
    log.info("rebuilt rollups: %s", stats.as_dict())
    return stats


async def _chained(first: Awaitable[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    """`first` (the already started first item of `rest`), then the rest."""
    item = await first
    if item is None:
        return
    yield item
    async for item in rest:
        yield item


async def profile_overview(
    *, viewer: Viewer, profile_id: uuid.UUID | str, time_range: RangeSpec, now: datetime | None = None
) -> Overview:
    return await ProfileOverviewQuery(viewer=viewer, profile_id=profile_id, time_range=time_range, now=now).run()


async def profile_timeseries(
    *,
    viewer: Viewer,
    profile_id: uuid.UUID | str,
    time_range: RangeSpec,
    granularity: Grain | str = Grain.DAY,
    now: datetime | None = None,
) -> Timeseries:
    query = ProfileTimeseriesQuery(
        viewer=viewer, profile_id=profile_id, time_range=time_range, granularity=granularity, now=now
    )
    return await query.run()


async def recent_profile_views(*, viewer: Viewer, profile_id: uuid.UUID | str, limit: int = 50) -> list[RecentView]:
    return await RecentProfileViewsQuery(viewer=viewer, profile_id=profile_id, limit=limit).run()


__all__ = [
    "AppliedBatch",
    "Overview",
    "ProfileOverviewQuery",
    "ProfileTimeseriesQuery",
    "RecentProfileViewsQuery",
    "RecentView",
    "Segment",
    "Timeseries",
    "apply_events",
    "engagement_snapshots",
    "plan_segments",
    "profile_overview",
    "profile_timeseries",
    "rebuild_rollups",
    "recent_profile_views",
    "view_payload",
]


class ProfileConsumer(Consumer):
    """Profile events and their rollups; each view live, then the touched profiles' running totals.

    Runs after the processed mark: every batch writes the busiest profiles' day and month
    rows, and their row locks are held until commit."""

    name = PROFILE_ANALYTICS
    event_types = frozenset(PROFILE_EVENT_KIND)
    after_mark = True

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> AppliedBatch:
        return await apply_events(conn, rows, gov_flagged=batch.effects.get(GOV_ASSESSMENT, {}).keys())

    def channels(self, batch: Batch) -> set[str]:
        applied: AppliedBatch = batch.effects[self.name]
        channels = {view_channel(str(event["profile_id"])) for event in applied.views}
        return channels | {engagement_channel(str(profile)) for _, profile in applied.touched_profiles}

    def feed(self, batch: Batch, followed: Collection[str]) -> list[Message]:
        alerts = {alert["eventId"]: alert for alert in batch.effects.get(GOV_ALERTS, ())}
        return [
            (channel, view_payload(event, alerts.get(event["event_id"])))
            for event in batch.effects[self.name].views
            if (channel := view_channel(str(event["profile_id"]))) in followed
        ]

    async def totals(self, batch: Batch, followed: Collection[str]) -> list[Message]:
        applied: AppliedBatch = batch.effects[self.name]
        watched = [(org, profile) for org, profile in applied.touched_profiles if engagement_channel(str(profile)) in followed]
        if not watched:
            return []
        snapshots = await engagement_snapshots(watched, applied.timezones, written=applied.days)
        return [(engagement_channel(s["profileId"]), s) for s in snapshots]
