"""Event ingestion: validate, dedupe, enrich and store a batch in one transaction.

Every rule about what an accepted event is lives here. The GraphQL resolvers and the
REST beacon endpoints convert their input to plain dicts with snake_case keys (the
field names of `TrackEventInput`) and call `track_events`; nothing else writes events.

Decisions a client can notice:

- One bad event never fails the batch: it is reported as a `Rejection` (index, the
  GraphQL camelCase field, reason) and the others are stored. Only auth, the batch size
  and an unreachable database refuse the whole call.
- `occurredAt` must carry a UTC offset. A naive time is rejected rather than read as UTC:
  a beacon sending local wall-clock time would otherwise shift every report by hours,
  silently. (`Date.prototype.toISOString()` always sends one.)
- Money events (gift.purchased, booking.completed, subscription.charged feed revenue;
  order.paid and order.refunded feed the fraud rules, affiliate.commission and
  payout.settled the ledger) need amountMinor and currency; the money properties the
  ledger reads (fees, split, order id...) are checked here (`revenue.check_properties`).
  Ingestion keys are public (they ship in page JavaScript and `?key=` URLs), so money
  events are only accepted from credentials that may publish domain events (service or
  organization admin tokens), through either mutation.
- Do-Not-Track, "anonymize" mode: stored without IP, user/anonymous/visitor/session ids,
  raw user agent, region, city and network (ASN); the country, device class, browser
  and OS stay, being too coarse to single anyone out. "drop" mode: not stored, counted
  in `dropped`.
- The client IP is `context.ip`, else `client_ip`. Only the REST beacon endpoints pass
  the caller's address: a GraphQL caller is typically a backend forwarding events, and
  its own address would be attributed to every visitor.
- An organization with `ipRetentionDays = 0` never has a raw IP stored: it is replaced
  by its keyed hash (`ip_hash`) after enrichment (see app/services/privacy.py).
- The cookie-less visitor hash uses the salt of the day the event is *received* (UTC),
  like Plausible: yesterday's salt is deleted after a day, so it cannot be re-derived
  for late events without defeating its purpose.
- Idempotency: the outbox's primary key (organization, eventId) is the ledger. A repeat
  in a later call or within the same batch is a duplicate, even with other fields
  changed. Events without eventId get a server-generated uuid4.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

import asyncpg
import orjson

from app import partitions
from app.auth import Viewer, require_service, require_writer
from app.database import connection, unavailable_on_database_errors
from app.errors import BadInput, Forbidden, UserError
from app.services import financial_reports, privacy, revenue
from app.services.enrichment import (
    Attribution,
    Device,
    Geo,
    GeoLocator,
    normalize_ip,
    parse_attribution,
    parse_user_agent,
    salt_day,
    visitor_id,
)
from app.settings import Settings
from app.vocabulary import (
    DOMAIN_EVENT_TYPES,
    MONEY_MOVING_EVENT_TYPES,
    PROFILE_EVENT_TYPES,
    needs_worker,
)

OUTBOX_CHANNEL = "pulsegraph_outbox"
SESSION_IDLE = timedelta(minutes=30)
SESSION_MAX = timedelta(hours=24)
TYPE_MAX_CHARS = 128
EVENT_ID_MAX_CHARS = 128
ID_MAX_CHARS = 256
USER_AGENT_MAX_CHARS = 1024
PROPERTIES_MAX_BYTES = 8 * 1024
ENGAGEMENT_MAX_MS = 86_400_000
BIGINT_MAX = 2**63 - 1
# An escaped NUL inside a JSON string (not an escaped backslash before "u0000"):
# PostgreSQL's jsonb refuses it, which would fail the whole COPY.
_JSON_NUL_RE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")

# snake_case key of the service dicts -> GraphQL (and REST) camelCase name.
EVENT_FIELDS: dict[str, str] = {
    "type": "type",
    "event_id": "eventId",
    "profile_id": "profileId",
    "occurred_at": "occurredAt",
    "anonymous_id": "anonymousId",
    "user_id": "userId",
    "session_id": "sessionId",
    "engagement_ms": "engagementMs",
    "amount_minor": "amountMinor",
    "currency": "currency",
    "properties": "properties",
    "context": "context",
}
CONTEXT_TEXT_FIELDS: dict[str, str] = {
    "ip": "ip",
    "user_agent": "userAgent",
    "url": "url",
    "referrer": "referrer",
    "utm_source": "utmSource",
    "utm_medium": "utmMedium",
    "utm_campaign": "utmCampaign",
    "utm_term": "utmTerm",
    "utm_content": "utmContent",
}
CONTEXT_FIELDS: dict[str, str] = {**CONTEXT_TEXT_FIELDS, "dnt": "dnt"}
# Known keys as sets: one C-level superset test per event instead of a loop over its keys.
_EVENT_KEYS = frozenset(EVENT_FIELDS)
_CONTEXT_KEYS = frozenset(CONTEXT_FIELDS)
_UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

EVENT_COLUMNS = (
    "organization_id", "occurred_at", "event_id", "type", "profile_id", "visitor_id", "user_id",
    "anonymous_id", "session_id", "properties", "amount_minor", "currency", "engagement_ms", "ip",
    "country", "region", "city", "asn", "as_org", "user_agent", "device_type", "browser", "os", "url",
    "referrer", "referrer_domain", "utm_source", "utm_medium", "utm_campaign", "utm_term",
    "utm_content", "dnt",
)  # fmt: skip
# What ingestion writes: EVENT_COLUMNS (also used by bench loaders) plus the IP's keyed
# hash, set instead of the IP for organizations that keep no raw IPs.
STORED_COLUMNS = (*EVENT_COLUMNS, "ip_hash")


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    field: str | None
    reason: str


@dataclass(slots=True)
class TrackOutcome:
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- entry points


def authorize(*, viewer: Viewer, domain: bool) -> uuid.UUID:
    """Domain events drive revenue and rollups, so only backends may publish them."""
    return require_service(viewer) if domain else require_writer(viewer)


def check_batch_size(*, count: int, settings: Settings) -> None:
    """Refuse oversized batches whole, before they cost rate-limit tokens or queries."""
    if count > settings.max_batch_size:
        raise BadInput(
            f"at most {settings.max_batch_size} events per call, got {count}; split the batch", field="events"
        )


def rate_limit_key(viewer: Viewer) -> str:
    """The credential, not the caller's address: one key shared by many browsers is one budget."""
    return f"key:{viewer.ingestion_key_id}" if viewer.ingestion_key_id else viewer.subject


