"""Checking the events of a batch before anything touches the database, naming the bad field.

Each event is checked on its own: a bad one becomes a `Rejection` (index, the GraphQL
camelCase field, reason) and the others go on. Decisions a client can notice:

- `occurredAt` must carry a UTC offset. A naive time is rejected rather than read as UTC:
  a beacon sending local wall-clock time would otherwise shift every report by hours,
  silently. (`Date.prototype.toISOString()` always sends one.)
- Money events (gift.purchased, booking.completed, subscription.charged feed revenue;
  order.paid and order.refunded feed the fraud rules, affiliate.commission and
  payout.settled the ledger) need amountMinor and currency; the money properties the
  ledger reads (fees, split, order id, creator, take rate...) are checked here
  (`revenue.check_properties`), the marketplace's (service, latency, search...) too
  (`marketplace.vocabulary.check_properties`).
  Whether the credential may send money events at all is the service's call
  (`money_allowed`).
- Context only enriches: its text is cut and cleaned rather than rejected; its shape is checked.
- Events without eventId get a server-generated uuid4; domain events must carry one.
- `ticket.scan_failed` needs properties.errorType (invalid_code, already_used, network),
  deviceId, and ticketId or code (`system_health.scanning.check_properties`).
- `properties.buyerEmail` (any event) must be an email address; it is never stored: it is
  trimmed, lowercased and replaced by `properties.buyerEmailHash`, its keyed hash
  (app/services/buyer_emails.py), before the event is written. A client may not send the hash.
- payment.failed's `properties.reason` is short text when present (app/services/failed_payments.py);
  webhook.failed needs a service token and `properties.endpoint` (app/services/host_webhooks.py).
- `user.identified` needs both userId and anonymousId; `properties.$set` and
  `properties.$set_once` (person properties, app/services/insights/persons.py) must be objects.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import orjson

from app.services import buyer_emails, failed_payments, financial_reports, host_webhooks, listings, revenue
from app.services.experiments import contract as experiments
from app.services.ingestion.outcome import Rejection, TrackOutcome
from app.services.marketplace import vocabulary as marketplace
from app.services.profile_analytics import vocabulary as profile_engagement
from app.services.revenue.money import CURRENCY_RE
from app.services.system_health import scanning
from app.settings import Settings
from app.vocabulary import (
    DOMAIN_EVENT_TYPES,
    LISTING_EVENT_TYPES,
    MONEY_MOVING_EVENT_TYPES,
    PROFILE_EVENT_TYPES,
    USER_IDENTIFIED,
    WEBHOOK_FAILED,
)

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


@dataclass(slots=True)
class ValidEvent:
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
    # properties.$set / properties.$set_once: person properties this event sets (None: none)
    person_set: dict[str, Any] | None = None
    person_set_once: dict[str, Any] | None = None


class _Invalid(Exception):
    """Raised inside validation only; becomes a Rejection for that one event."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def validate_all(
    events: Sequence[Mapping[str, Any]],
    *,
    now: datetime,
    settings: Settings,
    domain: bool,
    money_allowed: bool,
    outcome: TrackOutcome,
) -> list[ValidEvent]:
    """Pure checks first, so a batch of garbage costs no database round trip."""
    limits = _TimeLimits(
        earliest=now - timedelta(days=settings.max_event_age_days),
        latest=now + timedelta(seconds=settings.max_future_skew_seconds),
        now=now,
        settings=settings,
    )
    valid: list[ValidEvent] = []
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


