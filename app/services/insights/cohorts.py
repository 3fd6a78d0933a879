"""Cohorts: named sets of persons, defined once and computed again and again.

A cohort is a stored definition of one of four kinds, and the members its last computation
found (`cohort_members`, person keys as every insight reads them: a linked anonymous id counts
as its user). Every insight filters on membership (grammar: source COHORT, key = cohort id).

- **behavioral**: persons who did (or did not) do an event matching a matcher (name and
  property filters) at least `minCount` times in the last `days` days (a rolling window of
  `days` x 24 hours ending at the computation). "Did not" is every person (see persons.py:
  each key seen in events, a linked key being its user) with fewer matching events.
- **person_property**: persons whose properties meet every filter (PERSON source only).
- **first_seen**: persons first seen in a range (a preset moves with each computation; a
  custom from/to stays put). First seen is over every key of the person.
- **static**: a list of person keys (u:<userId>, a:<anonymousId>, ...), each counted as the
  person it is now (a linked anonymous key as its user), seen in events yet or not.

Members are computed when a cohort is created or changed (in the same transaction, so it is
usable at once; one too large for the API's statement timeout is saved uncomputed) and by the
scheduler's `cohorts` job every round for every cohort; each computation replaces the members
and sets `member_count` and `computed_at`. Organization
admins (and platform admins, naming the organization) manage and read cohorts.
"""

from __future__ import annotations

import csv
import io
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

import asyncpg
import orjson

from app.auth import Viewer, administered_organization
from app.database import connection, transaction
from app.errors import BadInput, NotFound, parse_id
from app.jobs import Job
from app.services.insights import grammar
from app.services.insights.grammar import EventMatcher, PropertyFilter, PropertySource, Sql
from app.services.insights.persons import PERSON_ID_MAX_CHARS
from app.services.insights.query import check_regexes
from app.settings import Settings
from app.timebuckets import Preset, RangeSpec, resolve_range

log = logging.getLogger("pulsegraph.cohorts")

REFUSAL = "cohorts read every person of an organization: they need an organization admin token"
NAME_MAX_CHARS = 200
MAX_DAYS = 365
MAX_MIN_COUNT = 1_000_000
MAX_STATIC_IDS = 10_000
MAX_COHORTS = 500  # per organization
CSV_CHUNK = 5000
CSV_TYPE = "text/csv; charset=utf-8"


class CohortKind(str, Enum):
    BEHAVIORAL = "behavioral"
    PERSON_PROPERTY = "person_property"
    FIRST_SEEN = "first_seen"
    STATIC = "static"


# The definition fields each kind takes (as the input names them); any other is refused.
KIND_FIELDS: dict[CohortKind, frozenset[str]] = {
    CohortKind.BEHAVIORAL: frozenset({"event", "performed", "minCount", "days"}),
    CohortKind.PERSON_PROPERTY: frozenset({"filters"}),
    CohortKind.FIRST_SEEN: frozenset({"range"}),
    CohortKind.STATIC: frozenset({"personIds"}),
}


@dataclass(frozen=True, slots=True)
class Behavioral:
    matcher: EventMatcher
    performed: bool
    min_count: int
    days: int


@dataclass(frozen=True, slots=True)
class PersonProperties:
    filters: tuple[PropertyFilter, ...]


@dataclass(frozen=True, slots=True)
class FirstSeen:
    range: RangeSpec


@dataclass(frozen=True, slots=True)
class Static:
    person_ids: tuple[str, ...]


Definition = Behavioral | PersonProperties | FirstSeen | Static
KIND_OF = {Behavioral: CohortKind.BEHAVIORAL, PersonProperties: CohortKind.PERSON_PROPERTY, FirstSeen: CohortKind.FIRST_SEEN,
           Static: CohortKind.STATIC}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Cohort:
    organization_id: uuid.UUID
    id: uuid.UUID
    name: str
    kind: CohortKind
    definition: dict[str, Any]  # the stored form (the input's field names)
    member_count: int | None
    computed_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


# -- validation -----------------------------------------------------------------------------


def check_fields(kind: CohortKind, given: set[str], field: str = "definition") -> None:
    """A kind takes its own fields only: another kind's field is refused by name."""
    for name in sorted(given - KIND_FIELDS[kind]):
        raise BadInput(f"a {kind.name} cohort has no {name}; it takes {', '.join(sorted(KIND_FIELDS[kind]))}", field=f"{field}.{name}")


