"""The worker's effects on a batch of profile events, and the live messages they lead to.

Writing (`apply_events`, called inside the worker's claiming transaction): each profile
event is inserted once into `profile_events` (keyed by its event id); only the events that
insert update the hour, day and month rollups, so reprocessing a batch changes nothing.
Unique visitors and inquirers are HyperLogLog sketches (see `sketches`), merged in Python
under row locks taken in one global order, so any number of workers can run at once.

After commit, `ProfileConsumer` publishes each new view (`view_message`) and the touched
profiles' totals of the day (`engagement_snapshots`), taken from the day rows the batch wrote.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import asyncpg
from datasketches import hll_sketch

from app import partitions
from app.consumers import Batch, Consumer
from app.database import connection
from app.live_messages import EngagementSnapshotMessage, GovAlertMessage, ProfileViewMessage
from app.services.claimed_events import EVENT_OF_KEY
from app.services.profile_analytics.sketches import Uniques, conversion_rate, new_sketch
from app.timebuckets import day_start, hour_start, month_start, utcnow
from app.vocabulary import (
    BOOKING_COMPLETED,
    GOV_ALERTS,
    GOV_ASSESSMENT,
    MONEY_EVENT_TYPES,
    PROFILE_ANALYTICS,
    PROFILE_CLICKED,
    PROFILE_EVENT_KIND,
    PROFILE_FAVORITED,
    PROFILE_INQUIRY,
    PROFILE_SHARED,
    PROFILE_UNFAVORITED,
    PROFILE_VIEWED,
    REVENUE_SOURCE,
)

# A rollup row's counters, in the order the batch's delta keeps them.
COUNTERS = ("views", "inquiries", "conversions", "engagement_ms", "favorites", "shares", "clicks")
# Engagement events: the counter each moves, and by how much (an unfavorite takes one back).
ENGAGEMENT_COUNTERS = {
    PROFILE_FAVORITED: (4, 1), PROFILE_UNFAVORITED: (4, -1), PROFILE_SHARED: (5, 1), PROFILE_CLICKED: (6, 1),
}  # fmt: skip

# Every rollup table keeps these grains; a month row makes a 12-month report read 12 sketches
# instead of 365 day sketches.
ROLLUP_GRAINS = ("hour", "day", "month")
DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class DayTotals:
    """A day rollup row's counters and sketches as a batch left them: what an engagement
    snapshot reports."""

    views: int = 0
    inquiries: int = 0
    visitors_hll: bytes | None = None
    inquirers_hll: bytes | None = None
    favorites: int = 0
    shares: int = 0
    clicks: int = 0


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
       r.visitors_hll, r.inquirers_hll, r.favorites, r.shares, r.clicks
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
    favorites = r.favorites + u.favorites,
    shares = r.shares + u.shares,
    clicks = r.clicks + u.clicks,
    visitors_hll = COALESCE(u.visitors_hll, r.visitors_hll),
    inquirers_hll = COALESCE(u.inquirers_hll, r.inquirers_hll),
    updated_at = now()
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::bigint[], $6::bigint[],
            $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bytea[], $13::bytea[])
     AS u(o, p, g, b, views, inquiries, conversions, engagement_ms, favorites, shares, clicks, visitors_hll, inquirers_hll)
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
        # views, inquiries, conversions, engagement ms, favorites (net), shares, clicks
        self.counters: dict[tuple, list[int]] = defaultdict(lambda: [0] * len(COUNTERS))
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
        elif event_type in ENGAGEMENT_COUNTERS:
            position, step = ENGAGEMENT_COUNTERS[event_type]
            self.counters[key][position] += step
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
            visitors_hll.append(merged_sketch(row["visitors_hll"], delta.visitors.get(key)))
            inquirers_hll.append(merged_sketch(row["inquirers_hll"], delta.inquirers.get(key)))
        counters = [delta.counters[k] for k in keys]
        await conn.execute(
            UPDATE_ROLLUPS,
            *key_columns,
            *_columns(counters, len(COUNTERS)),
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
                    favorites=row["favorites"] + added[4],
                    shares=row["shares"] + added[5],
                    clicks=row["clicks"] + added[6],
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


def merged_sketch(stored: bytes | None, ids: set[str] | None) -> bytes | None:
    """The stored sketch with `ids` added; None means "unchanged"."""
    if not ids:
        return None
    sketch = hll_sketch.deserialize(stored) if stored else new_sketch()
    for visitor in ids:
        sketch.update(visitor)
    return sketch.serialize_compact()


# -- live payloads (published by the worker after commit) ---------------------------------


def view_message(event: Mapping[str, Any], gov_alert: GovAlertMessage | None = None) -> ProfileViewMessage:
    """A processed view as the `profileViews` subscription sends it, with the gov alert
    recorded for it when the view was flagged."""
    return ProfileViewMessage(
        event_id=event["event_id"],
        profile_id=event["profile_id"],
        occurred_at=event["occurred_at"].astimezone(UTC),
        country=stripped(event.get("country")),
        city=event.get("city"),
        device_type=event.get("device_type"),
        browser=event.get("browser"),
        os=event.get("os"),
        referrer=event.get("referrer_domain"),
        utm_source=event.get("utm_source"),
        is_gov=bool(event.get("is_gov")),
        gov_alert=gov_alert,
    )


def stripped(value: str | None) -> str | None:
    """A `char(2)` country as sent: without the blank padding PostgreSQL may add."""
    return value.strip() if value else value


TODAY_ROLLUPS = """
SELECT k.o AS organization_id, k.p AS profile_id, k.b AS since,
       r.views, r.inquiries, r.visitors_hll, r.inquirers_hll, r.favorites, r.shares, r.clicks
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
) -> list[EngagementSnapshotMessage]:
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
            int(r["views"] or 0), int(r["inquiries"] or 0), r["visitors_hll"], r["inquirers_hll"],
            int(r["favorites"] or 0), int(r["shares"] or 0), int(r["clicks"] or 0),
        )
        for r in rows
    }


