"""Persons: who the events are from, their identity links and their properties.

A person is keyed like events.visitor_id: 'u:<user id>', else 'a:<anonymous id>', else the
cookie-less daily hash. Everything here is written by ingestion itself, inside the storage
transaction of the batch (`record`), so an accepted event's person is there when the call
returns and no event needs the worker for it:

- **Which persons exist**: every person key seen in events (a `persons` row per key, made
  by the batch that first sends it) plus every identified user. A key an identify linked
  to a user is not a person of its own any more: listings leave it out and `person` answers
  with the user.
- **First and last seen**: each `persons` row keeps the earliest and latest occurred_at of
  the events sent under its key (one upsert per batch, rows in key order; a row is only
  rewritten when a bound moves). A person's first / last seen are read as the bounds over
  its own row and its linked anonymous keys' rows, so a link needs no rewrite.
- **Links** (`user.identified`, tracked or published, or the `identify` mutation, which
  records that event): the anonymous key becomes the user's in every insight, for events
  received before the link too (insights read links at query time). The first link of an
  anonymous id holds; a later one to another user is ignored. Linking folds the anonymous
  key's properties into the user's with the rule below.
- **Properties**: an event's `properties.$set` overwrites keys, `properties.$set_once` only
  fills missing ones, applied in event order (occurred_at, then arrival, then event id)
  whatever order events arrive in: a key's value is the one of its latest $set, or, when no
  $set ever wrote it, of its earliest $set_once. Each key keeps the stamp of the write that
  set it (`persons.property_stamps`), so a late event only changes the keys it is newer for.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from app.auth import Viewer, administered_organization, require_writer
from app.database import connection
from app.errors import BadInput, NotFound
from app.services.insights.grammar import cohort_id
from app.vocabulary import USER_IDENTIFIED

REFUSAL = "persons are read by organization admins: they need an organization admin token"
PAGE_DEFAULT = 50
PAGE_MAX = 200
SEARCH_MAX_CHARS = 200
PERSON_ID_MAX_CHARS = 300
SET, ONCE = "set", "once"

# -- written by ingestion -------------------------------------------------------------------


@dataclass(slots=True)
class PropertyWrite:
    """One event's $set or $set_once of one person, with the stamp that orders it."""

    person: str  # the event's key; the alias it is linked to (if any) is looked up when applied
    op: str  # SET | ONCE
    values: Mapping[str, Any]
    stamp: str


def stamp(occurred_at: datetime, received_at: datetime, event_id: str) -> str:
    """Event order as text: fixed-width UTC times, so stamps compare as strings."""
    return f"{_utc(occurred_at)}|{_utc(received_at)}|{event_id}"


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def merge(values: dict[str, Any], stamps: dict[str, Any], write: PropertyWrite) -> bool:
    """Apply one write to a person's properties in place; True if anything changed. A $set
    wins over what a $set_once wrote and over older $sets; a $set_once only over a later
    $set_once (or a missing key)."""
    changed = False
    for key, value in write.values.items():
        current = stamps.get(key)
        if current is not None:
            op, at = current
            if write.op == SET and op == SET and at >= write.stamp:
                continue
            if write.op == ONCE and (op == SET or at <= write.stamp):
                continue
        values[key] = value
        stamps[key] = [write.op, write.stamp]
        changed = True
    return changed


_SEEN = """
INSERT INTO persons AS p (organization_id, id, first_seen_at, last_seen_at)
SELECT $1::uuid, s.id, s.first_at, s.last_at FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[]) AS s(id, first_at, last_at)
ON CONFLICT (organization_id, id) DO UPDATE
SET first_seen_at = LEAST(p.first_seen_at, EXCLUDED.first_seen_at),
    last_seen_at = GREATEST(p.last_seen_at, EXCLUDED.last_seen_at)
WHERE p.first_seen_at IS NULL OR p.last_seen_at IS NULL
   OR EXCLUDED.first_seen_at < p.first_seen_at OR EXCLUDED.last_seen_at > p.last_seen_at
"""