def behavioral(matcher: EventMatcher | None, *, performed: bool | None, min_count: int | None, days: int | None,
               field: str = "definition") -> Behavioral:  # fmt: skip
    if matcher is None:
        raise BadInput("a BEHAVIORAL cohort names its event", field=f"{field}.event")
    min_count = 1 if min_count is None else min_count
    if not 1 <= min_count <= MAX_MIN_COUNT:
        raise BadInput(f"minCount is from 1 to {MAX_MIN_COUNT}", field=f"{field}.minCount")
    if days is None:
        raise BadInput(f"a BEHAVIORAL cohort looks back a number of days (1 to {MAX_DAYS})", field=f"{field}.days")
    if not 1 <= days <= MAX_DAYS:
        raise BadInput(f"days is from 1 to {MAX_DAYS}", field=f"{field}.days")
    return Behavioral(matcher, True if performed is None else performed, min_count, days)


def person_properties(filters: list[PropertyFilter] | None, field: str = "definition") -> PersonProperties:
    if not filters:
        raise BadInput("a PERSON_PROPERTY cohort needs at least one filter", field=f"{field}.filters")
    for i, f in enumerate(filters):
        if f.source is not PropertySource.PERSON:
            raise BadInput("a PERSON_PROPERTY cohort filters person properties (source PERSON)", field=f"{field}.filters[{i}].source")
    return PersonProperties(tuple(filters))


def first_seen(spec: RangeSpec | None, field: str = "definition") -> FirstSeen:
    if spec is None:
        raise BadInput("a FIRST_SEEN cohort names a range", field=f"{field}.range")
    try:
        resolve_range(spec, "UTC")
    except BadInput as exc:
        raise BadInput(exc.message, field=f"{field}.{exc.field or 'range'}") from None
    return FirstSeen(spec)


def static(person_ids: list[str] | None, field: str = "definition") -> Static:
    if not person_ids:
        raise BadInput("a STATIC cohort lists at least one person id", field=f"{field}.personIds")
    if len(person_ids) > MAX_STATIC_IDS:
        raise BadInput(f"a STATIC cohort lists at most {MAX_STATIC_IDS} ids", field=f"{field}.personIds")
    ids = []
    for i, value in enumerate(person_ids):
        key = value.strip() if isinstance(value, str) else ""
        if not key or len(key) > PERSON_ID_MAX_CHARS or not key.isprintable():
            raise BadInput(f"a person id is printable text of 1 to {PERSON_ID_MAX_CHARS} characters", field=f"{field}.personIds[{i}]")
        ids.append(key)
    return Static(tuple(dict.fromkeys(ids)))


def check_name(name: str | None) -> str:
    text = (name or "").strip()
    if not text or len(text) > NAME_MAX_CHARS:
        raise BadInput(f"a cohort's name has 1 to {NAME_MAX_CHARS} characters", field="name")
    return text


# -- the stored form --------------------------------------------------------------------------


def _filter_json(f: PropertyFilter) -> dict[str, Any]:
    value = list(f.value) if isinstance(f.value, tuple) else (str(f.value) if f.value is not None and f.operator in grammar.NUMERIC_OPERATORS else f.value)
    return {"source": f.source.value, "key": f.key, "operator": f.operator.value, "value": value}


def _filters_of(stored: list[dict[str, Any]], field: str) -> tuple[PropertyFilter, ...]:
    return tuple(_filter_of(f, f"{field}[{i}]") for i, f in enumerate(stored))


def _filter_of(f: dict[str, Any], field: str) -> PropertyFilter:
    source, operator = PropertySource(f["source"]), grammar.FilterOperator(f["operator"])
    return grammar.property_filter(source=source, key=f["key"], operator=operator, value=f.get("value"), field=field)


def stored(definition: Definition) -> dict[str, Any]:
    if isinstance(definition, Behavioral):
        m = definition.matcher
        return {"event": {"event": m.event, "filters": [_filter_json(f) for f in m.filters]}, "performed": definition.performed,
                "minCount": definition.min_count, "days": definition.days}  # fmt: skip
    if isinstance(definition, PersonProperties):
        return {"filters": [_filter_json(f) for f in definition.filters]}
    if isinstance(definition, FirstSeen):
        spec = definition.range
        if spec.preset is not None:
            preset = spec.preset.value if isinstance(spec.preset, Enum) else spec.preset
            return {"range": {"preset": preset}}
        return {"range": {"from": spec.start.isoformat() if spec.start else None, "to": spec.end.isoformat() if spec.end else None}}
    return {"personIds": list(definition.person_ids)}