def _snapshot(key: DayKey, totals: DayTotals, now: datetime) -> EngagementSnapshotMessage:
    """The `engagementUpdates` message of one profile's day."""
    visitors, inquirers = Uniques(), Uniques()
    visitors.add_sketch(totals.visitors_hll)
    inquirers.add_sketch(totals.inquirers_hll)
    unique_visitors = visitors.estimate()
    return EngagementSnapshotMessage(
        profile_id=key[1],
        since=key[2].astimezone(UTC),
        views=totals.views,
        unique_visitors=unique_visitors,
        inquiries=totals.inquiries,
        conversion_rate=conversion_rate(inquirers.estimate(), unique_visitors),
        favorites=totals.favorites,
        shares=totals.shares,
        clicks=totals.clicks,
        updated_at=now.astimezone(UTC),
    )


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
        views = {ProfileViewMessage.channel_of(str(event["profile_id"])) for event in applied.views}
        totals = {EngagementSnapshotMessage.channel_of(str(profile)) for _, profile in applied.touched_profiles}
        return views | totals

    def feed(self, batch: Batch, followed: Collection[str]) -> list[ProfileViewMessage]:
        alerts: dict[str, GovAlertMessage] = {alert.event_id: alert for alert in batch.effects.get(GOV_ALERTS, ())}
        return [
            view_message(event, alerts.get(event["event_id"]))
            for event in batch.effects[self.name].views
            if ProfileViewMessage.channel_of(str(event["profile_id"])) in followed
        ]

    async def totals(self, batch: Batch, followed: Collection[str]) -> list[EngagementSnapshotMessage]:
        applied: AppliedBatch = batch.effects[self.name]
        watched = [
            (org, profile)
            for org, profile in applied.touched_profiles
            if EngagementSnapshotMessage.channel_of(str(profile)) in followed
        ]
        if not watched:
            return []
        return await engagement_snapshots(watched, applied.timezones, written=applied.days)