_LINK = """
INSERT INTO person_aliases (organization_id, alias, person_id)
SELECT $1::uuid, l.alias, l.person_id FROM unnest($2::text[], $3::text[]) AS l(alias, person_id)
ORDER BY l.alias
ON CONFLICT (organization_id, alias) DO NOTHING
RETURNING alias, person_id
"""

_ENSURE = """
INSERT INTO persons (organization_id, id) SELECT $1::uuid, k.id FROM unnest($2::text[]) AS k(id) ORDER BY k.id
ON CONFLICT (organization_id, id) DO NOTHING
"""

_LOCK = """
SELECT id, properties::text AS properties, property_stamps::text AS stamps
FROM persons WHERE organization_id = $1 AND id = ANY($2::text[]) ORDER BY id FOR UPDATE
"""

_WRITE = """
UPDATE persons p SET properties = w.properties, property_stamps = w.stamps, updated_at = now()
FROM unnest($2::text[], $3::jsonb[], $4::jsonb[]) AS w(id, properties, stamps)
WHERE p.organization_id = $1 AND p.id = w.id
"""

_ALIASES_OF = """
SELECT alias, person_id FROM person_aliases WHERE organization_id = $1 AND alias = ANY($2::text[])
"""


async def record(conn: asyncpg.Connection, organization_id: uuid.UUID, events: Sequence[Any]) -> None:
    """A stored batch's effects on persons, inside its transaction. `events` are ingestion's
    rows (attributes `event` and `visitor_id`); only the bounds upsert runs for every batch,
    links and properties only for batches that carry them."""
    seen: dict[str, list[datetime]] = {}
    links: dict[str, str] = {}
    writes: list[tuple[str, str, Mapping[str, Any], Any]] = []  # (key, op, values, event)
    for row in events:
        key = row.visitor_id
        if key is None:
            continue
        event = row.event
        at = event.occurred_at
        bounds = seen.get(key)
        if bounds is None:
            seen[key] = [at, at]
        elif at < bounds[0]:
            bounds[0] = at
        elif at > bounds[1]:
            bounds[1] = at
        if event.type == USER_IDENTIFIED and event.user_id and event.anonymous_id:
            links.setdefault(f"a:{event.anonymous_id}", f"u:{event.user_id}")
        if event.person_set_once:
            writes.append((key, ONCE, event.person_set_once, event))
        if event.person_set:
            writes.append((key, SET, event.person_set, event))
    if not seen:
        return
    keys = sorted(seen)
    await conn.execute(_SEEN, organization_id, keys, [seen[k][0] for k in keys], [seen[k][1] for k in keys])
    if links:
        await _link(conn, organization_id, links)
    if writes:
        now = await conn.fetchval("SELECT now()")  # the events' received_at (their column's default)
        await apply_writes(
            conn,
            organization_id,
            [PropertyWrite(key, op, values, stamp(e.occurred_at, now, e.event_id)) for key, op, values, e in writes],
        )


async def _link(conn: asyncpg.Connection, organization_id: uuid.UUID, links: Mapping[str, str]) -> list[str]:
    """Store new links (the first of an anonymous id holds) and fold each newly linked
    anonymous key's properties into its user's; returns the anonymous keys linked now."""
    aliases = sorted(links)
    made = await conn.fetch(_LINK, organization_id, aliases, [links[a] for a in aliases])
    if not made:
        return []
    await conn.execute(_ENSURE, organization_id, sorted({r["person_id"] for r in made} | {r["alias"] for r in made}))
    rows = await _locked(conn, organization_id, [r["alias"] for r in made] + [r["person_id"] for r in made])
    changed: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for made_link in made:
        source_values, source_stamps = rows[made_link["alias"]]
        user = made_link["person_id"]
        for key, value in source_values.items():
            op, at = source_stamps.get(key) or (SET, "")
            if merge(*rows[user], PropertyWrite(user, op, {key: value}, at)):
                changed[user] = rows[user]
    await _write(conn, organization_id, changed)
    return [r["alias"] for r in made]


