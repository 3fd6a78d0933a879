"""A deterministic, realistic event stream for the benchmarks.

Same seed, same data: organizations (several time zones, very different sizes), profiles
drawn Zipf-style per organization, returning visitors drawn Zipf-style from a per-org
pool, visits (sessions) of a few events each — views, a second profile, inquiries,
bookings, gifts, page-leave engagement beacons and plain page views without a profile —
real browser user agents (and a few bots), UTM campaign mixes, referrers, and IPv4 and
IPv6 addresses.

Two shapes of the same events:
* `api_event()`: the camelCase dict a client sends to `trackEvents`;
* `event_record()` / `profile_event_record()`: enriched rows for a direct binary COPY into
  `events` / `profile_events` (bench setup for the query and rollup benchmarks), enriched
  with the same functions the ingestion service uses.
"""

from __future__ import annotations

import bisect
import itertools
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

ORGS = [  # (name, time zone, share of the traffic, profiles)
    ("Atlas Marketplace", "Europe/Berlin", 0.55, 0.5),
    ("Bayside Creators", "America/New_York", 0.25, 0.25),
    ("Chai & Co", "Asia/Kolkata", 0.12, 0.15),
    ("Dunedin Guides", "Pacific/Auckland", 0.08, 0.10),
]

USER_AGENTS = [  # (user agent, weight)
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", 26),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0", 6),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15", 10),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", 6),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", 20),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", 6),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", 9),
    ("Mozilla/5.0 (Linux; Android 14; SM-S921B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", 7),
    ("Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1", 3),
    ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0", 3),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", 3),
    ("Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36", 1),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 1),
    ("Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 1),
]  # fmt: skip
REFERRERS = [
    (None, 38), ("https://www.google.com/", 24), ("https://www.instagram.com/", 10), ("https://l.facebook.com/", 6),
    ("https://t.co/x7Yz", 4), ("https://www.reddit.com/r/travel/comments/abc/", 4), ("https://duckduckgo.com/", 3),
    ("https://www.bing.com/", 3), ("https://www.tiktok.com/", 4), ("https://news.ycombinator.com/", 1),
    ("https://android-app://com.google.android.gm/", 2), ("https://mail.yahoo.com/", 1),
]  # fmt: skip
CAMPAIGNS = [
    ("", 62),
    ("?utm_source=newsletter&utm_medium=email&utm_campaign=spring_sale", 9),
    ("?utm_source=instagram&utm_medium=social&utm_campaign=stories", 8),
    ("?utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=city+guide", 7),
    ("?utm_source=facebook&utm_medium=paid_social&utm_campaign=retargeting&utm_content=carousel_b", 5),
    ("?utm_source=tiktok&utm_medium=social&utm_campaign=creator_week", 4),
    ("?utm_source=partner&utm_medium=referral&utm_campaign=affiliates&utm_content=banner_728", 3),
    ("?ref=producthunt", 2),
]
HOUR_WEIGHTS = [2, 1, 1, 1, 1, 2, 3, 5, 6, 7, 7, 8, 8, 8, 8, 8, 9, 10, 12, 14, 15, 13, 9, 5]  # local hours
CURRENCIES = {"Europe/Berlin": "EUR", "America/New_York": "USD", "Asia/Kolkata": "INR", "Pacific/Auckland": "NZD"}


def _cumulative(weights: list[float]) -> list[float]:
    return list(itertools.accumulate(weights))


class _Weighted:
    """Fast repeated weighted choice (bisect over cumulative weights)."""

    def __init__(self, items: list[Any], weights: list[float]) -> None:
        self.items = items
        self.cumulative = _cumulative(weights)
        self.total = self.cumulative[-1]

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cumulative, rng.random() * self.total)]


def zipf_weights(n: int, s: float) -> list[float]:
    return [1 / (rank + 1) ** s for rank in range(n)]


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


@dataclass(frozen=True)
class Org:
    index: int
    id: uuid.UUID
    slug: str
    name: str
    timezone: str
    share: float
    profiles: list[uuid.UUID]

    @property
    def top_profile(self) -> uuid.UUID:
        return self.profiles[0]


@dataclass(frozen=True, slots=True)
class Visitor:
    id: str
    user_id: str | None
    ip: str
    user_agent: str


@dataclass(slots=True)
class Event:
    org: int
    event_id: str
    type: str
    occurred_at: datetime
    profile_id: uuid.UUID | None
    visitor: Visitor
    url: str
    referrer: str | None
    engagement_ms: int | None = None
    amount_minor: int | None = None
    currency: str | None = None


