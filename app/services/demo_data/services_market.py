"""The platform's third demo organization: a services marketplace whose backends report every
service execution, whose site reports searches, service views and purchases, and whose
customers subscribe to creators' plans, so that serviceMetrics, marketplaceMetrics,
revenueMetrics and GET /stream have something real to show.

Pure generators of domain events over the last MONTHS local months (the same seed and
timeline give the same events; none is at or after the timeline's end).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.services.demo_data.timeline import Day, Timeline, draw_count

NAME = "Demo Services Marketplace"
SLUG = "demo-services"
TIMEZONE = "Europe/Lisbon"
CREATORS = ["Iris Studio", "Jonas Words"]
BRANDS = ["Kiln & Co", "Glaze Supply"]  # brand profiles: counted by platformKpis, no events of their own
MONTHS = 6
SEED = 23
EXECUTIONS_PER_DAY = 120  # on an average day at the end of the history
SHOPPERS_PER_DAY = 30
SUBSCRIBERS = 40


@dataclass(frozen=True, slots=True)
class Service:
    service_id: str
    category: str
    latency_ms: float  # median latency
    error_rate: float
    price_minor: int
    creator: str


SERVICES = [
    Service("logo-design", "design", 850.0, 0.02, 12_000, "creator-iris"),
    Service("banner-resize", "design", 45.0, 0.01, 900, "creator-iris"),
    Service("copy-edit", "writing", 420.0, 0.03, 4_500, "creator-jonas"),
    Service("blog-post", "writing", 1_900.0, 0.05, 9_000, "creator-jonas"),
    Service("translate-de", "translation", 160.0, 0.02, 2_500, "creator-jonas"),
    Service("voiceover", "audio", 3_200.0, 0.08, 15_000, "creator-iris"),
]
ERROR_CODES = [("TIMEOUT", 5), ("UPSTREAM_502", 3), ("QUOTA_EXCEEDED", 2)]
QUERIES = {
    "design": ["logo", "logo design", "banner"], "writing": ["copy editing", "blog writer"],
    "translation": ["german translation"], "audio": ["voice over", "podcast voiceover"],
}  # fmt: skip
NO_RESULT_QUERIES = ["tax advice", "3d printing"]
PLANS = [(900, "month"), (1_900, "month"), (19_000, "year")]


def services_timeline(now: datetime) -> Timeline:
    return Timeline.ending(now, months=MONTHS, timezone=TIMEZONE)


def generate_service_events(*, timeline: Timeline, creator_profiles: list[str], seed: int = SEED) -> Iterator[dict[str, Any]]:
    """Executions, searches, views and purchases day by day, then the subscription charges
    (each to one of `creator_profiles`, the creators' profile ids)."""
    rng = random.Random(seed)
    for day in timeline.days():
        yield from _executions(rng, day, timeline)
        yield from _shoppers(rng, day, timeline)
    yield from _subscriptions(random.Random(seed + 1), timeline, creator_profiles)


def _executions(rng: random.Random, day: Day, timeline: Timeline) -> Iterator[dict[str, Any]]:
    for n in range(draw_count(rng, EXECUTIONS_PER_DAY * day.activity)):
        at = day.at(rng.uniform(0, 24))
        if not timeline.contains(at):
            continue
        service = rng.choice(SERVICES)
        success = rng.random() > service.error_rate
        props: dict[str, Any] = {
            "serviceId": service.service_id, "executionId": f"exec-{day.date.isoformat()}-{n}",
            "latencyMs": round(service.latency_ms * rng.lognormvariate(0, 0.5), 1), "success": success,
            "category": service.category,
        }  # fmt: skip
        if not success:
            props["errorCode"] = rng.choices([c for c, _ in ERROR_CODES], [w for _, w in ERROR_CODES])[0]
        yield {"type": "service.executed", "event_id": f"demo-svc-x-{day.date.isoformat()}-{n}", "occurred_at": at, "properties": props}


def _shoppers(rng: random.Random, day: Day, timeline: Timeline) -> Iterator[dict[str, Any]]:
    """A shopper searches, views what the search found, and sometimes buys it."""
    for n in range(draw_count(rng, SHOPPERS_PER_DAY * day.activity)):
        at = day.at(rng.uniform(0, 23))
        who = f"shopper-{rng.randrange(2_000)}"
        tag = f"demo-svc-{day.date.isoformat()}-{n}"
        if rng.random() < 0.08:
            query = rng.choice(NO_RESULT_QUERIES)
            yield _event("marketplace.searched", f"{tag}-s", at, who, {"query": query, "resultsCount": 0}, timeline)
            continue
        service = rng.choice(SERVICES)
        query = rng.choice(QUERIES[service.category])
        yield _event("marketplace.searched", f"{tag}-s", at, who,
                     {"query": query, "resultsCount": rng.randint(2, 30), "category": service.category}, timeline)  # fmt: skip
        if rng.random() < 0.7:
            at += timedelta(minutes=rng.uniform(1, 10))
            yield _event("marketplace.viewed", f"{tag}-v", at, who, {"serviceId": service.service_id, "category": service.category}, timeline)
            if rng.random() < 0.25:
                at += timedelta(minutes=rng.uniform(2, 30))
                props = {"serviceId": service.service_id, "category": service.category, "orderId": f"{tag}-order",
                         "creatorId": service.creator, "takeRateBps": 1_500}  # fmt: skip
                yield _event("marketplace.converted", f"{tag}-c", at, who, props, timeline,
                             amount_minor=service.price_minor, currency="EUR")  # fmt: skip


def _event(
    kind: str, event_id: str, at: datetime, who: str, props: dict[str, Any], timeline: Timeline, **money: Any
) -> dict[str, Any]:
    """A shopper's event, never at or after the end of the history."""
    return {"type": kind, "event_id": event_id, "occurred_at": min(at, timeline.end - timedelta(seconds=1)), "user_id": who,
            "properties": props, **money}  # fmt: skip


def _subscriptions(rng: random.Random, timeline: Timeline, creator_profiles: list[str]) -> Iterator[dict[str, Any]]:
    """SUBSCRIBERS customers join over the history and are charged each period; some change
    plan, some cancel, some of those come back (MRR's new, expansion, contraction, churn and
    reactivation)."""
    months = timeline.month_starts()
    for number in range(SUBSCRIBERS):
        who = f"subscriber-{number}"
        month = rng.randrange(len(months))
        day = rng.randint(1, 27)
        amount, interval = rng.choice(PLANS)
        active, charge = True, 0
        while month < len(months):
            at = timeline.local(months[month].replace(day=day), rng.uniform(8, 20))
            if at >= timeline.end:
                break
            if active:
                yield {"type": "subscription.charged", "event_id": f"demo-svc-sub-{number}-{charge}", "occurred_at": at,
                       "user_id": who, "amount_minor": amount, "currency": "EUR",
                       "profile_id": creator_profiles[number % len(creator_profiles)],
                       "properties": {"interval": interval, "takeRateBps": 2_000}}  # fmt: skip
                charge += 1
            month += 12 if interval == "year" and active else 1
            roll = rng.random()
            if active and roll < 0.08:
                active = False
            elif active and roll < 0.18 and interval == "month":
                amount = 1_900 if amount == 900 else 900
            elif not active and roll < 0.35:
                active = True
