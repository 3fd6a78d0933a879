"""Sessions: the visit each stored event belongs to, and the `sessions` rows that sum visits up.

A visitor's events without a sessionId continue their latest session while they stay within
30 idle minutes of it and the visit under 24 hours; otherwise they start a new one. A session
keeps the landing page, source and device of its earliest event. Runs inside the storage
transaction, on the events the outbox took as new.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.services.ingestion.enrich import Row

SESSION_IDLE = timedelta(minutes=30)
SESSION_MAX = timedelta(hours=24)


@dataclass(slots=True)
class _OpenSession:
    id: str
    started_at: datetime
    last_seen_at: datetime

    def takes(self, ts: datetime) -> bool:
        """Within 30 idle minutes of the session on either side, and the visit stays under 24 hours."""
        if not self.started_at - SESSION_IDLE <= ts <= self.last_seen_at + SESSION_IDLE:
            return False
        return max(self.last_seen_at, ts) - min(self.started_at, ts) < SESSION_MAX

    def add(self, ts: datetime) -> None:
        self.started_at = min(self.started_at, ts)
        self.last_seen_at = max(self.last_seen_at, ts)


# One index probe per visitor (sessions_visitor). `visitor_id = ANY($2)` would be planned
# generically as a filter over all the tenant's sessions, growing with the table.
_LATEST_SESSIONS = """
SELECT v.visitor_id, s.id, s.started_at, s.last_seen_at
FROM unnest($2::text[]) AS v(visitor_id)
CROSS JOIN LATERAL (
    SELECT id, started_at, last_seen_at FROM sessions
    WHERE organization_id = $1 AND visitor_id = v.visitor_id
    ORDER BY last_seen_at DESC LIMIT 1
) AS s
"""


async def assign(conn: asyncpg.Connection, organization_id: uuid.UUID, rows: list[Row]) -> set[str]:
    """Give each visitor's events without a sessionId the session they continue, or a new one.

    Reads the visitors' latest sessions in one query and returns the ids of those that
    were continued (they exist, so they only need an update). Two concurrent batches of
    the same visitor may both start a session: a split visit, never a lost event.
    """
    by_visitor: dict[str, list[Row]] = {}
    for row in rows:
        if row.event.session_id is None and row.visitor_id is not None:
            by_visitor.setdefault(row.visitor_id, []).append(row)
    if not by_visitor:
        return set()
    records = await conn.fetch(_LATEST_SESSIONS, organization_id, list(by_visitor))
    latest = {r["visitor_id"]: _OpenSession(r["id"], r["started_at"], r["last_seen_at"]) for r in records}
    continued: set[str] = set()
    for visitor, visits in by_visitor.items():
        found = latest.get(visitor)
        _walk_visitor(visits, found)
        if found is not None and visits[0].session_id == found.id:
            continued.add(found.id)
    return continued


def _walk_visitor(rows: list[Row], current: _OpenSession | None) -> None:
    """In time order: continue the open session while it takes the event, else start one."""
    rows.sort(key=lambda r: r.event.occurred_at)
    for row in rows:
        ts = row.event.occurred_at
        if current is None or not current.takes(ts):
            current = _OpenSession(uuid.uuid4().hex, ts, ts)
        else:
            current.add(ts)
        row.session_id = current.id


_INSERT_SESSIONS = """
INSERT INTO sessions AS s (organization_id, id, visitor_id, started_at, last_seen_at, event_count, landing_page,
    referrer_domain, utm_source, utm_medium, utm_campaign, device_type, browser, os, country)
SELECT $1::uuid, u.* FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
    $15::text[]) AS u
ON CONFLICT (organization_id, id) DO UPDATE SET
    started_at = LEAST(s.started_at, EXCLUDED.started_at),
    last_seen_at = GREATEST(s.last_seen_at, EXCLUDED.last_seen_at),
    event_count = s.event_count + EXCLUDED.event_count
"""

# Written as an upsert, not UPDATE .. FROM unnest(): the arbiter index makes it one primary
# key probe per session, where a generic UPDATE plan hash-joins all the tenant's sessions.
# Should the session have vanished meanwhile, it comes back without attribution.
_EXTEND_SESSIONS = """
INSERT INTO sessions AS s (organization_id, id, visitor_id, started_at, last_seen_at, event_count)
SELECT $1::uuid, u.* FROM unnest($2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::int[]) AS u
ON CONFLICT (organization_id, id) DO UPDATE SET
    started_at = LEAST(s.started_at, EXCLUDED.started_at),
    last_seen_at = GREATEST(s.last_seen_at, EXCLUDED.last_seen_at),
    event_count = s.event_count + EXCLUDED.event_count
"""


async def upsert(
    conn: asyncpg.Connection, organization_id: uuid.UUID, rows: list[Row], continued: set[str]
) -> None:
    """Extend the sessions known to exist with 5 columns; upsert the others with first-touch attribution.

    Both statements go in session-id order (one lock order across concurrent batches).
    Client-named sessions may or may not exist, so they take the upsert.
    """
    extend: list[tuple[Any, ...]] = []
    insert: list[tuple[Any, ...]] = []
    for session_id, members in sorted(_sessions_of(rows).items()):
        first = min(members, key=lambda r: r.event.occurred_at)
        last_seen = max(r.event.occurred_at for r in members)
        if session_id in continued:
            extend.append((session_id, first.visitor_id, first.event.occurred_at, last_seen, len(members)))
        else:
            insert.append(_new_session(session_id, first, last_seen, len(members)))
    if extend:
        await conn.execute(_EXTEND_SESSIONS, organization_id, *zip(*extend, strict=True))
    if insert:
        await conn.execute(_INSERT_SESSIONS, organization_id, *zip(*insert, strict=True))


def _sessions_of(rows: list[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = {}
    for row in rows:
        if row.session_id is not None:
            grouped.setdefault(row.session_id, []).append(row)
    return grouped


def _new_session(session_id: str, first: Row, last_seen: datetime, count: int) -> tuple[Any, ...]:
    """A session's landing page, source and device are those of its earliest event."""
    a, d = first.attribution, first.device
    return (
        session_id, first.visitor_id, first.event.occurred_at, last_seen, count, a.url, a.referrer_domain,
        a.utm_source, a.utm_medium, a.utm_campaign, d.device_type, d.browser, d.os, first.country,
    )  # fmt: skip
