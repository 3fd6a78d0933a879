"""The per-event enrichment step: device, place, source and visitor of each valid event.

The parsing and hashing are the enrichment service's (`app.services.enrichment`); this step
feeds it an event's context, caches what a batch repeats, and yields the `Row` that is stored
(values in the `events` table's column order, `EVENT_COLUMNS`, which the bench loaders use too).

- The client IP is `context.ip`, else `client_ip`. Only the REST beacon endpoints pass
  the caller's address: a GraphQL caller is typically a backend forwarding events, and
  its own address would be attributed to every visitor.
- The cookie-less visitor hash uses the salt of the day the event is *received* (UTC),
  like Plausible: yesterday's salt is deleted after a day, so it cannot be re-derived
  for late events without defeating its purpose. The salt lives in the database, so that
  every API replica hashes alike (`daily_salt`).
- Do-Not-Track, "anonymize" mode: stored without IP, user/anonymous/visitor/session ids,
  raw user agent, region, city and network (ASN); the country, device class, browser
  and OS stay, being too coarse to single anyone out. ("drop" mode is the service's.)
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import asyncpg

from app.services.enrichment import (
    Attribution,
    Device,
    Geo,
    GeoLocator,
    normalize_ip,
    parse_attribution,
    parse_user_agent,
    visitor_id,
)
from app.services.ingestion.validation import USER_AGENT_MAX_CHARS, ValidEvent
from app.vocabulary import needs_worker

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


@dataclass(slots=True)
class Row:
    """An event with everything derived from its context, ready for COPY."""

    event: ValidEvent
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


def enrich_event(event: ValidEvent, *, org: str, client_ip: str | None, geo: GeoLocator, salt: bytes) -> Row:
    """Derive device, place, source and visitor; DNT events lose everything that identifies."""
    ctx = event.context
    ip, place = _place(geo, geo.version, ctx["ip"] if ctx.get("ip") is not None else client_ip)
    user_agent = _stored_user_agent(ctx.get("user_agent"))
    utm = tuple((key, value) for key in _UTM_KEYS if (value := ctx.get(key)) is not None)
    row = Row(
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


def _visitor(org: str, event: ValidEvent, ip: str | None, user_agent: str | None, salt: bytes) -> str | None:
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


def _anonymize(row: Row) -> None:
    """Keep what is coarse (country, device class); forget what identifies a person."""
    event = row.event
    event.user_id = event.anonymous_id = event.session_id = None
    row.visitor_id = row.session_id = row.ip = row.user_agent = None
    row.region = row.city = row.as_org = None
    row.asn = None



_salts: dict[date, bytes] = {}


async def daily_salt(conn: asyncpg.Connection, day: date) -> bytes:
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