async def track_events(
    *,
    viewer: Viewer,
    events: Sequence[Mapping[str, Any]],
    geo: GeoLocator,
    settings: Settings,
    client_ip: str | None = None,
    domain: bool = False,
) -> TrackOutcome:
    """Store the valid events of a batch durably, once each, and report what happened to the rest."""
    organization_id = authorize(viewer=viewer, domain=domain)
    check_batch_size(count=len(events), settings=settings)
    now = datetime.now(UTC)
    outcome = TrackOutcome()
    valid = _validate_all(
        events, now=now, settings=settings, domain=domain, money_allowed=_may_publish_money(viewer), outcome=outcome
    )
    if not valid:
        return outcome
    async with unavailable_on_database_errors():
        known, salt = await _lookups(organization_id, valid, now)
    valid = _keep_known_profiles(valid, known, outcome)
    valid = _apply_dnt(valid, settings, outcome)
    valid = _drop_repeats(valid, outcome)
    if not valid:
        return _finish(outcome, valid, set())
    org = str(organization_id)
    rows = [_enrich(event, org=org, client_ip=client_ip, geo=geo, salt=salt) for event in valid]
    async with unavailable_on_database_errors():
        await privacy.pseudonymize_at_ingest(organization_id, rows, now=now, settings=settings)
        fresh = await _store(organization_id, rows)
    return _finish(outcome, valid, fresh)


def _may_publish_money(viewer: Viewer) -> bool:
    """The same credentials that may publish domain events (see the module docstring)."""
    try:
        require_service(viewer)
    except UserError:
        return False
    return True


def _finish(outcome: TrackOutcome, valid: list[_Event], fresh: set[str]) -> TrackOutcome:
    """Every submitted event ends up counted exactly once: accepted, duplicate, dropped or rejected."""
    outcome.event_ids = [e.event_id for e in valid if e.event_id in fresh]
    outcome.accepted = len(outcome.event_ids)
    outcome.duplicates += len(valid) - outcome.accepted
    outcome.rejected.sort(key=lambda r: r.index)
    return outcome