async def apply_writes(conn: asyncpg.Connection, organization_id: uuid.UUID, writes: list[PropertyWrite]) -> None:
    """Apply $set / $set_once writes to the persons they are for (a linked anonymous key's
    to its user). The raw keys' rows are locked before their links are read, so a link made
    concurrently is either seen here or folds in what this wrote."""
    raw = sorted({w.person for w in writes})
    await conn.execute(_ENSURE, organization_id, raw)
    await _locked(conn, organization_id, raw)
    targets = {r["alias"]: r["person_id"] for r in await conn.fetch(_ALIASES_OF, organization_id, [k for k in raw if k.startswith("a:")])}
    for write in writes:
        write.person = targets.get(write.person, write.person)
    wanted = sorted({w.person for w in writes})
    await conn.execute(_ENSURE, organization_id, wanted)
    rows = await _locked(conn, organization_id, wanted)
    changed: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for write in sorted(writes, key=lambda w: (w.stamp, w.op == SET)):
        if merge(*rows[write.person], write):
            changed[write.person] = rows[write.person]
    await _write(conn, organization_id, changed)


async def _locked(conn: asyncpg.Connection, organization_id: uuid.UUID, keys: Iterable[str]) -> dict[str, tuple[dict, dict]]:
    found = await conn.fetch(_LOCK, organization_id, sorted(set(keys)))
    return {r["id"]: (orjson.loads(r["properties"]), orjson.loads(r["stamps"])) for r in found}


async def _write(conn: asyncpg.Connection, organization_id: uuid.UUID, changed: Mapping[str, tuple[dict, dict]]) -> None:
    if not changed:
        return
    ids = sorted(changed)
    await conn.execute(
        _WRITE,
        organization_id,
        ids,
        [orjson.dumps(changed[i][0]).decode() for i in ids],
        [orjson.dumps(changed[i][1]).decode() for i in ids],
    )


async def link(conn: asyncpg.Connection, *, organization_id: uuid.UUID, anonymous_id: str, user_id: str) -> bool:
    """Link an anonymous id to a user id: the anonymous history becomes the user's in every
    insight. The first link of an anonymous id holds; a later one to another user is ignored
    (False)."""
    return bool(await _link(conn, organization_id, {f"a:{anonymous_id}": f"u:{user_id}"}))


# -- identify -------------------------------------------------------------------------------


def identify_event(*, user_id: str, anonymous_id: str, properties: Any, set_once: Any) -> dict[str, Any]:
    """The `user.identified` event the identify mutation records (ingestion's dict): the
    link and the properties take the one path every event takes."""
    person: dict[str, Any] = {}
    for name, value, key in (("properties", properties, "$set"), ("setOnce", set_once, "$set_once")):
        if value is None:
            continue
        if not isinstance(value, dict):
            raise BadInput(f"{name} must be an object of person properties", field=name)
        person[key] = value
    return {"type": USER_IDENTIFIED, "user_id": user_id, "anonymous_id": anonymous_id, "properties": person}


async def identify_scope(viewer: Viewer, organization_id: Any) -> uuid.UUID:
    """Ingestion keys, service and organization admin tokens write to their own organization;
    naming another is NOT_FOUND."""
    own = require_writer(viewer)
    if organization_id is not None and str(organization_id).strip().lower() != str(own):
        raise NotFound("organization not found", field="organizationId")
    return own


async def identify_outcome(organization_id: uuid.UUID, anonymous_id: str, user_id: str) -> tuple[str, bool]:
    """After the identify event is stored: the person the anonymous id now counts as, and
    whether that is this user (False: an earlier identify linked it to another user)."""
    async with connection() as conn:
        linked = await conn.fetchval(
            "SELECT person_id FROM person_aliases WHERE organization_id = $1 AND alias = $2", organization_id, f"a:{anonymous_id}"
        )
    user = f"u:{user_id}"
    return user, linked == user


