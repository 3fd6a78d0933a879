"""Privacy and retention: per-organization IP and event retention, data-subject requests.

Every rule about how long personal data is kept lives here; `workers/scheduler.py` runs
the periodic jobs, the GraphQL resolvers call the rest.

Decisions a client or an operator can notice:

- **Raw IPs** are needed only for the audit trail: geo and gov-IP lookups happen at
  ingest. After `ipRetentionDays` (default 90) the scheduled job replaces `events.ip`
  with `events.ip_hash`, an HMAC-SHA256 of (organization, IP) written as
  `<key period start>:<hex>`. With `ipRetentionDays = 0` the raw IP is never stored: it
  is hashed at ingest (as Plausible and Umami never store it). Do-Not-Track events keep
  neither.
- **HMAC keys** are random, one per period (`settings.ip_hmac_key_period_days`, 30 by
  default), stored in `ip_hmac_keys` and deleted when their period is over: equal IPs
  hashed in one period match (an operator can still tell "the same address" within it),
  hashes of different periods do not, and once a period's key is gone its hashes cannot
  be brute-forced over the IPv4 space, not even with a copy of the whole database. The
  stored key is mixed with a pepper derived from the JWT secret, so a stolen database
  alone cannot recompute even the current period's hashes. A key belongs to the period
  in which the hash was *computed* (ingest, or the job's run), not to the event's time.
- **Events** older than `eventRetentionDays` (default 395 = 13 months; null = keep
  forever) are purged together with their profile events and sessions, but only once the
  worker has processed them (no pending outbox row), so rollups are final. Rollups are
  aggregates and stay: counters, revenue sums and HyperLogLog sketches (which hold no
  recoverable visitor ids). A month whose partitions are older than every
  organization's retention is dropped whole (`DROP TABLE`, no table bloat); otherwise
  rows are deleted per organization in bounded chunks. The outbox keeps its rows (event
  ids and types only: the idempotency ledger). `organizations.purged_before` records how
  far raw data is gone: rollups of older buckets cannot be rebuilt from raw data.
- **Data subjects** (by `userId` and/or `anonymousId`): an organization admin can export
  everything stored about them (events, sessions, profile events) and delete it. The
  visitor id links the three tables; events a visitor sent without either id (the
  cookie-less daily hash) cannot be linked to them, by design. A userId also takes the
  anonymous ids an identify linked to it (their history is that person's in every insight).
  Deletion removes the person too: its `persons` rows, its links, its cohort memberships and
  its id in static cohort lists. Rollups stay, as above.
- **Buyer emails** are never stored: ingestion keeps only their keyed hash
  (app/services/buyer_emails.py), in the event's properties and the ledger row. Events go
  with event retention; ledger rows are bookkeeping and keep the hash, so support can find an
  order by its buyer's exact address. A data-subject deletion (by userId / anonymousId,
  and/or `buyerEmail`) erases the hashes of the address sent and of the subject's ledger
  rows from the organization's ledger and events: the orders stay, unfindable by email.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from app import partitions
from app.auth import Viewer, administered_organization
from app.database import connection, transaction
from app.errors import BadInput, NotFound
from app.jobs import Job
from app.services import buyer_emails
from app.services.enrichment import normalize_ip
from app.services.insights import persons, rollups
from app.settings import Settings, get_settings
from models.organizations import Organization

log = logging.getLogger("pulsegraph.privacy")

DEFAULT_IP_RETENTION_DAYS = 90
DEFAULT_EVENT_RETENTION_DAYS = 395
IP_RETENTION_RANGE = (0, 3650)
EVENT_RETENTION_RANGE = (31, 36500)
JOB_BATCH_SIZE = 5000
EXPORT_MAX_ROWS = 10_000
POLICY_CACHE_SECONDS = 30.0
DROP_LOCK_TIMEOUT = "2s"
PARTITION_RE = re.compile(r"^(events|profile_events)_(\d{4})_(\d{2})$")
_EPOCH = date(1970, 1, 1)


class _Keep:
    """Leave a setting as it is (an argument that was not sent)."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Any = _Keep()


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class PrivacySettings:
    organization_id: uuid.UUID
    ip_retention_days: int
    event_retention_days: int | None
    purged_before: datetime | None


