"""The marketplace's own product events, so every insight shows something real: people arrive
anonymously, look around (page views, searches, listing views), some sign up (identifying
themselves, which links their anonymous history), some request bookings, and many come back
over the following weeks, fewer as time goes on."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.services.demo_data.timeline import Day, Timeline, draw_count

NEW_PEOPLE_PER_DAY = 18  # on an average day at the end of the history
PRODUCT_DAYS = 120  # product analytics covers the last four months of the history
SIGNUP_RATE = 0.45
BOOKING_RATE = 0.3  # of visits by signed-up people that viewed a listing
RETURN_DECAY = 0.8  # the chance of one more visit falls by this much after each
CATEGORIES = ["massage", "yoga", "hair", "nails", "fitness", "tattoo"]
QUERIES = {
    "massage": ["deep tissue", "thai massage", "massage near me"], "yoga": ["vinyasa", "yoga beginners"],
    "hair": ["haircut", "balayage", "barber"], "nails": ["gel nails", "manicure"],
    "fitness": ["personal trainer", "pilates"], "tattoo": ["fine line tattoo", "tattoo cover up"],
}  # fmt: skip
PLANS = [("free", 70), ("plus", 25), ("pro", 5)]
CAMPAIGNS = [
    ("", 65), ("?utm_source=newsletter&utm_medium=email&utm_campaign=spring", 12),
    ("?utm_source=instagram&utm_medium=social&utm_campaign=stories", 13),
    ("?utm_source=google&utm_medium=cpc&utm_campaign=brand", 10),
]  # fmt: skip
USER_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
]  # fmt: skip


@dataclass(slots=True)
class Person:
    number: int
    anonymous_id: str
    user_agent: str
    campaign: str
    plan: str
    user_id: str | None = None

    def ids(self) -> dict[str, Any]:
        ids: dict[str, Any] = {"anonymous_id": self.anonymous_id}
        if self.user_id is not None:
            ids["user_id"] = self.user_id
        return ids


def _pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def generate_product_events(*, timeline: Timeline, seed: int = 11, host: str = "https://demo.example") -> Iterator[dict[str, Any]]:
    """Visits of new and returning people over the last PRODUCT_DAYS days of the timeline,
    day by day in time order."""
    rng = random.Random(seed)
    days = timeline.days()[-PRODUCT_DAYS:]
    planned: dict[int, list[tuple[Person, float]]] = {}
    people = 0
    for index, day in enumerate(days):
        for _ in range(draw_count(rng, NEW_PEOPLE_PER_DAY * day.activity)):
            person = Person(people, f"demo-visitor-{seed}-{people}", rng.choice(USER_AGENTS),
                            _pick(rng, CAMPAIGNS), _pick(rng, PLANS))  # fmt: skip
            people += 1
            planned.setdefault(index, []).append((person, rng.triangular(7, 24, 20)))
            chance, later = 0.55, index
            while rng.random() < chance:
                later += max(1, int(rng.expovariate(1 / 6)))
                planned.setdefault(later, []).append((person, rng.triangular(7, 24, 20)))
                chance *= RETURN_DECAY
        events: list[dict[str, Any]] = []
        for visit, (person, hour) in enumerate(planned.pop(index, [])):
            events += _visit(rng, day, hour, person, f"demo-product-{seed}-{day.date.isoformat()}-{visit}", host)
        events.sort(key=lambda e: e["occurred_at"])
        yield from (e for e in events if timeline.contains(e["occurred_at"]))


def _visit(rng: random.Random, day: Day, hour: float, person: Person, prefix: str, host: str) -> list[dict[str, Any]]:
    start: datetime = day.at(hour)
    moment = start
    events: list[dict[str, Any]] = []
    context = {"user_agent": person.user_agent}

    def add(kind: str, path: str, properties: dict[str, Any] | None = None, **extra: Any) -> None:
        nonlocal moment
        moment += timedelta(seconds=rng.randint(8, 180))
        campaign = person.campaign if not events else ""
        events.append({
            "type": kind, "event_id": f"{prefix}-{len(events)}", "occurred_at": moment, **person.ids(),
            "context": {**context, "url": f"{host}{path}{campaign}"}, "properties": properties or {}, **extra,
        })  # fmt: skip

    category = rng.choice(CATEGORIES)
    add("page.viewed", "/")
    if rng.random() < 0.8:
        query = rng.choice(QUERIES[category])
        results = 0 if rng.random() < 0.08 else rng.randint(1, 40)
        add("search", "/search", {"query": query, "category": category, "resultsCount": results})
        for _ in range(rng.choice([0, 1, 1, 2, 3]) if results else 0):
            add("listing.viewed", f"/listing/{rng.randint(1, 60)}", {"category": category})
    if person.user_id is None and rng.random() < SIGNUP_RATE:
        person.user_id = f"demo-user-{person.number}"
        add("signup", "/signup", {"$set": {"plan": person.plan, "email": f"user{person.number}@demo.example"},
                                  "$set_once": {"first_category": category}})  # fmt: skip
        add("user.identified", "/signup")
    viewed = any(e["type"] == "listing.viewed" for e in events)
    if person.user_id is not None and viewed and rng.random() < BOOKING_RATE:
        add("booking.requested", "/checkout", {"category": category, "price": rng.choice([4000, 6500, 9000, 12000])})
    return events