# -- reading ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Person:
    id: str
    properties: dict[str, Any]
    first_seen_at: datetime | None
    last_seen_at: datetime | None
    created_at: datetime | None
    aliases: list[str] = field(default_factory=list)  # the anonymous keys linked to it

    @property
    def user_id(self) -> str | None:
        return self.id[2:] if self.id.startswith("u:") else None

    @property
    def anonymous_ids(self) -> list[str]:
        keys = ([self.id] if self.id.startswith("a:") else []) + self.aliases
        return [k[2:] for k in keys]


@dataclass(frozen=True, slots=True)
class PersonPage:
    organization_id: uuid.UUID
    persons: list[Person]
    end_cursor: str | None
    has_next_page: bool


@dataclass(frozen=True, slots=True)
class PersonEvent:
    event_id: str
    type: str
    occurred_at: datetime
    received_at: datetime
    person_key: str
    user_id: str | None
    anonymous_id: str | None
    profile_id: uuid.UUID | None
    session_id: str | None
    url: str | None
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[PersonEvent]
    end_cursor: str | None
    has_next_page: bool


async def persons_scope(viewer: Viewer, organization_id: Any) -> uuid.UUID:
    return await administered_organization(viewer, organization_id, refusal=REFUSAL)


def _encode(*parts: str) -> str:
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode()


def _decode(cursor: str | None, count: int, what: str) -> list[str] | None:
    if cursor is None:
        return None
    try:
        parts = base64.urlsafe_b64decode(cursor.encode()).decode().split("\x1f")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        parts = []
    if len(parts) != count:
        raise BadInput(f"after is not a cursor returned by {what}", field="after")
    return parts


def page_size(first: int | None, default: int = PAGE_DEFAULT) -> int:
    first = default if first is None else first
    if not 1 <= first <= PAGE_MAX:
        raise BadInput(f"first must be from 1 to {PAGE_MAX}", field="first")
    return first


def _search_pattern(search: str | None) -> str | None:
    if search is None or not search.strip():
        return None
    text = search.strip()
    if len(text) > SEARCH_MAX_CHARS:
        raise BadInput(f"search has at most {SEARCH_MAX_CHARS} characters", field="search")
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


# Persons in key order (the primary key's), past the cursor; a key linked to a user is no
# person of its own. Search looks at the key, the linked anonymous keys and the properties' text.
_MATCHES = """($3::text IS NULL OR p.id ILIKE $3 OR p.properties::text ILIKE $3
   OR EXISTS (SELECT 1 FROM person_aliases s WHERE s.organization_id = p.organization_id AND s.person_id = p.id AND s.alias ILIKE $3))"""
_LIST = f"""
SELECT p.id FROM persons p
WHERE p.organization_id = $1 AND ($2::text IS NULL OR p.id > $2)
  AND NOT EXISTS (SELECT 1 FROM person_aliases a WHERE a.organization_id = p.organization_id AND a.alias = p.id)
  AND {_MATCHES}
ORDER BY p.id LIMIT $4
"""
# A cohort's members in key order (a static list may name persons not seen yet).
_LIST_MEMBERS = f"""
SELECT m.person_id AS id FROM cohort_members m
LEFT JOIN persons p ON p.organization_id = m.organization_id AND p.id = m.person_id
WHERE m.organization_id = $1 AND m.cohort_id = $5 AND ($2::text IS NULL OR m.person_id > $2)
  AND ($3::text IS NULL OR m.person_id ILIKE $3 OR {_MATCHES})
ORDER BY m.person_id LIMIT $4
"""
# Each person with its linked keys, properties and first / last seen over all its keys.
_DETAILS = """
SELECT k.id, p.properties::text AS properties, p.created_at,
       COALESCE(array_agg(DISTINCT a.alias) FILTER (WHERE a.alias IS NOT NULL), '{}') AS aliases,
       LEAST(p.first_seen_at, min(x.first_seen_at)) AS first_seen_at,
       GREATEST(p.last_seen_at, max(x.last_seen_at)) AS last_seen_at
FROM unnest($2::text[]) AS k(id)
LEFT JOIN persons p ON p.organization_id = $1 AND p.id = k.id
LEFT JOIN person_aliases a ON a.organization_id = $1 AND a.person_id = k.id
LEFT JOIN persons x ON x.organization_id = $1 AND x.id = a.alias
GROUP BY k.id, p.properties::text, p.created_at, p.first_seen_at, p.last_seen_at
"""