async def organization_settings(*, viewer: Viewer, organization_id: uuid.UUID | str | None = None) -> PrivacySettings:
    org = await administered_organization(
        viewer, organization_id, refusal="privacy settings and data-subject requests need an organization admin token"
    )
    return await _read_settings(org)


async def update_settings(
    *,
    viewer: Viewer,
    organization_id: uuid.UUID | str | None = None,
    ip_retention_days: Any = KEEP,
    event_retention_days: Any = KEEP,
) -> PrivacySettings:
    """Change retention; `event_retention_days=None` keeps events forever."""
    org = await administered_organization(
        viewer, organization_id, refusal="privacy settings and data-subject requests need an organization admin token"
    )
    changes: dict[str, Any] = {}
    if ip_retention_days is not KEEP:
        low, high = IP_RETENTION_RANGE
        if type(ip_retention_days) is not int or not low <= ip_retention_days <= high:
            raise BadInput(f"ipRetentionDays must be an integer from {low} to {high}", field="ipRetentionDays")
        changes["ip_retention_days"] = ip_retention_days
    if event_retention_days is not KEEP:
        low, high = EVENT_RETENTION_RANGE
        if event_retention_days is not None and (
            type(event_retention_days) is not int or not low <= event_retention_days <= high
        ):
            raise BadInput(
                f"eventRetentionDays must be null (keep forever) or an integer from {low} to {high}",
                field="eventRetentionDays",
            )
        changes["event_retention_days"] = event_retention_days
    if changes:
        await Organization.filter(id=org).update(**changes)
        _policy_cache.pop(org, None)
    return await _read_settings(org)


async def _read_settings(org: uuid.UUID) -> PrivacySettings:
    async with connection() as conn:
        row = await conn.fetchrow(
            "SELECT ip_retention_days, event_retention_days, purged_before FROM organizations WHERE id = $1", org
        )
    if row is None:
        raise NotFound("organization not found", field="organizationId")
    return PrivacySettings(org, row["ip_retention_days"], row["event_retention_days"], row["purged_before"])


# --------------------------------------------------------------------------- IP keys


@dataclass(frozen=True, slots=True)
class IpKey:
    period_start: date
    key: bytes

    def hash(self, organization_id: uuid.UUID | str, ip: str) -> str:
        message = f"{organization_id}|{canonical_ip(ip)}".encode()
        digest = hmac.new(self.key, message, hashlib.sha256).hexdigest()[:32]
        return f"{self.period_start:%Y%m%d}:{digest}"


def canonical_ip(ip: str) -> str:
    """One spelling per address (IPv4-mapped IPv6 as IPv4), as ingestion stores it."""
    return normalize_ip(ip) or ip.strip()