def loaded(kind: CohortKind, data: dict[str, Any]) -> Definition:
    if kind is CohortKind.BEHAVIORAL:
        event = data["event"]
        matcher = EventMatcher(event["event"], _filters_of(event.get("filters") or [], "definition.event.filters"))
        return Behavioral(matcher, bool(data["performed"]), int(data["minCount"]), int(data["days"]))
    if kind is CohortKind.PERSON_PROPERTY:
        return PersonProperties(_filters_of(data["filters"], "definition.filters"))
    if kind is CohortKind.FIRST_SEEN:
        r = data["range"]
        if r.get("preset"):
            return FirstSeen(RangeSpec(preset=Preset(r["preset"])))
        return FirstSeen(RangeSpec(start=_instant(r.get("from")), end=_instant(r.get("to"))))
    return Static(tuple(data.get("personIds") or ()))


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


# -- computing members ----------------------------------------------------------------------


def _everyone(alias: str, org: str) -> str:
    """Every person of an organization as `alias`: each key seen in events or identified,
    but a key linked to a user (that user is the person)."""
    return (
        f"persons {alias} WHERE {alias}.organization_id = {org} AND NOT EXISTS (SELECT 1 FROM person_aliases a"
        f" WHERE a.organization_id = {alias}.organization_id AND a.alias = {alias}.id)"
    )


def members_query(definition: Definition, org: uuid.UUID, timezone: str, now: datetime) -> tuple[Sql, str]:
    """The statement listing the definition's members (column `person`), with its parameters."""
    sql = Sql()
    org_param = sql.param(org, "uuid")
    if isinstance(definition, Behavioral):
        matched = grammar.matcher_condition(sql, definition.matcher)
        since = sql.param(now - timedelta(days=definition.days), "timestamptz")
        until = sql.param(now, "timestamptz")
        count = sql.param(definition.min_count, "int")
        person = sql.person()
        did = (
            f"SELECT {person} AS person FROM {sql.events_from()}"
            f" WHERE e.organization_id = {org_param} AND e.occurred_at >= {since} AND e.occurred_at < {until}"
            f" AND {person} IS NOT NULL AND {matched} GROUP BY 1 HAVING count(*) >= {count}"
        )
        if definition.performed:
            return sql, did
        return sql, f"SELECT p.id AS person FROM {_everyone('p', org_param)} EXCEPT {did}"
    if isinstance(definition, PersonProperties):
        condition = grammar.filters_condition(sql, definition.filters)
        return sql, f"SELECT pp.id AS person FROM {_everyone('pp', org_param)} AND {condition}"  # grammar reads pp
    if isinstance(definition, FirstSeen):
        window = resolve_range(definition.range, timezone, now=now)
        start, end = sql.param(window.start, "timestamptz"), sql.param(window.end, "timestamptz")
        return sql, (
            "SELECT COALESCE(a.person_id, p.id) AS person FROM persons p"
            " LEFT JOIN person_aliases a ON a.organization_id = p.organization_id AND a.alias = p.id"
            f" WHERE p.organization_id = {org_param} GROUP BY 1"
            f" HAVING min(p.first_seen_at) >= {start} AND min(p.first_seen_at) < {end}"
        )
    ids = sql.param(list(definition.person_ids), "text[]")
    return sql, (
        "SELECT DISTINCT COALESCE(a.person_id, k.id) AS person FROM unnest(" + ids + ") AS k(id)"
        f" LEFT JOIN person_aliases a ON a.organization_id = {org_param} AND a.alias = k.id"
    )


async def compute(conn: asyncpg.Connection, cohort: Cohort, timezone: str, now: datetime | None = None) -> Cohort:
    """Replace the cohort's members with what its definition finds now (inside the caller's
    transaction); returns the cohort with its new count and time."""
    now = now or datetime.now(UTC)
    definition = loaded(cohort.kind, cohort.definition)
    sql, members = members_query(definition, cohort.organization_id, timezone, now)
    await check_regexes(conn, sql.regexes)
    org, cid = sql.param(cohort.organization_id, "uuid"), sql.param(cohort.id, "uuid")
    await conn.execute(
        f"""
        WITH found AS ({members}),
        added AS (
            INSERT INTO cohort_members (organization_id, cohort_id, person_id)
            SELECT {org}, {cid}, person FROM found ORDER BY person
            ON CONFLICT (organization_id, cohort_id, person_id) DO NOTHING
        )
        DELETE FROM cohort_members m WHERE m.organization_id = {org} AND m.cohort_id = {cid}
          AND NOT EXISTS (SELECT 1 FROM found f WHERE f.person = m.person_id)
        """,
        *sql.params,
    )
    row = await conn.fetchrow(
        f"UPDATE cohorts c SET member_count = (SELECT count(*) FROM cohort_members m WHERE m.organization_id = c.organization_id"
        f" AND m.cohort_id = c.id), computed_at = $3 WHERE c.organization_id = $1 AND c.id = $2 RETURNING {COLUMNS}",
        cohort.organization_id,
        cohort.id,
        now,
    )
    return _cohort(row)