class Dataset:
    """The organizations, profiles and visitors of one seed; `events()` streams visits."""

    def __init__(self, *, seed: int = 42, profiles: int = 2000, visitors: int = 400_000) -> None:
        self.seed = seed
        rng = random.Random(seed)
        self.orgs: list[Org] = []
        for index, (name, tz, share, profile_share) in enumerate(ORGS):
            count = max(2, int(profiles * profile_share))
            self.orgs.append(
                Org(
                    index=index,
                    id=_uuid(rng),
                    slug=f"bench-{name.split()[0].lower()}-{seed}",
                    name=name,
                    timezone=tz,
                    share=share,
                    profiles=[_uuid(rng) for _ in range(count)],
                )
            )
        self._visitor_pool = max(100, visitors)
        self._visitors: dict[tuple[int, int], Visitor] = {}
        self.run_tag = ""  # prefixes event ids: a reused database already holds the untagged ones
        self._ua = _Weighted(*zip(*USER_AGENTS, strict=True))
        self._referrer = _Weighted(*zip(*REFERRERS, strict=True))
        self._campaign = _Weighted(*zip(*CAMPAIGNS, strict=True))
        self._profile_pick = {o.index: _Weighted(o.profiles, zipf_weights(len(o.profiles), 1.05)) for o in self.orgs}
        self._org_pick = _Weighted(self.orgs, [o.share for o in self.orgs])

    # -- visitors: derived from (seed, org, number), so they need no memory ------------------

    def visitor(self, org: int, number: int) -> Visitor:
        key = (org, number)
        found = self._visitors.get(key)
        if found is None:
            found = self._visitors[key] = self._make_visitor(org, number)
        return found

    def _make_visitor(self, org: int, number: int) -> Visitor:
        rng = random.Random(f"{self.seed}-{org}-{number}")
        if rng.random() < 0.15:
            ip = f"2a02:{rng.randrange(0x8000, 0xFFFF):x}:{rng.randrange(65536):x}:{rng.randrange(65536):x}::{rng.randrange(1, 65536):x}"
        else:
            ip = f"{rng.choice([31, 46, 77, 81, 85, 92, 109, 151, 176, 188, 203, 212])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        user_id = f"user-{org}-{number}" if rng.random() < 0.12 else None
        return Visitor(id=f"anon-{self.seed}-{org}-{number}", user_id=user_id, ip=ip, user_agent=self._ua.pick(rng))

    def _visitor_number(self, rng: random.Random, org: Org) -> int:
        pool = max(50, int(self._visitor_pool * org.share))
        # Returning visitors: a few come back often, most once (Zipf-like via a power law).
        return int(pool * rng.random() ** 2.2)

    # -- the stream ----------------------------------------------------------------------------

    def events(
        self,
        count: int,
        *,
        start: datetime,
        end: datetime,
        org: int | None = None,
        stream: int = 0,
        money: bool = True,
    ) -> Iterator[Event]:
        """`count` events (whole visits, cut at `count`) in [start, end), of one org or of all
        by share; `stream` separates independent streams of the same seed."""
        rng = random.Random(f"{self.seed}-events-{org}-{stream}-{count}")
        span = (end - start).total_seconds()
        days = max(1, int(span // 86400))
        made = 0
        visit = 0
        while made < count:
            the_org = self.orgs[org] if org is not None else self._org_pick.pick(rng)
            visit += 1
            for event in self._visit(rng, the_org, f"{self.run_tag}{self.seed}-{stream}-{visit}", start, span, days, money):
                if event.occurred_at >= end:
                    event.occurred_at = end - timedelta(milliseconds=rng.randrange(1, 60_000))
                yield event
                made += 1
                if made >= count:
                    return

    def _visit_start(self, rng: random.Random, org: Org, start: datetime, span: float, days: int) -> datetime:
        if span < 2 * 86400:
            return start + timedelta(seconds=rng.random() * span)
        day = rng.randrange(days)
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        base = (start + timedelta(days=day)).astimezone(_zone(org.timezone)).replace(hour=hour, minute=0, second=0)
        moment = base.astimezone(UTC) + timedelta(seconds=rng.random() * 3600)
        return min(max(moment, start), start + timedelta(seconds=span - 1))

    def _visit(
        self, rng: random.Random, org: Org, key: str, start: datetime, span: float, days: int, money: bool
    ) -> Iterator[Event]:
        visitor = self.visitor(org.index, self._visitor_number(rng, org))
        at = self._visit_start(rng, org, start, span, days)
        referrer = self._referrer.pick(rng)
        campaign = self._campaign.pick(rng)
        host = f"https://{org.slug}.example"
        profiles = self._profile_pick[org.index]
        n = 0

        def make(kind: str, profile: uuid.UUID | None, when: datetime, url: str, **extra: Any) -> Event:
            nonlocal n
            n += 1
            return Event(org.index, f"b{key}-{n}", kind, when, profile, visitor, url, referrer, **extra)

        if rng.random() < 0.35:  # landed on the home page first
            yield make("page.viewed", None, at, f"{host}/{campaign}")
            at += timedelta(seconds=rng.randrange(3, 90))
        for _ in range(1 + (rng.random() < 0.22) + (rng.random() < 0.06)):
            profile = profiles.pick(rng)
            url = f"{host}/p/{str(profile)[:8]}{campaign}"
            yield make("profile.viewed", profile, at, url)
            if rng.random() < 0.08:
                yield make("profile.inquiry", profile, at + timedelta(seconds=rng.randrange(20, 400)), url)
                if money and rng.random() < 0.3:
                    yield make(
                        "booking.completed", profile, at + timedelta(seconds=rng.randrange(400, 900)), url,
                        amount_minor=rng.choice([4900, 8000, 12000, 15000, 20000]), currency=CURRENCIES[org.timezone],
                    )  # fmt: skip
            if money and rng.random() < 0.015:
                yield make(
                    "gift.purchased", profile, at + timedelta(seconds=rng.randrange(30, 300)), url,
                    amount_minor=rng.choice([500, 1000, 2500]), currency=CURRENCIES[org.timezone],
                )  # fmt: skip
            if rng.random() < 0.6:
                ms = min(86_400_000, int(rng.lognormvariate(10.3, 0.9)))
                yield make("profile.engaged", profile, at + timedelta(milliseconds=ms), url, engagement_ms=ms)
            at += timedelta(seconds=rng.randrange(20, 300))


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# -- shapes ------------------------------------------------------------------------------------


def api_event(event: Event) -> dict[str, Any]:
    """What a backend sends to trackEvents (camelCase; occurredAt with its offset)."""
    v = event.visitor
    body: dict[str, Any] = {
        "eventId": event.event_id,
        "type": event.type,
        "occurredAt": event.occurred_at.isoformat(),
        "anonymousId": v.id,
        "context": {"ip": v.ip, "userAgent": v.user_agent, "url": event.url, "referrer": event.referrer},
    }
    if v.user_id:
        body["userId"] = v.user_id
    if event.profile_id is not None:
        body["profileId"] = str(event.profile_id)
    if event.engagement_ms is not None:
        body["engagementMs"] = event.engagement_ms
    if event.amount_minor is not None:
        body["amountMinor"] = event.amount_minor
        body["currency"] = event.currency
    return body


@lru_cache(maxsize=4096)
def _device(user_agent: str) -> Any:
    from app.services.enrichment import parse_user_agent

    return parse_user_agent(user_agent)


@lru_cache(maxsize=262_144)
def _attribution(url: str, referrer: str | None) -> Any:
    from app.services.enrichment import parse_attribution

    return parse_attribution(url=url, referrer=referrer, utm=None)


def _visitor_id(event: Event) -> str:
    v = event.visitor
    return f"u:{v.user_id}" if v.user_id else f"a:{v.id}"


def event_record(event: Event, org_id: uuid.UUID) -> tuple[Any, ...]:
    """A row of `events` in app.services.ingestion.EVENT_COLUMNS order (no GeoIP database:
    no country/city/ASN, as in a default install; sessions are left to the API path)."""
    v, d, a = event.visitor, _device(event.visitor.user_agent), _attribution(event.url, event.referrer)
    return (
        org_id, event.occurred_at, event.event_id, event.type, event.profile_id, _visitor_id(event), v.user_id,
        v.id, None, "{}", event.amount_minor, event.currency, event.engagement_ms, v.ip,
        None, None, None, None, None, v.user_agent, d.device_type, d.browser, d.os, a.url, a.referrer,
        a.referrer_domain, a.utm_source, a.utm_medium, a.utm_campaign, a.utm_term, a.utm_content, False,
    )  # fmt: skip


PROFILE_EVENT_COLUMNS = (
    "organization_id", "profile_id", "occurred_at", "event_id", "kind", "visitor_id", "session_id", "country",
    "city", "device_type", "browser", "os", "referrer_domain", "utm_source", "amount_minor", "currency",
    "engagement_ms",
)  # fmt: skip


def profile_event_record(event: Event, org_id: uuid.UUID) -> tuple[Any, ...] | None:
    """The worker's `profile_events` row for this event (None if it has no profile effect)."""
    from app.vocabulary import PROFILE_EVENT_KIND

    kind = PROFILE_EVENT_KIND.get(event.type)
    if kind is None or event.profile_id is None:
        return None
    d, a = _device(event.visitor.user_agent), _attribution(event.url, event.referrer)
    return (
        org_id, event.profile_id, event.occurred_at, event.event_id, kind, _visitor_id(event), None, None, None,
        d.device_type, d.browser, d.os, a.referrer_domain, a.utm_source, event.amount_minor, event.currency,
        event.engagement_ms,
    )  # fmt: skip