# --------------------------------------------------------------------------- validation


@dataclass(slots=True)
class _Event:
    """An event that passed validation, normalised to storable Python values."""

    index: int
    event_id: str
    type: str
    occurred_at: datetime
    profile_id: uuid.UUID | None
    user_id: str | None
    anonymous_id: str | None
    session_id: str | None
    engagement_ms: int | None
    amount_minor: int | None
    currency: str | None
    properties: str
    context: dict[str, str | None]
    dnt: bool


class _Invalid(Exception):
    """Raised inside validation only; becomes a Rejection for that one event."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _validate_all(
    events: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    settings: Settings,
    domain: bool,
    money_allowed: bool,
    outcome: TrackOutcome,
) -> list[_Event]:
    """Pure checks first, so a batch of garbage costs no database round trip."""
    limits = _TimeLimits(
        earliest=now - timedelta(days=settings.max_event_age_days),
        latest=now + timedelta(seconds=settings.max_future_skew_seconds),
        now=now,
        settings=settings,
    )
    valid: list[_Event] = []
    for index, raw in enumerate(events):
        try:
            valid.append(_validate(index, raw, limits=limits, domain=domain, money_allowed=money_allowed))
        except _Invalid as exc:
            outcome.rejected.append(Rejection(index=index, field=exc.field, reason=exc.reason))
    return valid


@dataclass(frozen=True, slots=True)
class _TimeLimits:
    earliest: datetime
    latest: datetime
    now: datetime
    settings: Settings


def _validate(index: int, raw: Mapping[str, Any], *, limits: _TimeLimits, domain: bool, money_allowed: bool) -> _Event:
    """One event; raises _Invalid naming the first offending field."""
    if not _is_mapping(raw):
        raise _Invalid(None, "each event must be an object")
    if not _EVENT_KEYS.issuperset(raw):
        key = str(next(key for key in raw if key not in EVENT_FIELDS))[:64]
        raise _Invalid(key, f"unknown field {key!r}")
    event_type = _event_type(raw.get("type"), domain=domain)
    amount, currency = _money(event_type, raw.get("amount_minor"), raw.get("currency"), money_allowed)
    problem = revenue.check_properties(event_type, raw.get("properties")) or financial_reports.check_properties(
        event_type, raw.get("properties")
    )
    if problem is not None:
        raise _Invalid(*problem)
    context, dnt = _context(raw.get("context"))
    return _Event(
        index=index,
        event_id=_event_id(raw.get("event_id"), required=domain),
        type=event_type,
        occurred_at=_occurred_at(raw.get("occurred_at"), limits),
        profile_id=_profile_id(raw.get("profile_id"), event_type=event_type),
        user_id=_optional_id(raw.get("user_id"), "userId"),
        anonymous_id=_optional_id(raw.get("anonymous_id"), "anonymousId"),
        session_id=_optional_id(raw.get("session_id"), "sessionId"),
        engagement_ms=_engagement(raw.get("engagement_ms")),
        amount_minor=amount,
        currency=currency,
        properties=_properties(raw.get("properties")),
        context=context,
        dnt=dnt,
    )


def _event_type(value: Any, *, domain: bool) -> str:
    """Printable names without surrounding blanks: "profile.viewed", "Signed Up", "$pageview"."""
    if not isinstance(value, str) or not value:
        raise _Invalid("type", "type is required")
    if len(value) > TYPE_MAX_CHARS:
        raise _Invalid("type", f"type is longer than {TYPE_MAX_CHARS} characters")
    if not value.isprintable() or value != value.strip():
        raise _Invalid("type", "type must be printable text without leading or trailing spaces")
    if domain and value not in DOMAIN_EVENT_TYPES:
        raise _Invalid("type", f"{value!r} is not a domain event type")
    return value


def _is_printable_id(value: str) -> bool:
    """Control characters, NULs and lone surrogates in ids would break storage or joins."""
    return value.isprintable()


def _event_id(value: Any, *, required: bool) -> str:
    """The idempotency key; generated when absent, since an event needs an identity to be stored."""
    if value is None:
        if required:
            raise _Invalid("eventId", "eventId is required for domain events")
        return _new_event_id()
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("eventId", "eventId must be a non-empty string")
    if len(value) > EVENT_ID_MAX_CHARS:
        raise _Invalid("eventId", f"eventId is longer than {EVENT_ID_MAX_CHARS} characters")
    if not _is_printable_id(value):
        raise _Invalid("eventId", "eventId must be printable text")
    return value


def _new_event_id() -> str:
    """A uuid4 in its usual text form, at a quarter of the cost of str(uuid.uuid4())."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _optional_id(value: Any, name: str) -> str | None:
    """Blank ids mean "not known", the same as absent."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise _Invalid(name, f"{name} must be a string")
    if not value.strip():
        return None
    if len(value) > ID_MAX_CHARS:
        raise _Invalid(name, f"{name} is longer than {ID_MAX_CHARS} characters")
    if not _is_printable_id(value):
        raise _Invalid(name, f"{name} must be printable text")
    return value


def _profile_id(value: Any, *, event_type: str) -> uuid.UUID | None:
    """Only the shape here; whether the profile is the viewer's is checked with one query per batch.

    Profile event types need one, tracked or published; commerce domain events (orders,
    payments, accounts, tickets) need none."""
    if value is None or value == "":
        if event_type in PROFILE_EVENT_TYPES:
            raise _Invalid("profileId", f"{event_type} needs a profileId")
        return None
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        raise _Invalid("profileId", "profileId is not a valid id")
    try:
        return _parse_uuid(value)
    except ValueError:
        raise _Invalid("profileId", "profileId is not a valid id") from None


@lru_cache(maxsize=4096)
def _parse_uuid(value: str) -> uuid.UUID:
    """A batch names few profiles many times."""
    return uuid.UUID(value)


def _occurred_at(value: Any, limits: _TimeLimits) -> datetime:
    """Reject naive times (see module docstring) and times outside the accepted window."""
    if value is None:
        return limits.now
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise _Invalid("occurredAt", "occurredAt is not an ISO 8601 date-time") from None
    if not isinstance(value, datetime):
        raise _Invalid("occurredAt", "occurredAt must be an ISO 8601 date-time")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _Invalid("occurredAt", "occurredAt needs a UTC offset, e.g. 2026-05-01T12:00:00Z")
    try:
        moment = value.astimezone(UTC)
    except OverflowError:
        raise _Invalid("occurredAt", "occurredAt is out of range") from None
    if moment > limits.latest:
        seconds = limits.settings.max_future_skew_seconds
        raise _Invalid("occurredAt", f"occurredAt is more than {seconds} seconds in the future")
    if moment < limits.earliest:
        raise _Invalid("occurredAt", f"occurredAt is older than {limits.settings.max_event_age_days} days")
    return moment


def _is_mapping(value: Any) -> bool:
    """isinstance against the Mapping ABC costs 5x a type check; JSON gives plain dicts."""
    return type(value) is dict or isinstance(value, Mapping)


def _is_int(value: Any) -> bool:
    """JSON true/false are bools, which Python would otherwise accept as 1/0."""
    return type(value) is int


def _money(event_type: str, amount: Any, currency: Any, money_allowed: bool) -> tuple[int | None, str | None]:
    """Money is integer minor units plus an ISO 4217 code, always together, never floats."""
    is_money = event_type in MONEY_MOVING_EVENT_TYPES
    if is_money and not money_allowed:
        raise _Invalid("type", f"{event_type} moves money: publish it with a service token (publishDomainEvents)")
    if amount is None and currency is None and not is_money:
        return None, None
    lowest = 1 if is_money else 0
    if not _is_int(amount) or not lowest <= amount <= BIGINT_MAX:
        kind = "a positive" if is_money else "a non-negative"
        raise _Invalid("amountMinor", f"amountMinor must be {kind} integer in minor units (e.g. cents)")
    if not isinstance(currency, str) or not revenue.CURRENCY_RE.fullmatch(currency):
        raise _Invalid("currency", "currency must be an ISO 4217 code such as EUR")
    return amount, currency


def _engagement(value: Any) -> int | None:
    """A page-leave beacon's time on page; more than a day is a broken timer, not a reader."""
    if value is None:
        return None
    if not _is_int(value) or not 0 <= value <= ENGAGEMENT_MAX_MS:
        raise _Invalid("engagementMs", f"engagementMs must be an integer from 0 to {ENGAGEMENT_MAX_MS}")
    return int(value)