def _validate(
    index: int, raw: Mapping[str, Any], *, limits: _TimeLimits, domain: bool, money_allowed: bool
) -> ValidEvent:
    """One event; raises _Invalid naming the first offending field."""
    if not _is_mapping(raw):
        raise _Invalid(None, "each event must be an object")
    if not _EVENT_KEYS.issuperset(raw):
        key = str(next(key for key in raw if key not in EVENT_FIELDS))[:64]
        raise _Invalid(key, f"unknown field {key!r}")
    event_type = _event_type(raw.get("type"), domain=domain)
    amount, currency = _money(event_type, raw.get("amount_minor"), raw.get("currency"), money_allowed)
    if event_type in LISTING_EVENT_TYPES and not money_allowed:
        raise _Invalid("type", f"{event_type} describes a ticketed event: publish it with a service token (publishDomainEvents)")
    if event_type == WEBHOOK_FAILED and not money_allowed:
        raise _Invalid("type", f"{event_type} reports the host platform's webhooks: publish it with a service token (publishDomainEvents)")
    problem = (
        revenue.check_properties(event_type, raw.get("properties"))
        or financial_reports.check_properties(event_type, raw.get("properties"))
        or experiments.check_properties(event_type, raw.get("properties"))
        or marketplace.check_properties(event_type, raw.get("properties"))
        or profile_engagement.check_properties(event_type, raw.get("properties"))
        or listings.check_properties(event_type, raw.get("properties"))
        or scanning.check_properties(event_type, raw.get("properties"))
        or failed_payments.check_properties(event_type, raw.get("properties"))
        or host_webhooks.check_properties(event_type, raw.get("properties"))
    )
    if problem is not None:
        raise _Invalid(*problem)
    context, dnt = _context(raw.get("context"))
    event_id = _event_id(raw.get("event_id"), required=domain)
    occurred_at = _occurred_at(raw.get("occurred_at"), limits)
    profile_id = _profile_id(raw.get("profile_id"), event_type=event_type)
    user_id = _optional_id(raw.get("user_id"), "userId")
    anonymous_id = _optional_id(raw.get("anonymous_id"), "anonymousId")
    if event_type == USER_IDENTIFIED and (user_id is None or anonymous_id is None):
        raise _Invalid("userId" if user_id is None else "anonymousId", f"{USER_IDENTIFIED} links an anonymousId to a userId: send both")
    session_id = _optional_id(raw.get("session_id"), "sessionId")
    engagement_ms = _engagement(raw.get("engagement_ms"))
    raw_properties = raw.get("properties")
    if raw_properties and _is_mapping(raw_properties):
        raw_properties, problem = buyer_emails.hashed_properties(raw_properties, limits.settings)
        if problem is not None:
            raise _Invalid(*problem)
    properties = _properties(raw_properties)
    person_set = person_set_once = None
    if raw_properties and ("$set" in raw_properties or "$set_once" in raw_properties):
        person_set = _person_properties(raw_properties, "$set")
        person_set_once = _person_properties(raw_properties, "$set_once")
    return ValidEvent(
        index=index,
        event_id=event_id,
        type=event_type,
        occurred_at=occurred_at,
        profile_id=profile_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        session_id=session_id,
        engagement_ms=engagement_ms,
        amount_minor=amount,
        currency=currency,
        properties=properties,
        context=context,
        dnt=dnt,
        person_set=person_set,
        person_set_once=person_set_once,
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
    if not isinstance(currency, str) or not CURRENCY_RE.fullmatch(currency):
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


def _person_properties(properties: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    """properties.$set / properties.$set_once: an object of person properties (checked as
    plain JSON with the rest of `properties` already)."""
    value = properties.get(key)
    if value is None:
        return None
    if not _is_mapping(value):
        raise _Invalid(f"properties.{key}", f"properties.{key} must be an object of person properties")
    return dict(value) or None


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


def keep_known_profiles(valid: list[ValidEvent], known: set[uuid.UUID], outcome: TrackOutcome) -> list[ValidEvent]:
    """A foreign profile answers "not found", exactly like one that does not exist."""
    kept: list[ValidEvent] = []
    for event in valid:
        if event.profile_id is not None and event.profile_id not in known:
            outcome.rejected.append(Rejection(index=event.index, field="profileId", reason="profile not found"))
        else:
            kept.append(event)
    return kept