def key_period(now: datetime, settings: Settings) -> tuple[date, date]:
    days = max(1, settings.ip_hmac_key_period_days)
    today = now.astimezone(UTC).date()
    start = _EPOCH + timedelta(days=((today - _EPOCH).days // days) * days)
    return start, start + timedelta(days=days)


def _pepper(settings: Settings) -> bytes:
    return hmac.new(settings.jwt_secret.encode(), b"pulsegraph ip hmac pepper", hashlib.sha256).digest()


_keys: dict[date, IpKey] = {}


async def current_ip_key(conn: asyncpg.Connection, now: datetime, settings: Settings) -> IpKey:
    """The key of the period `now` is in, created by whichever process needs it first."""
    start, end = key_period(now, settings)
    cached = _keys.get(start)
    if cached is not None:
        return cached
    await conn.execute(
        "INSERT INTO ip_hmac_keys (period_start, period_end, key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        start,
        end,
        secrets.token_bytes(32),
    )
    stored = await conn.fetchval("SELECT key FROM ip_hmac_keys WHERE period_start = $1", start)
    key = IpKey(start, hmac.new(_pepper(settings), bytes(stored), hashlib.sha256).digest())
    _keys.clear()
    _keys[start] = key
    return key


async def forget_expired_ip_keys(now: datetime) -> int:
    """Delete the keys of periods that are over: their hashes become irreversible."""
    async with connection() as conn:
        result = await conn.execute("DELETE FROM ip_hmac_keys WHERE period_end <= $1", now.astimezone(UTC).date())
    return int(result.split()[-1])


# --------------------------------------------------------------------------- at ingest


_policy_cache: dict[uuid.UUID, tuple[float, int]] = {}


async def ip_retention_days(organization_id: uuid.UUID) -> int:
    """Cached briefly per process: a change made on another API replica applies within
    POLICY_CACHE_SECONDS (and the job pseudonymizes whatever slipped through)."""
    cached = _policy_cache.get(organization_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    async with connection() as conn:
        days = await conn.fetchval("SELECT ip_retention_days FROM organizations WHERE id = $1", organization_id)
    days = DEFAULT_IP_RETENTION_DAYS if days is None else int(days)
    _policy_cache[organization_id] = (time.monotonic() + POLICY_CACHE_SECONDS, days)
    return days


async def pseudonymize_at_ingest(organization_id: uuid.UUID, rows: list[Any], *, now: datetime, settings: Settings) -> None:
    """`ipRetentionDays = 0`: replace each row's IP with its hash before anything is stored.

    `rows` are ingestion's enriched rows (attributes `ip` and `ip_hash`); geo was looked
    up from the IP already.
    """
    if not any(row.ip for row in rows):
        return
    if await ip_retention_days(organization_id) > 0:
        return
    async with connection() as conn:
        key = await current_ip_key(conn, now, settings)
    for row in rows:
        if row.ip:
            row.ip_hash = key.hash(organization_id, row.ip)
            row.ip = None


# --------------------------------------------------------------------------- jobs


_RAW_IPS = """
SELECT e.organization_id, e.occurred_at, e.event_id, host(e.ip) AS ip
FROM organizations o
JOIN events e ON e.organization_id = o.id
WHERE e.ip IS NOT NULL AND e.occurred_at < $1::timestamptz - make_interval(days => o.ip_retention_days)
LIMIT $2
FOR UPDATE OF e SKIP LOCKED
"""

_SET_IP_HASHES = """
UPDATE events e SET ip = NULL, ip_hash = u.ip_hash
FROM unnest($1::uuid[], $2::timestamptz[], $3::text[], $4::text[]) AS u(organization_id, occurred_at, event_id, ip_hash)
WHERE e.organization_id = u.organization_id AND e.occurred_at = u.occurred_at AND e.event_id = u.event_id
"""


async def pseudonymize_old_ips(now: datetime | None = None, *, settings: Settings, batch_size: int = JOB_BATCH_SIZE) -> int:
    """Replace raw IPs older than each organization's `ip_retention_days` with their HMAC."""
    now = now or datetime.now(UTC)
    total = 0
    while True:
        async with transaction() as conn:
            key = await current_ip_key(conn, now, settings)
            rows = await conn.fetch(_RAW_IPS, now, batch_size)
            if not rows:
                break
            await conn.execute(
                _SET_IP_HASHES,
                [r["organization_id"] for r in rows],
                [r["occurred_at"] for r in rows],
                [r["event_id"] for r in rows],
                [key.hash(r["organization_id"], r["ip"]) for r in rows],
            )
        total += len(rows)
        if len(rows) < batch_size:
            break
    total += await _pseudonymize_alert_ips(now, settings=settings)
    if total:
        log.info("pseudonymized %d raw IPs past retention", total)
    return total


# Fraud alerts about an address ("ip:<address>" subjects) carry it in their subject and details;
# once their last trigger is past retention the address becomes its HMAC there too (the same
# hash as the events pseudonymized in the same key period, so they can still be matched).
_RAW_IP_ALERTS = """
SELECT a.organization_id, a.id, substr(a.subject, 4) AS ip
FROM fraud_alerts a JOIN organizations o ON o.id = a.organization_id
WHERE a.subject LIKE 'ip:%' AND substr(a.subject, 4) !~ '^[0-9]{8}:[0-9a-f]+$'
  AND a.last_triggered_at < $1::timestamptz - make_interval(days => o.ip_retention_days)
FOR UPDATE OF a
"""
_SET_ALERT_IP_HASHES = """
UPDATE fraud_alerts a SET subject = 'ip:' || u.ip_hash, details = jsonb_set(a.details, '{ip}', to_jsonb(u.ip_hash))
FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS u(organization_id, id, ip_hash)
WHERE a.organization_id = u.organization_id AND a.id = u.id
"""


async def _pseudonymize_alert_ips(now: datetime, *, settings: Settings) -> int:
    async with transaction() as conn:
        key = await current_ip_key(conn, now, settings)
        rows = [r for r in await conn.fetch(_RAW_IP_ALERTS, now) if normalize_ip(r["ip"]) is not None]
        if rows:
            await conn.execute(
                _SET_ALERT_IP_HASHES,
                [r["organization_id"] for r in rows],
                [r["id"] for r in rows],
                [key.hash(r["organization_id"], r["ip"]) for r in rows],
            )
    return len(rows)


@dataclass(slots=True)
class PurgeReport:
    dropped_partitions: list[str] = field(default_factory=list)
    kept_partitions: list[str] = field(default_factory=list)  # old enough, but pending or locked
    deleted_events: int = 0
    deleted_profile_events: int = 0
    deleted_sessions: int = 0
    deleted_gov_alerts: int = 0
    deleted_persons: int = 0


async def purge_expired_events(now: datetime | None = None, *, batch_size: int = JOB_BATCH_SIZE) -> PurgeReport:
    """Purge raw data past each organization's `event_retention_days`, once processed."""
    now = now or datetime.now(UTC)
    report = PurgeReport()
    async with connection() as conn:
        orgs = await conn.fetch("SELECT id, event_retention_days FROM organizations")
    await _drop_whole_months(now, orgs, report)
    for org in orgs:
        if org["event_retention_days"] is None:
            continue
        cutoff = now - timedelta(days=org["event_retention_days"])
        report.deleted_events += await _delete_chunked(_DELETE_EVENTS, org["id"], cutoff, batch_size)
        report.deleted_profile_events += await _delete_chunked(_DELETE_PROFILE_EVENTS, org["id"], cutoff, batch_size)
        report.deleted_sessions += await _delete_chunked(_DELETE_SESSIONS, org["id"], cutoff, batch_size)
        report.deleted_gov_alerts += await _delete_chunked(_DELETE_GOV_ALERTS, org["id"], cutoff, batch_size)
        report.deleted_persons += await _delete_chunked(_DELETE_PERSONS, org["id"], cutoff, batch_size)
        async with connection() as conn:
            await conn.execute(
                "UPDATE organizations SET purged_before = GREATEST(purged_before, $2) WHERE id = $1"
                " AND (purged_before IS NULL OR purged_before < $2)",
                org["id"],
                cutoff,
            )
    if report.dropped_partitions or report.deleted_events or report.deleted_sessions:
        log.info(
            "retention: dropped %s, deleted %d events, %d profile events, %d sessions",
            report.dropped_partitions or "no partitions",
            report.deleted_events,
            report.deleted_profile_events,
            report.deleted_sessions,
        )
    return report


async def _drop_whole_months(now: datetime, orgs: list[asyncpg.Record], report: PurgeReport) -> None:
    """A month older than every organization's retention, with nothing pending, goes whole."""
    if not orgs or any(o["event_retention_days"] is None for o in orgs):
        return
    horizon = now - timedelta(days=max(o["event_retention_days"] for o in orgs))
    async with connection() as conn:
        names = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('events', 'profile_events')"
        )
    months: dict[datetime, list[str]] = {}
    for record in names:
        match = PARTITION_RE.match(record["relname"])
        if match:
            start = datetime(int(match[2]), int(match[3]), 1, tzinfo=UTC)
            months.setdefault(start, []).append(record["relname"])
    for start, tables in sorted(months.items()):
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
        if end > horizon:
            continue
        tables.sort()  # events_ before profile_events_: one lock order
        try:
            async with transaction() as conn:
                await conn.execute(f"SET LOCAL lock_timeout = '{DROP_LOCK_TIMEOUT}'")
                # Locked first, so no event of the month can commit between the check and the drop.
                await conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
                pending = await conn.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM outbox WHERE processed_at IS NULL"
                    " AND occurred_at >= $1 AND occurred_at < $2)",
                    start,
                    end,
                )
                if pending:
                    report.kept_partitions += tables
                    continue
                await conn.execute(f"DROP TABLE {', '.join(tables)}")
                await rollups.forget_hours(conn, start, end)
        except asyncpg.LockNotAvailableError:
            report.kept_partitions += tables  # busy: the next run tries again
            continue
        report.dropped_partitions += tables
    if report.dropped_partitions:

        partitions.forget()


_DELETE_EVENTS = """
DELETE FROM events e
WHERE (e.organization_id, e.occurred_at, e.event_id) IN (
    SELECT x.organization_id, x.occurred_at, x.event_id FROM events x
    WHERE x.organization_id = $1 AND x.occurred_at < $2
      AND NOT EXISTS (
          SELECT 1 FROM outbox o
          WHERE o.organization_id = x.organization_id AND o.event_id = x.event_id AND o.processed_at IS NULL)
    LIMIT $3)
"""
_DELETE_PROFILE_EVENTS = """
DELETE FROM profile_events p
WHERE (p.organization_id, p.profile_id, p.occurred_at, p.event_id) IN (
    SELECT x.organization_id, x.profile_id, x.occurred_at, x.event_id FROM profile_events x
    WHERE x.organization_id = $1 AND x.occurred_at < $2
    LIMIT $3)
"""
_DELETE_GOV_ALERTS = """
DELETE FROM gov_alerts g
WHERE (g.organization_id, g.event_id) IN (
    SELECT x.organization_id, x.event_id FROM gov_alerts x
    WHERE x.organization_id = $1 AND x.occurred_at < $2
    LIMIT $3)
"""
_DELETE_SESSIONS = """
DELETE FROM sessions s
WHERE (s.organization_id, s.id) IN (
    SELECT x.organization_id, x.id FROM sessions x
    WHERE x.organization_id = $1 AND x.last_seen_at < $2
    LIMIT $3)
"""

# A person whose every key (the user and the anonymous ids linked to it) was last seen before
# the cutoff: their properties are personal data kept no longer than their events. Their
# identity links and cohort memberships go with them; a person with one fresh key stays whole.
_DELETE_PERSONS = """
WITH gone AS (
    SELECT x.id FROM persons x
    WHERE x.organization_id = $1 AND x.last_seen_at < $2
      AND NOT EXISTS (
          SELECT 1 FROM person_aliases a
          JOIN persons y ON y.organization_id = a.organization_id AND (y.id = a.alias OR y.id = a.person_id)
          WHERE a.organization_id = x.organization_id AND (a.alias = x.id OR a.person_id = x.id)
            AND y.last_seen_at >= $2)
    LIMIT $3
), links AS (
    DELETE FROM person_aliases a USING gone WHERE a.organization_id = $1 AND (a.alias = gone.id OR a.person_id = gone.id)
), members AS (
    DELETE FROM cohort_members m USING gone WHERE m.organization_id = $1 AND m.person_id = gone.id
)
DELETE FROM persons p USING gone WHERE p.organization_id = $1 AND p.id = gone.id
"""


async def _delete_chunked(sql: str, organization_id: uuid.UUID, cutoff: datetime, batch_size: int) -> int:
    """Short transactions: a large purge never holds locks or bloats one transaction."""
    total = 0
    while True:
        async with connection() as conn:
            result = await conn.execute(sql, organization_id, cutoff, batch_size)
        deleted = int(result.split()[-1])
        total += deleted
        if deleted < batch_size:
            return total


# --------------------------------------------------------------------------- data subjects


@dataclass(slots=True)
class SubjectData:
    organization_id: uuid.UUID
    user_id: str | None
    anonymous_id: str | None
    visitor_ids: list[str]
    events: list[dict[str, Any]]
    sessions: list[dict[str, Any]]
    profile_events: list[dict[str, Any]]
    truncated: bool


@dataclass(frozen=True, slots=True)
class SubjectDeletion:
    organization_id: uuid.UUID
    events: int
    profile_events: int
    sessions: int
    persons: int = 0
    buyer_emails: int = 0  # ledger rows whose buyer email hash was erased


def _subject_ids(user_id: str | None, anonymous_id: str | None, *, email: bool = False) -> tuple[str | None, str | None]:
    user = user_id.strip() if isinstance(user_id, str) and user_id.strip() else None
    anonymous = anonymous_id.strip() if isinstance(anonymous_id, str) and anonymous_id.strip() else None
    if user is None and anonymous is None and not email:
        raise BadInput("send a userId or an anonymousId (or both)", field="userId")
    for name, value in (("userId", user), ("anonymousId", anonymous)):
        if value is not None and len(value) > 256:
            raise BadInput(f"{name} is longer than 256 characters", field=name)
        if value is not None and not value.isprintable():  # ingestion stores printable ids only
            raise BadInput(f"{name} must be printable text", field=name)
    return user, anonymous


_SUBJECT_EVENTS = """
SELECT event_id, occurred_at, received_at, type, profile_id, user_id, anonymous_id, visitor_id, session_id,
       properties::text AS properties, amount_minor, currency::text AS currency, engagement_ms,
       host(ip) AS ip, ip_hash, country::text AS country, region, city, asn, as_org, user_agent, device_type,
       browser, os, url, referrer, referrer_domain, utm_source, utm_medium, utm_campaign, utm_term, utm_content
FROM events
WHERE organization_id = $1 AND (user_id = $2 OR anonymous_id = $3 OR visitor_id = ANY($4::text[]))
ORDER BY occurred_at, event_id
LIMIT $5
"""
_SUBJECT_SESSIONS = """
SELECT id, visitor_id, started_at, last_seen_at, event_count, landing_page, referrer_domain, utm_source,
       utm_medium, utm_campaign, device_type, browser, os, country::text AS country
FROM sessions
WHERE organization_id = $1 AND (visitor_id = ANY($2::text[]) OR id = ANY($3::text[]))
ORDER BY started_at, id
LIMIT $4
"""
_SUBJECT_PROFILE_EVENTS = """
SELECT profile_id, occurred_at, event_id, kind, visitor_id, session_id, country::text AS country, city,
       device_type, browser, os, referrer_domain, utm_source, is_gov, amount_minor, currency::text AS currency,
       engagement_ms
FROM profile_events
WHERE organization_id = $1 AND visitor_id = ANY($2::text[])
ORDER BY occurred_at, event_id
LIMIT $3
"""


def _visitor_ids(user: str | None, anonymous: str | None) -> list[str]:
    """The visitor ids ingestion derives from these ids (see enrichment.visitor_id).

    Only the ids asked for: an anonymousId that once came with a userId does not pull in
    that user's other events (the requester proved the ids they sent, not others).
    """
    return [v for v in (f"u:{user}" if user else None, f"a:{anonymous}" if anonymous else None) if v]


async def _subject_keys(conn: asyncpg.Connection, org: uuid.UUID, user: str | None, anonymous: str | None) -> list[str]:
    """The visitor ids asked for, plus the anonymous ids an identify linked to the user: that
    person's whole history (an anonymousId does not pull in the user it is linked to)."""
    visitors = _visitor_ids(user, anonymous)
    if user:
        visitors += [k for k in await persons.linked_keys(conn, org, [f"u:{user}"]) if k not in visitors]
    return visitors


async def export_subject(
    *, viewer: Viewer, user_id: str | None = None, anonymous_id: str | None = None, organization_id: Any = None
) -> SubjectData:
    """Everything stored about one data subject in the viewer's organization."""
    org = await administered_organization(
        viewer, organization_id, refusal="privacy settings and data-subject requests need an organization admin token"
    )
    user, anonymous = _subject_ids(user_id, anonymous_id)
    async with transaction() as conn:  # one snapshot for the three reads
        await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        visitors = await _subject_keys(conn, org, user, anonymous)
        events = [dict(r) for r in await conn.fetch(_SUBJECT_EVENTS, org, user, anonymous, visitors, EXPORT_MAX_ROWS + 1)]
        session_ids = sorted({e["session_id"] for e in events if e["session_id"]})
        sessions = [dict(r) for r in await conn.fetch(_SUBJECT_SESSIONS, org, visitors, session_ids, EXPORT_MAX_ROWS + 1)]
        profile_events = [dict(r) for r in await conn.fetch(_SUBJECT_PROFILE_EVENTS, org, visitors, EXPORT_MAX_ROWS + 1)]
    truncated = any(len(rows) > EXPORT_MAX_ROWS for rows in (events, sessions, profile_events))
    return SubjectData(
        organization_id=org,
        user_id=user,
        anonymous_id=anonymous,
        visitor_ids=visitors,
        events=events[:EXPORT_MAX_ROWS],
        sessions=sessions[:EXPORT_MAX_ROWS],
        profile_events=profile_events[:EXPORT_MAX_ROWS],
        truncated=truncated,
    )


# Records that must outlive a deletion (the money ledger is bookkeeping; a fraud alert is an
# investigation) keep their rows but lose the person: each of the subject's visitor ids
# becomes its own random token, so aggregates (distinct donors, one alert per actor) stay
# right and nothing leads back to the subject.
_ERASE_CUSTOMER = "UPDATE transactions SET customer_id = $3 WHERE organization_id = $1 AND customer_id = $2"
_ERASE_ACTOR_ALERTS = """
UPDATE fraud_alerts SET subject = 'actor:' || $3::text, details = jsonb_set(details, '{actor}', to_jsonb($3::text))
WHERE organization_id = $1 AND subject = 'actor:' || $2::text
"""


# The subject's buyer emails: the one asked for, and the ones on their ledger rows. Every row
# and event of the organization carrying one of them loses it (rows by the hash's index,
# events by reading the organization's events: a rare request, not a hot path).
_SUBJECT_EMAIL_HASHES = """
SELECT DISTINCT buyer_email_hash FROM transactions
WHERE organization_id = $1 AND customer_id = ANY($2::text[]) AND buyer_email_hash IS NOT NULL
"""
_ERASE_LEDGER_EMAILS = """
UPDATE transactions SET buyer_email_hash = NULL, metadata = metadata - 'buyerEmailHash'
WHERE organization_id = $1 AND buyer_email_hash = ANY($2::text[])
"""
_ERASE_EVENT_EMAILS = """
UPDATE events SET properties = properties - 'buyerEmailHash'
WHERE organization_id = $1 AND properties ->> 'buyerEmailHash' = ANY($2::text[])
"""


def _subject_email_hash(buyer_email: str | None) -> str | None:
    if buyer_email is None or not buyer_email.strip():
        return None
    email = buyer_emails.normalized(buyer_email)
    if email is None:
        raise BadInput("buyerEmail must be an email address (name@example.com)", field="buyerEmail")
    return buyer_emails.email_hash(email, get_settings())


async def _erase_buyer_emails(conn: asyncpg.Connection, org: uuid.UUID, visitors: list[str], asked: str | None) -> int:
    """Ledger rows whose buyer email was erased; read before the customer ids are erased."""
    hashes = {r[0] for r in await conn.fetch(_SUBJECT_EMAIL_HASHES, org, visitors)} if visitors else set()
    if asked is not None:
        hashes.add(asked)
    if not hashes:
        return 0
    rows = await conn.execute(_ERASE_LEDGER_EMAILS, org, sorted(hashes))
    await conn.execute(_ERASE_EVENT_EMAILS, org, sorted(hashes))
    return int(rows.split()[-1])


async def _erase_subject_from_records(conn: asyncpg.Connection, org: uuid.UUID, visitors: list[str]) -> None:
    for visitor in visitors:
        token = f"erased:{secrets.token_hex(8)}"
        await conn.execute(_ERASE_CUSTOMER, org, visitor, token)
        await conn.execute(_ERASE_ACTOR_ALERTS, org, visitor, token)


async def delete_subject(
    *, viewer: Viewer, user_id: str | None = None, anonymous_id: str | None = None, buyer_email: str | None = None,
    organization_id: Any = None,
) -> SubjectDeletion:
    """Delete one data subject's events, sessions, profile events, gov alerts and person (with
    its links and cohort memberships), and erase them from the ledger and fraud alerts, in one
    transaction. Their buyer emails (`buyer_email`, and the ones on their ledger rows) are
    erased wherever the organization has them: their orders can no longer be found by email."""
    org = await administered_organization(
        viewer, organization_id, refusal="privacy settings and data-subject requests need an organization admin token"
    )
    asked = _subject_email_hash(buyer_email)
    user, anonymous = _subject_ids(user_id, anonymous_id, email=asked is not None)
    async with transaction() as conn:
        visitors = await _subject_keys(conn, org, user, anonymous)
        erased_emails = await _erase_buyer_emails(conn, org, visitors, asked)
        session_ids = [
            r["session_id"]
            for r in await conn.fetch(
                "SELECT DISTINCT session_id FROM events WHERE organization_id = $1 AND session_id IS NOT NULL"
                " AND (user_id = $2 OR anonymous_id = $3 OR visitor_id = ANY($4::text[]))",
                org,
                user,
                anonymous,
                visitors,
            )
        ]
        events = await conn.execute(
            "DELETE FROM events WHERE organization_id = $1"
            " AND (user_id = $2 OR anonymous_id = $3 OR visitor_id = ANY($4::text[]))",
            org,
            user,
            anonymous,
            visitors,
        )
        deleted_views = await conn.fetch(
            "DELETE FROM profile_events WHERE organization_id = $1 AND visitor_id = ANY($2::text[]) RETURNING event_id",
            org,
            visitors,
        )
        await conn.execute(
            "DELETE FROM gov_alerts WHERE organization_id = $1 AND event_id = ANY($2::text[])",
            org,
            [r["event_id"] for r in deleted_views],
        )
        sessions = await conn.execute(
            "DELETE FROM sessions WHERE organization_id = $1 AND (visitor_id = ANY($2::text[]) OR id = ANY($3::text[]))",
            org,
            visitors,
            session_ids,
        )
        await _erase_subject_from_records(conn, org, visitors)
        forgotten = await persons.forget(conn, org, visitors)
    deletion = SubjectDeletion(
        organization_id=org,
        events=int(events.split()[-1]),
        profile_events=len(deleted_views),
        sessions=int(sessions.split()[-1]),
        persons=forgotten,
        buyer_emails=erased_emails,
    )
    log.info("data-subject deletion in %s: %s", org, deletion)
    return deletion


# --------------------------------------------------------------------------- scheduled jobs


async def _pseudonymize_job(now: datetime, settings: Settings) -> int:
    return await pseudonymize_old_ips(now, settings=settings)


async def _purge_job(now: datetime, settings: Settings) -> dict[str, Any]:
    return asdict(await purge_expired_events(now))


async def _forget_keys_job(now: datetime, settings: Settings) -> int:
    return await forget_expired_ip_keys(now)


# In this order: raw IPs past ipRetentionDays become keyed hashes; raw data past
# eventRetentionDays is purged once processed; keys of finished periods are deleted.
JOBS = (
    Job("pseudonymized_ips", _pseudonymize_job),
    Job("purge", _purge_job),
    Job("forgotten_keys", _forget_keys_job),
)