# -- managing -------------------------------------------------------------------------------


COLUMNS = "organization_id, id, name, kind, definition::text AS definition, member_count, computed_at, created_by, created_at, updated_at"


def _cohort(row: asyncpg.Record) -> Cohort:
    return Cohort(
        organization_id=row["organization_id"], id=row["id"], name=row["name"], kind=CohortKind(row["kind"]),
        definition=orjson.loads(row["definition"]), member_count=row["member_count"], computed_at=row["computed_at"],
        created_by=row["created_by"], created_at=row["created_at"], updated_at=row["updated_at"],
    )  # fmt: skip


async def cohort_scope(viewer: Viewer, organization_id: Any) -> uuid.UUID:
    """Organization admins their own organization, platform admins the one they name."""
    return await administered_organization(viewer, organization_id, refusal=REFUSAL)


def parse_cohort_id(value: Any, field: str = "id") -> uuid.UUID:
    return parse_id(value, "cohort", field)


async def _timezone(conn: asyncpg.Connection, org: uuid.UUID) -> str:
    return await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", org)


async def _locked(conn: asyncpg.Connection, org: uuid.UUID, cohort_id: uuid.UUID) -> Cohort:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM cohorts WHERE organization_id = $1 AND id = $2 FOR UPDATE", org, cohort_id)
    if row is None:
        raise NotFound("cohort not found", field="id")
    return _cohort(row)


async def create_cohort(*, org: uuid.UUID, actor: str, name: str, definition: Definition) -> Cohort:
    """Store a cohort and compute its members, in one transaction."""
    name = check_name(name)
    async with transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('cohorts:' || $1::text))", str(org))
        if await conn.fetchval("SELECT count(*) FROM cohorts WHERE organization_id = $1", org) >= MAX_COHORTS:
            raise BadInput(f"an organization has at most {MAX_COHORTS} cohorts; delete one first", field="name")
        row = await conn.fetchrow(
            f"INSERT INTO cohorts (organization_id, id, name, kind, definition, created_by) VALUES ($1, $2, $3, $4, $5::jsonb, $6)"
            f" RETURNING {COLUMNS}",
            org, uuid.uuid4(), name, KIND_OF[type(definition)].value, orjson.dumps(stored(definition)).decode(), actor,
        )  # fmt: skip
        return await _compute_now(conn, _cohort(row), await _timezone(conn, org))


async def _compute_now(conn: asyncpg.Connection, cohort: Cohort, timezone: str) -> Cohort:
    """Members at once when they can be found within the API's statement timeout; a cohort too
    large for that is saved as it is (memberCount null) and computed by the scheduler."""
    try:
        async with conn.transaction():  # a savepoint: a cancelled computation leaves the cohort saved
            return await compute(conn, cohort, timezone)
    except asyncpg.QueryCanceledError:
        log.info("cohort %s of %s is left to the scheduler: its computation hit the statement timeout", cohort.id,
                 cohort.organization_id)  # fmt: skip
    # No members of an earlier definition stay behind as if they were this one's.
    await conn.execute("DELETE FROM cohort_members WHERE organization_id = $1 AND cohort_id = $2", cohort.organization_id, cohort.id)
    row = await conn.fetchrow(
        f"UPDATE cohorts SET member_count = NULL, computed_at = NULL WHERE organization_id = $1 AND id = $2 RETURNING {COLUMNS}",
        cohort.organization_id,
        cohort.id,
    )
    return _cohort(row)


