"""Visits to the demo's profiles: views, inquiries, the bookings and gifts they lead to, and
page-leave engagement beacons."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.services.demo_data.timeline import Day, Timeline, draw_count

VISITS_PER_DAY = 80  # all profiles together, on an average day at the end of the history
RETURNING_SHARE = 0.3  # visits by someone who came in the last weeks
RECENT_VISITORS = 1500  # how many recent visitors a returning visit is drawn from
INQUIRY_RATE = 0.11
BOOKING_RATE = 0.35  # of inquiries
GIFT_RATE = 0.03
BEACON_RATE = 0.75  # page-leave beacons that arrive (mobile browsers often drop them)
FAVORITE_RATE = 0.05
UNFAVORITE_RATE = 0.2  # of favorites, a little later
SHARE_RATE = 0.02
CLICK_RATE = 0.08
CLICK_TARGETS = [("website", 5), ("phone", 3), ("booking_link", 2), ("instagram", 2)]

USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
]
UA_WEIGHTS = [30, 14, 26, 18, 4, 5, 3]
REFERRERS = [
    (None, 40), ("https://www.google.com/", 25), ("https://www.instagram.com/", 12),
    ("https://t.co/abc", 6), ("https://www.reddit.com/r/local/", 5), ("https://news.ycombinator.com/", 2),
    ("https://duckduckgo.com/", 4), ("https://www.facebook.com/", 6),
]  # fmt: skip
CAMPAIGNS = [
    ("", 70), ("?utm_source=newsletter&utm_medium=email&utm_campaign=spring", 12),
    ("?utm_source=instagram&utm_medium=social&utm_campaign=stories", 10),
    ("?utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=massage", 8),
]  # fmt: skip
BOOKING_AMOUNTS = [8000, 12000, 15000, 20000]
GIFT_AMOUNTS = [500, 1000, 2500]

# Addresses inside networks of the shipped curated list (app/data/gov_networks.json), so the
# demo raises gov alerts without any GeoIP database.
GOV_VISITS = [("6.14.2.9", 0.2), ("21.3.77.4", 3.5), ("6.201.9.13", 11.0)]  # (ip, days ago)


def _pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    return f"{rng.choice([81, 85, 92, 176, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


@dataclass(frozen=True, slots=True)
class Visitor:
    id: str
    ip: str
    user_agent: str


class Visitors:
    """New visitors, and some who come back within a few weeks (so unique visitors are fewer
    than views, as on a real site)."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._recent: list[Visitor] = []
        self._count = 0

    def next(self) -> Visitor:
        if self._recent and self._rng.random() < RETURNING_SHARE:
            return self._rng.choice(self._recent)
        visitor = Visitor(f"anon-{self._count}", _ip(self._rng), self._rng.choices(USER_AGENTS, UA_WEIGHTS)[0])
        self._count += 1
        self._recent.append(visitor)
        if len(self._recent) > 2 * RECENT_VISITORS:
            del self._recent[:RECENT_VISITORS]
        return visitor


def generate_events(
    *,
    profile_ids: list[str],
    timeline: Timeline | None = None,
    now: datetime | None = None,
    seed: int = 7,
    visits_per_day: float = VISITS_PER_DAY,
    host: str = "https://demo.example",
    currency: str = "EUR",
    gov_views: bool = True,
) -> Iterator[dict[str, Any]]:
    """Visits over the timeline (by default the history up to `now`), day by day in time
    order, Zipf-weighted across profiles and busier in the evening; then the gov views.

    A visit views a profile, may send an inquiry, occasionally books or sends a gift, and
    usually ends with a page-leave engagement beacon. `gov_views`: add the views from
    government networks that raise the demo's gov alerts.
    """
    timeline = timeline or Timeline.ending(now or datetime.now(UTC))
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(profile_ids))]
    visitors = Visitors(rng)
    number = 0
    for day in timeline.days():
        events: list[dict[str, Any]] = []
        for _ in range(draw_count(rng, visits_per_day * day.activity)):
            profile = rng.choices(profile_ids, weights)[0]
            events += _visit(rng, day, visitors.next(), profile, f"demo-{seed}-{number}", host, currency)
            number += 1
        events.sort(key=lambda e: e["occurred_at"])
        yield from (e for e in events if timeline.contains(e["occurred_at"]))
    if gov_views:
        yield from gov_network_views(profile_ids[0], now=timeline.end, seed=seed)


def _visit(
    rng: random.Random, day: Day, visitor: Visitor, profile: str, prefix: str, host: str, currency: str
) -> list[dict[str, Any]]:
    start = day.at(rng.triangular(0, 24, 19.5))
    context = {
        "ip": visitor.ip, "user_agent": visitor.user_agent, "referrer": _pick(rng, REFERRERS),
        "url": f"{host}/p/{profile[:8]}{_pick(rng, CAMPAIGNS)}",
    }  # fmt: skip
    base = {"profile_id": profile, "anonymous_id": visitor.id, "context": context}

    def later(low: int, high: int) -> datetime:
        return start + timedelta(seconds=rng.randrange(low, high))

    events = [{**base, "type": "profile.viewed", "event_id": f"{prefix}-v", "occurred_at": start}]
    if rng.random() < INQUIRY_RATE:
        events.append({**base, "type": "profile.inquiry", "event_id": f"{prefix}-i", "occurred_at": later(20, 400)})
        if rng.random() < BOOKING_RATE:
            events.append({**base, "type": "booking.completed", "event_id": f"{prefix}-b", "occurred_at": later(400, 900),
                           "amount_minor": rng.choice(BOOKING_AMOUNTS), "currency": currency})  # fmt: skip
    if rng.random() < GIFT_RATE:
        events.append({**base, "type": "gift.purchased", "event_id": f"{prefix}-g", "occurred_at": later(30, 300),
                       "amount_minor": rng.choice(GIFT_AMOUNTS), "currency": currency})  # fmt: skip
    if rng.random() < BEACON_RATE:
        events.append({**base, "type": "profile.engaged", "event_id": f"{prefix}-e", "occurred_at": later(30, 240),
                       "engagement_ms": int(rng.lognormvariate(10.5, 0.8))})  # fmt: skip
    if rng.random() < FAVORITE_RATE:
        events.append({**base, "type": "profile.favorited", "event_id": f"{prefix}-f", "occurred_at": later(10, 200)})
        if rng.random() < UNFAVORITE_RATE:
            events.append({**base, "type": "profile.unfavorited", "event_id": f"{prefix}-u", "occurred_at": later(200, 600)})
    if rng.random() < SHARE_RATE:
        events.append({**base, "type": "profile.shared", "event_id": f"{prefix}-s", "occurred_at": later(10, 300)})
    if rng.random() < CLICK_RATE:
        events.append({**base, "type": "profile.clicked", "event_id": f"{prefix}-c", "occurred_at": later(10, 300),
                       "properties": {"target": _pick(rng, CLICK_TARGETS)}})  # fmt: skip
    return events


def gov_network_views(profile_id: str, *, now: datetime, seed: int) -> Iterator[dict[str, Any]]:
    """A few views of the first profile from government networks: the demo's gov alerts."""
    for n, (ip, days_ago) in enumerate(GOV_VISITS):
        context = {"ip": ip, "user_agent": USER_AGENTS[0], "url": f"https://demo.example/p/{profile_id[:8]}"}
        yield {
            "type": "profile.viewed", "event_id": f"demo-{seed}-gov-{n}", "profile_id": profile_id,
            "anonymous_id": f"anon-gov-{n}", "occurred_at": now - timedelta(days=days_ago), "context": context,
        }  # fmt: skip