def _properties(value: Any) -> str:
    """Serialized once here: the size check and the jsonb column both need the text."""
    if value is None:
        return "{}"
    if not _is_mapping(value):
        raise _Invalid("properties", "properties must be a JSON object")
    try:
        data = orjson.dumps(value)
    except (orjson.JSONEncodeError, TypeError):
        raise _Invalid(
            "properties", "properties must be plain JSON (text keys, 64-bit integers, valid Unicode)"
        ) from None
    if len(data) > PROPERTIES_MAX_BYTES:
        raise _Invalid("properties", f"properties exceed {PROPERTIES_MAX_BYTES} bytes as JSON")
    if b"\\u0000" in data and _JSON_NUL_RE.search(data):
        raise _Invalid("properties", "properties must not contain NUL characters")
    return data.decode()


_NO_CONTEXT: dict[str, str | None] = {}
# Context only enriches, so oversized text is cut rather than rejected; the bound keeps
# every enrichment cache small whatever a client sends.
CONTEXT_TEXT_MAX_CHARS = 8192
_CONTEXT_MAX_CHARS = {"ip": 64, "user_agent": USER_AGENT_MAX_CHARS}


def _context(value: Any) -> tuple[dict[str, str | None], bool]:
    """Context only enriches: its text is cleaned rather than rejected, its shape is checked."""
    if value is None:
        return _NO_CONTEXT, False
    if not _is_mapping(value):
        raise _Invalid("context", "context must be an object")
    if not _CONTEXT_KEYS.issuperset(value):
        key = str(next(key for key in value if key not in CONTEXT_FIELDS))[:64]
        raise _Invalid(f"context.{key}", f"unknown field {key!r}")
    dnt = value.get("dnt")
    if dnt is not None and not isinstance(dnt, bool):
        raise _Invalid("context.dnt", "context.dnt must be a boolean")
    texts: dict[str, str | None] = {}
    for key, name in CONTEXT_TEXT_FIELDS.items():
        text = value.get(key)
        if text is None:
            continue
        if not isinstance(text, str):
            raise _Invalid(f"context.{name}", f"context.{name} must be a string")
        texts[key] = _storable_text(text[: _CONTEXT_MAX_CHARS.get(key, CONTEXT_TEXT_MAX_CHARS)])
    return texts, bool(dnt)