async def details(conn: asyncpg.Connection, organization_id: uuid.UUID, ids: list[str]) -> list[Person]:
    """The persons `ids`, in that order."""
    rows = {r["id"]: r for r in await conn.fetch(_DETAILS, organization_id, ids)}
    return [
        Person(
            id=i,
            properties=orjson.loads(rows[i]["properties"]) if rows[i]["properties"] else {},
            first_seen_at=rows[i]["first_seen_at"],
            last_seen_at=rows[i]["last_seen_at"],
            created_at=rows[i]["created_at"],
            aliases=sorted(rows[i]["aliases"]),
        )
        for i in ids
    ]


async def list_persons(
    *, viewer: Viewer, organization_id: Any = None, search: str | None = None, cohort: Any = None, first: int | None = None,
    after: str | None = None,
) -> PersonPage:  # fmt: skip
    """One page of an organization's persons (or a cohort's members) in key order."""
    org = await persons_scope(viewer, organization_id)
    size = page_size(first)
    pattern = _search_pattern(search)
    cursor = _decode(after, 1, "persons")
    position = cursor[0] if cursor else None
    async with connection() as conn:
        if cohort is not None:
            cid = await _own_cohort(conn, org, cohort, "cohortId")
            rows = await conn.fetch(_LIST_MEMBERS, org, position, pattern, size + 1, cid)
        else:
            rows = await conn.fetch(_LIST, org, position, pattern, size + 1)
        ids = [r["id"] for r in rows[:size]]
        persons = await details(conn, org, ids)
    return PersonPage(org, persons, _encode(ids[-1]) if ids else None, len(rows) > size)


async def _own_cohort(conn: asyncpg.Connection, org: uuid.UUID, value: Any, field_name: str) -> uuid.UUID:
    try:
        cid = uuid.UUID(cohort_id(str(value), field_name))
    except BadInput:
        raise NotFound("cohort not found", field=field_name) from None
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM cohorts WHERE organization_id = $1 AND id = $2)", org, cid):
        raise NotFound("cohort not found", field=field_name)
    return cid


async def get_person(*, viewer: Viewer, organization_id: Any = None, person_id: str) -> tuple[uuid.UUID, Person]:
    """One person (and its organization) by any of its keys (a linked anonymous key answers
    with its user)."""
    org = await persons_scope(viewer, organization_id)
    key = (person_id or "").strip()
    if not key or len(key) > PERSON_ID_MAX_CHARS or "\x00" in key:  # PostgreSQL text cannot hold NUL
        raise NotFound("person not found", field="id")
    async with connection() as conn:
        canonical = await conn.fetchval(
            "SELECT COALESCE((SELECT person_id FROM person_aliases WHERE organization_id = $1 AND alias = $2),"
            " (SELECT id FROM persons WHERE organization_id = $1 AND id = $2))",
            org,
            key,
        )
        if canonical is None:
            raise NotFound("person not found", field="id")
        (person,) = await details(conn, org, [canonical])
    return org, person


# Latest first, per key through its (organization_id, visitor_id, occurred_at) index, then merged:
# a long history is never sorted whole for one page.
_EVENTS = """
SELECT e.* FROM unnest($2::text[]) AS k(key)
CROSS JOIN LATERAL (
    SELECT event_id, type, occurred_at, received_at, visitor_id, user_id, anonymous_id, profile_id, session_id, url,
           properties::text AS properties
    FROM events
    WHERE organization_id = $1 AND visitor_id = k.key
      AND ($3::timestamptz IS NULL OR (occurred_at, received_at, event_id) < ($3, $4::timestamptz, $5::text))
    ORDER BY occurred_at DESC, received_at DESC, event_id DESC
    LIMIT $6
) AS e
ORDER BY e.occurred_at DESC, e.received_at DESC, e.event_id DESC
LIMIT $6
"""