async def update_cohort(*, org: uuid.UUID, cohort_id: Any, name: str | None, definition: Definition | None) -> Cohort:
    """Rename and / or redefine a cohort; a new definition is computed at once."""
    cid = parse_cohort_id(cohort_id)
    new_name = check_name(name) if name is not None else None
    async with transaction() as conn:
        current = await _locked(conn, org, cid)
        row = await conn.fetchrow(
            f"UPDATE cohorts SET name = COALESCE($3, name), kind = COALESCE($4, kind), definition = COALESCE($5::jsonb, definition),"
            f" updated_at = now() WHERE organization_id = $1 AND id = $2 RETURNING {COLUMNS}",
            org, cid, new_name, KIND_OF[type(definition)].value if definition else None,
            orjson.dumps(stored(definition)).decode() if definition else None,
        )  # fmt: skip
        cohort = _cohort(row)
        if definition is None and current.computed_at is not None:
            return cohort
        return await _compute_now(conn, cohort, await _timezone(conn, org))


async def delete_cohort(*, org: uuid.UUID, cohort_id: Any) -> uuid.UUID:
    cid = parse_cohort_id(cohort_id)
    async with transaction() as conn:
        await _locked(conn, org, cid)
        await conn.execute("DELETE FROM cohort_members WHERE organization_id = $1 AND cohort_id = $2", org, cid)
        await conn.execute("DELETE FROM cohorts WHERE organization_id = $1 AND id = $2", org, cid)
    return cid


async def list_cohorts(*, org: uuid.UUID) -> list[Cohort]:
    async with connection() as conn:
        rows = await conn.fetch(f"SELECT {COLUMNS} FROM cohorts WHERE organization_id = $1 ORDER BY name, id", org)
    return [_cohort(r) for r in rows]


async def get_cohort(*, org: uuid.UUID, cohort_id: Any) -> Cohort:
    cid = parse_cohort_id(cohort_id)
    async with connection() as conn:
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM cohorts WHERE organization_id = $1 AND id = $2", org, cid)
    if row is None:
        raise NotFound("cohort not found", field="id")
    return _cohort(row)


# -- export -----------------------------------------------------------------------------------


CSV_HEADER = ["person_id", "user_id", "anonymous_ids", "first_seen_at", "last_seen_at", "properties"]


async def members_csv(*, org: uuid.UUID, cohort_id: Any) -> tuple[Cohort, AsyncIterator[str]]:
    """The cohort and its members as RFC 4180 CSV, in person key order, CSV_CHUNK at a time."""
    from app.services.insights.persons import details

    cohort = await get_cohort(org=org, cohort_id=cohort_id)

    async def rows() -> AsyncIterator[str]:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(CSV_HEADER)
        after = ""
        while True:
            async with connection() as conn:
                ids = [r["person_id"] for r in await conn.fetch(
                    "SELECT person_id FROM cohort_members WHERE organization_id = $1 AND cohort_id = $2 AND person_id > $3"
                    " ORDER BY person_id LIMIT $4", org, cohort.id, after, CSV_CHUNK,
                )]  # fmt: skip
                found = await details(conn, org, ids)
            for p in found:
                writer.writerow([
                    p.id, p.user_id or "", " ".join(p.anonymous_ids), p.first_seen_at.isoformat() if p.first_seen_at else "",
                    p.last_seen_at.isoformat() if p.last_seen_at else "", orjson.dumps(p.properties, option=orjson.OPT_SORT_KEYS).decode(),
                ])  # fmt: skip
            yield out.getvalue()
            out.seek(0)
            out.truncate()
            if len(ids) < CSV_CHUNK:
                return
            after = ids[-1]

    return cohort, rows()


# -- the scheduler's job --------------------------------------------------------------------


async def recompute_all(now: datetime | None = None) -> int:
    """Compute every cohort of every organization again, each in its own transaction (a
    definition that fails is logged and left for the next round); returns the cohorts computed."""
    now = now or datetime.now(UTC)
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT c.organization_id, c.id, o.timezone FROM cohorts c JOIN organizations o ON o.id = c.organization_id"
            " ORDER BY c.organization_id, c.id"
        )
    done = 0
    for row in rows:
        try:
            async with transaction() as conn:
                cohort = await _locked(conn, row["organization_id"], row["id"])
                await compute(conn, cohort, row["timezone"], now)
            done += 1
        except NotFound:
            continue  # deleted meanwhile
        except Exception:  # one bad cohort must not stop the others
            log.exception("cohort %s of %s could not be computed", row["id"], row["organization_id"])
    return done


async def _job(now: datetime, settings: Settings) -> int:
    return await recompute_all(now)


JOBS = (Job("cohorts", _job),)