def _storable_text(value: str) -> str:
    """PostgreSQL text cannot hold NUL and UTF-8 cannot hold lone surrogates (JSON can send both)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            value = value.encode("utf-8", "replace").decode()
    return value


def _keep_known_profiles(valid: list[_Event], known: set[uuid.UUID], outcome: TrackOutcome) -> list[_Event]:
    """A foreign profile answers "not found", exactly like one that does not exist."""
    kept: list[_Event] = []
    for event in valid:
        if event.profile_id is not None and event.profile_id not in known:
            outcome.rejected.append(Rejection(index=event.index, field="profileId", reason="profile not found"))
        else:
            kept.append(event)
    return kept


def _apply_dnt(valid: list[_Event], settings: Settings, outcome: TrackOutcome) -> list[_Event]:
    """Drop mode honours Do-Not-Track by not storing at all; anonymize mode is applied in _enrich."""
    if settings.dnt_mode != "drop":
        return valid
    kept = [event for event in valid if not event.dnt]
    outcome.dropped += len(valid) - len(kept)
    return kept


def _drop_repeats(valid: list[_Event], outcome: TrackOutcome) -> list[_Event]:
    """The second occurrence of an eventId in one batch is a duplicate, as it would be in the next call."""
    seen: set[str] = set()
    kept: list[_Event] = []
    for event in valid:
        if event.event_id in seen:
            outcome.duplicates += 1
        else:
            seen.add(event.event_id)
            kept.append(event)
    return kept


# --------------------------------------------------------------------------- enrichment


@dataclass(slots=True)
class _Row:
    """An event with everything derived from its context, ready for COPY."""

    event: _Event
    visitor_id: str | None
    session_id: str | None
    ip: str | None
    user_agent: str | None
    device: Device
    country: str | None
    region: str | None
    city: str | None
    asn: int | None
    as_org: str | None
    attribution: Attribution
    pending: bool
    ip_hash: str | None = None  # set instead of `ip` when the organization keeps no raw IPs

    def record(self, organization_id: uuid.UUID) -> tuple[Any, ...]:
        """Values in STORED_COLUMNS order."""
        e, a, d = self.event, self.attribution, self.device
        return (
            organization_id, e.occurred_at, e.event_id, e.type, e.profile_id, self.visitor_id, e.user_id,
            e.anonymous_id, self.session_id, e.properties, e.amount_minor, e.currency, e.engagement_ms,
            _inet(self.ip), self.country, self.region, self.city, self.asn, self.as_org, self.user_agent,
            d.device_type, d.browser, d.os, a.url, a.referrer, a.referrer_domain, a.utm_source,
            a.utm_medium, a.utm_campaign, a.utm_term, a.utm_content, e.dnt, self.ip_hash,
        )  # fmt: skip


def _inet(ip: str | None) -> int | str | None:
    """The `ip` column's COPY value. asyncpg parses a text address with ipaddress on every row
    (~4 µs, a third of the COPY's encoding); an IPv4 address given as its integer is taken as
    is. `ip` is normalized already (enrichment.normalize_ip): IPv4 is a plain dotted quad."""
    if ip is None or ":" in ip:
        return ip
    a, b, c, d = ip.split(".")
    return int(a) << 24 | int(b) << 16 | int(c) << 8 | int(d)


ATTRIBUTION_CACHE_SIZE = 4096
IP_CACHE_SIZE = 10_000
_CACHEABLE_CHARS = 4096  # longer inputs are parsed uncached, so the cache stays ~20 MB at worst


@lru_cache(maxsize=ATTRIBUTION_CACHE_SIZE)
def _attribution_cached(url: str | None, referrer: str | None, utm: tuple[tuple[str, str], ...]) -> Attribution:
    return parse_attribution(url=url, referrer=referrer, utm=dict(utm) if utm else None)


def _attribution(url: str | None, referrer: str | None, utm: tuple[tuple[str, str], ...]) -> Attribution:
    """Events of one page repeat the same URL and referrer; parsing them once pays off."""
    size = len(url or "") + len(referrer or "") + sum(len(value) for _, value in utm)
    if size > _CACHEABLE_CHARS:
        return parse_attribution(url=url, referrer=referrer, utm=dict(utm) if utm else None)
    return _attribution_cached(url, referrer, utm)


def _enrich(event: _Event, *, org: str, client_ip: str | None, geo: GeoLocator, salt: bytes) -> _Row:
    """Derive device, place, source and visitor; DNT events lose everything that identifies."""
    ctx = event.context
    ip, place = _place(geo, geo.version, ctx["ip"] if ctx.get("ip") is not None else client_ip)
    user_agent = _stored_user_agent(ctx.get("user_agent"))
    utm = tuple((key, value) for key in _UTM_KEYS if (value := ctx.get(key)) is not None)
    row = _Row(
        event=event,
        visitor_id=_visitor(org, event, ip, user_agent, salt),
        session_id=event.session_id,
        ip=ip,
        user_agent=user_agent,
        device=parse_user_agent(user_agent),
        country=place.country,
        region=place.region,
        city=place.city,
        asn=place.asn,
        as_org=place.as_org,
        attribution=_attribution(ctx.get("url"), ctx.get("referrer"), utm),
        pending=needs_worker(event.type, event.profile_id is not None),
    )  # fmt: skip
    if event.dnt:
        _anonymize(row)
    return row


@lru_cache(maxsize=IP_CACHE_SIZE)
def _place(geo: GeoLocator, version: int, raw_ip: str | None) -> tuple[str | None, Geo]:
    """Parsing an address costs ~6 µs and enrichment does it per call; a visitor's events repeat it.
    The locator's `version` is part of the key: after it reloads its files, no answer of the
    previous ones is reused."""
    ip = normalize_ip(raw_ip)
    return ip, geo.lookup(ip)


def _visitor(org: str, event: _Event, ip: str | None, user_agent: str | None, salt: bytes) -> str | None:
    """Only the cookie-less hash is worth caching; explicit ids are just prefixed."""
    if (event.user_id or event.anonymous_id) or ip is None:
        return visitor_id(
            organization_id=org, user_id=event.user_id, anonymous_id=event.anonymous_id,
            ip=ip, user_agent=user_agent, salt=salt,
        )  # fmt: skip
    return _hashed_visitor(org, ip, user_agent, salt)


@lru_cache(maxsize=IP_CACHE_SIZE)
def _hashed_visitor(org: str, ip: str, user_agent: str | None, salt: bytes) -> str | None:
    return visitor_id(organization_id=org, user_id=None, anonymous_id=None, ip=ip, user_agent=user_agent, salt=salt)


def _stored_user_agent(value: str | None) -> str | None:
    """Bounded like enrichment's parse key, so the hash and the stored value agree."""
    if not value:
        return None
    return value.strip()[:USER_AGENT_MAX_CHARS] or None


def _anonymize(row: _Row) -> None:
    """Keep what is coarse (country, device class); forget what identifies a person."""
    event = row.event
    event.user_id = event.anonymous_id = event.session_id = None
    row.visitor_id = row.session_id = row.ip = row.user_agent = None
    row.region = row.city = row.as_org = None
    row.asn = None


# --------------------------------------------------------------------------- lookups


_salts: dict[date, bytes] = {}


async def _lookups(organization_id: uuid.UUID, valid: list[_Event], now: datetime) -> tuple[set[uuid.UUID], bytes]:
    """Everything validation and enrichment need from the database, on one connection."""
    wanted = list({e.profile_id for e in valid if e.profile_id is not None})
    async with connection() as conn:
        known = await _open_organization_profiles(conn, organization_id, wanted)
        salt = await _daily_salt(conn, salt_day(now))
    return known, salt


ORGANIZATION_AND_PROFILES = """
SELECT o.status,
       ARRAY(SELECT p.id FROM profiles p WHERE p.organization_id = o.id AND p.id = ANY($2::uuid[])) AS known
FROM organizations o WHERE o.id = $1
"""


async def _open_organization_profiles(
    conn: asyncpg.Connection, organization_id: uuid.UUID, wanted: list[uuid.UUID]
) -> set[uuid.UUID]:
    """The batch's profiles that belong to the viewer's organization, in the same query that
    refuses a suspended organization (a platform admin's suspension stops its data at once)."""
    row = await conn.fetchrow(ORGANIZATION_AND_PROFILES, organization_id, wanted)
    if row is None:
        return set()
    if row["status"] == "suspended":
        raise Forbidden("this organization is suspended: its events are refused until a platform admin reinstates it")
    return set(row["known"])


async def _daily_salt(conn: asyncpg.Connection, day: date) -> bytes:
    """Every API replica must hash with the same salt, so it lives in the database; cached per day."""
    salt = _salts.get(day)
    if salt is not None:
        return salt
    await conn.execute(
        "INSERT INTO visitor_salts (day, salt) VALUES ($1, $2) ON CONFLICT (day) DO NOTHING",
        day,
        secrets.token_bytes(32),
    )
    salt = await conn.fetchval("SELECT salt FROM visitor_salts WHERE day = $1", day)
    # Once a day per process: forget salts older than yesterday so old hashes cannot be rebuilt.
    await conn.execute("DELETE FROM visitor_salts WHERE day < $1", day - timedelta(days=1))
    _salts.clear()
    _salts[day] = bytes(salt)
    return _salts[day]


# --------------------------------------------------------------------------- storage


async def _ensure_partitions(conn: asyncpg.Connection, rows: Iterable[_Row]) -> None:
    """Late or back-filled events may fall in months the migration did not create.

    profile_events partitions are made too for events the worker will copy there, so a
    late profile event cannot become a poison message for the worker. Runs outside the
    transaction (DDL takes locks).
    """
    needed: set[partitions.Partition] = set()
    for row in rows:
        month = partitions.month_of(row.event.occurred_at)
        needed.add(("events", month))
        if row.pending:
            needed.add(("profile_events", month))
    await partitions.ensure(conn, needed)


async def _store(organization_id: uuid.UUID, rows: list[_Row]) -> set[str]:
    """Write the batch in one transaction; returns the ids that were new.

    Retried once when a partition vanished under the process cache (retention drops
    old months) or when PostgreSQL broke a deadlock: the transaction rolled back whole,
    so running it again cannot store anything twice.
    """
    rows.sort(key=lambda r: r.event.event_id)  # one lock order across concurrent batches
    async with connection() as conn:
        for attempt in (1, 2):
            await _ensure_partitions(conn, rows)
            try:
                return await _write(conn, organization_id, rows)
            except (asyncpg.CheckViolationError, asyncpg.DeadlockDetectedError) as exc:
                if attempt == 2 or not _is_retryable_write_error(exc):
                    raise
                partitions.forget()
    raise AssertionError("unreachable")


def _is_retryable_write_error(exc: Exception) -> bool:
    return isinstance(exc, asyncpg.DeadlockDetectedError) or partitions.is_missing_partition(exc)


async def _write(conn: asyncpg.Connection, organization_id: uuid.UUID, rows: list[_Row]) -> set[str]:
    """Outbox (the idempotency ledger) first; only the events it took as new are stored."""
    async with conn.transaction():
        fresh_ids = await _insert_outbox(conn, organization_id, rows)
        fresh = [row for row in rows if row.event.event_id in fresh_ids]
        if not fresh:
            return fresh_ids
        continued = await _assign_sessions(conn, organization_id, fresh)
        await conn.copy_records_to_table(
            "events", records=[row.record(organization_id) for row in fresh], columns=STORED_COLUMNS
        )
        await _upsert_sessions(conn, organization_id, fresh, continued)
        if any(row.pending for row in fresh):
            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")  # delivered at commit
    return fresh_ids


_INSERT_OUTBOX = """
INSERT INTO outbox (organization_id, event_id, occurred_at, type, processed_at)
SELECT $1::uuid, e.event_id, e.occurred_at, e.type, CASE WHEN e.pending THEN NULL ELSE now() END
FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::bool[]) AS e(event_id, occurred_at, type, pending)
ON CONFLICT (organization_id, event_id) DO NOTHING
RETURNING event_id
"""


async def _insert_outbox(conn: asyncpg.Connection, organization_id: uuid.UUID, rows: list[_Row]) -> set[str]:
    """Events the worker has nothing to do for are stored already processed, so it never sees them."""
    records = await conn.fetch(
        _INSERT_OUTBOX,
        organization_id,
        [r.event.event_id for r in rows],
        [r.event.occurred_at for r in rows],
        [r.event.type for r in rows],
        [r.pending for r in rows],
    )
    return {record["event_id"] for record in records}


# --------------------------------------------------------------------------- sessions


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


async def _assign_sessions(conn: asyncpg.Connection, organization_id: uuid.UUID, rows: list[_Row]) -> set[str]:
    """Give each visitor's events without a sessionId the session they continue, or a new one.

    Reads the visitors' latest sessions in one query and returns the ids of those that
    were continued (they exist, so they only need an update). Two concurrent batches of
    the same visitor may both start a session: a split visit, never a lost event.
    """
    by_visitor: dict[str, list[_Row]] = {}
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


def _walk_visitor(rows: list[_Row], current: _OpenSession | None) -> None:
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


async def _upsert_sessions(
    conn: asyncpg.Connection, organization_id: uuid.UUID, rows: list[_Row], continued: set[str]
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


def _sessions_of(rows: list[_Row]) -> dict[str, list[_Row]]:
    grouped: dict[str, list[_Row]] = {}
    for row in rows:
        if row.session_id is not None:
            grouped.setdefault(row.session_id, []).append(row)
    return grouped


def _new_session(session_id: str, first: _Row, last_seen: datetime, count: int) -> tuple[Any, ...]:
    """A session's landing page, source and device are those of its earliest event."""
    a, d = first.attribution, first.device
    return (
        session_id, first.visitor_id, first.event.occurred_at, last_seen, count, a.url, a.referrer_domain,
        a.utm_source, a.utm_medium, a.utm_campaign, d.device_type, d.browser, d.os, first.country,
    )  # fmt: skip
