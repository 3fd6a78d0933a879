"""The platform's second demo organization: a shop that traded for some months, left invoices
unpaid and was suspended, so the platform's lifecycle, growth and invoice figures have more
than one organization in them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from app.services.demo_data.money import SalesRates, sales_history
from app.services.demo_data.timeline import Timeline
from app.services.demo_data.traffic import generate_events

NAME = "Demo Closed Shop"
SLUG = "demo-closed"
TIMEZONE = "America/New_York"
PROFILES = ["Maple Street Studio", "Harbor Yoga"]
OPENED_MONTHS_AGO = 9
SUSPENDED_DAYS_AGO = 40
SUSPENSION_REASON = "Demo: unpaid invoices"
SEED = 11
RATES = SalesRates(bookings=0.5, gifts=0.3, affiliate=0.0, subscriber_joins_per_month=0.3, first_subscribers=2,
                   invoices_per_month=0, currency="USD")  # fmt: skip


def closed_shop_timeline(now: datetime) -> Timeline:
    """From the 1st of the month it opened to its suspension."""
    opened = Timeline.ending(now, months=OPENED_MONTHS_AGO, timezone=TIMEZONE).start
    return Timeline(opened, now.replace(microsecond=0) - timedelta(days=SUSPENDED_DAYS_AGO), TIMEZONE)


def closed_shop_visits(profile_ids: list[str], *, timeline: Timeline) -> Iterator[dict[str, Any]]:
    """Visits to its profiles until the suspension (tracked events)."""
    return generate_events(profile_ids=profile_ids, timeline=timeline, seed=SEED, visits_per_day=12,
                           host="https://closed.example", currency="USD", gov_views=False)  # fmt: skip


def closed_shop_sales(profile_ids: list[str], *, timeline: Timeline) -> Iterator[dict[str, Any]]:
    """Its sales and payouts until the suspension, and the two invoices it never paid (domain events)."""
    yield from sales_history(profile_ids, timeline=timeline, seed=SEED, prefix=f"demo-{SEED}-money", rates=RATES)
    for n, days_before in enumerate((75, 45)):
        issued = timeline.end - timedelta(days=days_before)
        due = (issued + timedelta(days=14)).date()
        yield {"type": "invoice.issued", "event_id": f"demo-{SEED}-unpaid-{n}", "occurred_at": issued,
               "amount_minor": 24900, "currency": "USD", "properties": {"invoiceId": f"CLOSED-{n + 1}", "dueDate": due.isoformat()}}  # fmt: skip