async def person_events(organization_id: uuid.UUID, person: Person, *, first: int | None = None, after: str | None = None) -> EventPage:
    """The person's events, latest first: those sent under its key and under every anonymous
    key linked to it (the scope was checked when the person was read)."""
    size = page_size(first, default=20)
    cursor = _decode(after, 3, "events")
    at = received = None
    event_id = None
    if cursor:
        try:
            at, received, event_id = datetime.fromisoformat(cursor[0]), datetime.fromisoformat(cursor[1]), cursor[2]
        except ValueError:
            raise BadInput("after is not a cursor returned by events", field="after") from None
    async with connection() as conn:
        rows = await conn.fetch(_EVENTS, organization_id, [person.id, *person.aliases], at, received, event_id, size + 1)
    events = [_event(r) for r in rows[:size]]
    last = events[-1] if events else None
    end = _encode(last.occurred_at.isoformat(), last.received_at.isoformat(), last.event_id) if last else None
    return EventPage(events, end, len(rows) > size)


def _event(r: asyncpg.Record) -> PersonEvent:
    return PersonEvent(
        event_id=r["event_id"], type=r["type"], occurred_at=r["occurred_at"], received_at=r["received_at"],
        person_key=r["visitor_id"], user_id=r["user_id"], anonymous_id=r["anonymous_id"], profile_id=r["profile_id"],
        session_id=r["session_id"], url=r["url"], properties=orjson.loads(r["properties"]) if r["properties"] else {},
    )  # fmt: skip


# -- data-subject deletion ------------------------------------------------------------------


async def linked_keys(conn: asyncpg.Connection, organization_id: uuid.UUID, keys: list[str]) -> list[str]:
    """The anonymous keys identifies linked to these person keys."""
    rows = await conn.fetch(
        "SELECT alias FROM person_aliases WHERE organization_id = $1 AND person_id = ANY($2::text[]) ORDER BY alias",
        organization_id,
        keys,
    )
    return [r["alias"] for r in rows]


async def forget(conn: asyncpg.Connection, organization_id: uuid.UUID, keys: list[str]) -> int:
    """Delete the persons `keys` (and their links and cohort memberships, and their ids in
    static cohort lists) inside the caller's transaction; returns the persons deleted."""
    await conn.execute(
        "DELETE FROM person_aliases WHERE organization_id = $1 AND (alias = ANY($2::text[]) OR person_id = ANY($2::text[]))",
        organization_id,
        keys,
    )
    touched = await conn.fetch(
        "DELETE FROM cohort_members WHERE organization_id = $1 AND person_id = ANY($2::text[]) RETURNING cohort_id",
        organization_id,
        keys,
    )
    await conn.execute(
        """
        UPDATE cohorts c SET definition = jsonb_set(c.definition, '{personIds}', COALESCE((
            SELECT jsonb_agg(x) FROM jsonb_array_elements_text(c.definition -> 'personIds') AS x WHERE x <> ALL($2::text[])
        ), '[]'::jsonb))
        WHERE c.organization_id = $1 AND c.kind = 'static' AND c.definition -> 'personIds' ?| $2::text[]
        """,
        organization_id,
        keys,
    )
    cohorts = sorted({r["cohort_id"] for r in touched})
    if cohorts:
        await conn.execute(
            "UPDATE cohorts c SET member_count = (SELECT count(*) FROM cohort_members m"
            " WHERE m.organization_id = c.organization_id AND m.cohort_id = c.id)"
            " WHERE c.organization_id = $1 AND c.id = ANY($2::uuid[])",
            organization_id,
            cohorts,
        )
    deleted = await conn.execute("DELETE FROM persons WHERE organization_id = $1 AND id = ANY($2::text[])", organization_id, keys)
    return int(deleted.split()[-1])
