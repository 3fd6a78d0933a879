"""The demo organization's ticketed events: a workshop on the 10th and the 24th of every month
(18:00 to 21:00 local), one live right now, and the ones still to come this month and next;
and visitors arriving from its UTM campaigns who buy tickets in the same session."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

from app.services.demo_data.timeline import Timeline, draw_count

WORKSHOP_DAYS = (10, 24)
WORKSHOP_HOURS = (18.0, 21.0)
ANNOUNCED_DAYS_BEFORE = 40
TICKET_MINOR = 2500
CAMPAIGN_VISITS_PER_DAY = 6
CAMPAIGN_CONVERSION_RATE = 0.3
CAMPAIGNS = [
    (("newsletter", "email", "spring"), 40), (("instagram", "social", "stories"), 35), (("google", "cpc", "brand"), 25),
]  # fmt: skip
LIVE_ID = "workshop-live"


def workshop_dates(timeline: Timeline) -> list[date]:
    """Every workshop day from the timeline's first month to the month after its last."""
    months = timeline.month_starts()
    after = (months[-1] + timedelta(days=32)).replace(day=1)
    return [month.replace(day=d) for month in [*months, after] for d in WORKSHOP_DAYS]


def listing_for(at: datetime, timeline: Timeline) -> str:
    """The workshop an order placed at `at` buys tickets for: the next one to start."""
    for day in workshop_dates(timeline):
        if timeline.local(day, WORKSHOP_HOURS[0]) > at:
            return f"workshop-{day.isoformat()}"
    return LIVE_ID


def generate_listing_events(*, timeline: Timeline, seed: int = 7) -> Iterator[dict[str, Any]]:
    """listing.published (40 days ahead, or at the start of the history), then started and
    ended for the workshops that did; one workshop started an hour ago and runs on."""
    prefix = f"demo-{seed}-listing"
    latest = timeline.end - timedelta(seconds=1)
    schedule = [(f"workshop-{d.isoformat()}", f"Pottery workshop, {d:%d %B %Y}", timeline.local(d, WORKSHOP_HOURS[0]),
                 timeline.local(d, WORKSHOP_HOURS[1])) for d in workshop_dates(timeline)]  # fmt: skip
    schedule.append((LIVE_ID, "Open studio night", timeline.end - timedelta(hours=1), timeline.end + timedelta(hours=2)))
    for listing_id, title, starts, ends in schedule:
        announced = starts - timedelta(days=ANNOUNCED_DAYS_BEFORE)
        if announced > latest:
            continue  # not announced yet
        published = max(timeline.start, announced)
        properties = {"listingId": listing_id, "title": title, "startsAt": starts.isoformat(), "endsAt": ends.isoformat()}
        yield {"type": "listing.published", "event_id": f"{prefix}-{listing_id}-p", "occurred_at": published, "properties": properties}
        if starts <= latest:
            yield {"type": "listing.started", "event_id": f"{prefix}-{listing_id}-s", "occurred_at": starts,
                   "properties": {"listingId": listing_id}}  # fmt: skip
        if ends <= latest:
            yield {"type": "listing.ended", "event_id": f"{prefix}-{listing_id}-e", "occurred_at": ends,
                   "properties": {"listingId": listing_id}}  # fmt: skip


def generate_campaign_visits(*, timeline: Timeline, quiet_end: datetime, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Visits from the campaigns (a landing page view carrying the UTM), a share of which buy
    tickets for the next workshop in the same session; before `quiet_end` (the fraud window)."""
    rng = random.Random(seed * 7_919 + 11)  # its own stream, as in money.py
    prefix = f"demo-{seed}-campaign"
    n = 0
    for day in timeline.days():
        for _ in range(draw_count(rng, CAMPAIGN_VISITS_PER_DAY * day.activity)):
            n += 1
            at = day.at(rng.uniform(8, 22))
            if not timeline.start <= at < quiet_end - timedelta(minutes=30):
                continue
            (source, medium, campaign) = rng.choices([c for c, _ in CAMPAIGNS], [w for _, w in CAMPAIGNS])[0]
            visitor, session = f"campaign-visitor-{rng.randrange(50_000)}", f"{prefix}-session-{n}"
            url = f"https://studio.example/workshops?utm_source={source}&utm_medium={medium}&utm_campaign={campaign}"
            yield {"type": "$pageview", "event_id": f"{prefix}-{n}-v", "occurred_at": at, "anonymous_id": visitor,
                   "session_id": session, "context": {"url": url}}  # fmt: skip
            if rng.random() < CAMPAIGN_CONVERSION_RATE:
                quantity = rng.choice((1, 1, 2, 3))
                paid = at + timedelta(minutes=rng.uniform(2, 20))
                yield {"type": "order.paid", "event_id": f"{prefix}-{n}-o", "occurred_at": paid, "anonymous_id": visitor,
                       "session_id": session, "amount_minor": TICKET_MINOR * quantity, "currency": "EUR",
                       "properties": {"orderId": f"C-{n:05d}", "quantity": quantity,
                                      "listingId": listing_for(paid, timeline)}}  # fmt: skip
