"""The demo's money besides what visits bring: bookings with fees (some duo bookings) paid out
monthly, gifts by category, subscriptions, affiliate commissions and invoices over the whole
history; and a few recent cases for the reports to show (a refund, a failed payment, an
unmatched payout, a payout that pays too little, an overdue invoice)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from app.services.demo_data.timeline import DAYS_PER_MONTH, Timeline, draw_count

GIFT_CATEGORIES = ["flowers", "coffee", "music"]
FEE_BOOKING_AMOUNTS = [9000, 12000, 15000]
SUBSCRIPTION_MINOR = 999
AFFILIATE_MINOR = 350
INVOICE_AMOUNTS = [4900, 6900, 9900]
PAYOUT_DAY = 3  # a month's bookings are paid out on the 3rd of the next month


@dataclass(frozen=True, slots=True)
class SalesRates:
    """Expected counts on an average day at the end of the history."""

    bookings: float = 1.6
    gifts: float = 1.4
    affiliate: float = 0.3
    subscriber_joins_per_month: float = 2.0
    subscriber_churn_per_month: float = 0.06
    first_subscribers: int = 12
    invoices_per_month: int = 1
    currency: str = "EUR"


def generate_money_events(
    profile_ids: list[str], *, timeline: Timeline | None = None, now: datetime | None = None, seed: int = 7
) -> Iterator[dict[str, Any]]:
    """The whole history's sales, payouts and invoices, then the recent showcase cases."""
    timeline = timeline or Timeline.ending(now or datetime.now(UTC))
    prefix = f"demo-{seed}-money"
    gifts: list[dict[str, Any]] = []
    for event in sales_history(profile_ids, timeline=timeline, seed=seed, prefix=prefix):
        if event["type"] == "gift.purchased":
            gifts.append(event)
        yield event
    yield from _showcase(profile_ids, timeline, prefix, gifts)


def sales_history(
    profile_ids: list[str], *, timeline: Timeline, seed: int, prefix: str, rates: SalesRates = SalesRates()
) -> Iterator[dict[str, Any]]:
    """Bookings with fees, gifts, subscriptions, affiliate commissions, monthly payouts and invoices."""
    rng = random.Random(seed * 7919 + 1)  # its own stream: changing another generator leaves these events alone
    yield from _bookings_and_payouts(rng, profile_ids, timeline, prefix, rates)
    yield from _gifts(rng, profile_ids, timeline, prefix, rates)
    yield from _subscriptions(rng, profile_ids, timeline, prefix, rates)
    yield from _affiliate(rng, profile_ids, timeline, prefix, rates)
    yield from _invoices(rng, timeline, prefix, rates)


def _fan(rng: random.Random) -> str:
    return f"fan-{rng.randrange(60)}"


@dataclass(slots=True)
class _Payout:
    settles_at: datetime
    net: int = 0
    entries: int = 0


def _payout_time(timeline: Timeline, month: date) -> datetime:
    next_month = (month + timedelta(days=32)).replace(day=PAYOUT_DAY)
    return timeline.local(next_month, 10)


def _bookings_and_payouts(
    rng: random.Random, profile_ids: list[str], timeline: Timeline, prefix: str, rates: SalesRates
) -> Iterator[dict[str, Any]]:
    """Bookings carrying platform and processor fees, every third a duo booking (60% to the
    booked profile). A month's bookings name its payout (po-YYYY-MM) once that payout has
    settled, and the payout pays exactly their amounts net of fees."""
    payouts: dict[str, _Payout] = {}
    n = 0
    for day in timeline.days():
        month = day.date.replace(day=1)
        payout_id = f"po-{month:%Y-%m}"
        payout = payouts.setdefault(payout_id, _Payout(_payout_time(timeline, month)))
        for _ in range(draw_count(rng, rates.bookings * day.activity)):
            at = day.at(rng.uniform(8, 21))
            amount = rng.choice(FEE_BOOKING_AMOUNTS)
            fees = {"platformFeeMinor": amount // 10, "processorFeeMinor": amount * 2 // 100 + 50}
            profile, partner = rng.sample(profile_ids, 2)
            properties: dict[str, Any] = dict(fees)
            if n % 3 == 0:
                properties |= {"partnerProfileId": partner, "splitPercent": 60}
            if timeline.contains(payout.settles_at):
                properties["payoutId"] = payout_id
                payout.net += amount - sum(fees.values())
                payout.entries += 1
            n += 1
            if timeline.contains(at):
                yield {"type": "booking.completed", "event_id": f"{prefix}-b-{n}", "profile_id": profile,
                       "user_id": _fan(rng), "occurred_at": at, "amount_minor": amount, "currency": rates.currency,
                       "properties": properties}  # fmt: skip
    for payout_id, payout in payouts.items():
        if payout.entries and timeline.contains(payout.settles_at):
            yield {"type": "payout.settled", "event_id": f"{prefix}-{payout_id}", "occurred_at": payout.settles_at,
                   "amount_minor": payout.net, "currency": rates.currency, "properties": {"payoutId": payout_id}}  # fmt: skip


def _gifts(rng: random.Random, profile_ids: list[str], timeline: Timeline, prefix: str, rates: SalesRates) -> Iterator[dict[str, Any]]:
    n = 0
    for day in timeline.days():
        for _ in range(draw_count(rng, rates.gifts * day.activity)):
            at = day.at(rng.triangular(0, 24, 20))
            n += 1
            if timeline.contains(at):
                yield {"type": "gift.purchased", "event_id": f"{prefix}-g-{n}", "profile_id": rng.choice(profile_ids),
                       "user_id": _fan(rng), "occurred_at": at, "amount_minor": rng.choice([500, 1000, 2500]),
                       "currency": rates.currency, "properties": {"category": rng.choice(GIFT_CATEGORIES), "orderId": f"{prefix}-gift-{n}"}}  # fmt: skip


@dataclass(slots=True)
class _Subscriber:
    fan: str
    profile: str
    day_of_month: int
    charges: int = 0
    cancelled: bool = False


def _subscriptions(
    rng: random.Random, profile_ids: list[str], timeline: Timeline, prefix: str, rates: SalesRates
) -> Iterator[dict[str, Any]]:
    """Monthly charges on each subscriber's day of the month; a few join each month, a few cancel."""
    subscribers = [_Subscriber(f"subscriber-{i}", rng.choice(profile_ids), rng.randrange(1, 29)) for i in range(rates.first_subscribers)]
    for day in timeline.days():
        for _ in range(draw_count(rng, rates.subscriber_joins_per_month / DAYS_PER_MONTH * day.activity)):
            subscribers.append(_Subscriber(f"subscriber-{len(subscribers)}", rng.choice(profile_ids), min(day.date.day, 28)))
        for sub in subscribers:
            if sub.cancelled or sub.day_of_month != day.date.day:
                continue
            at = day.at(rng.uniform(5, 7))
            sub.charges += 1
            if timeline.contains(at):
                yield {"type": "subscription.charged", "event_id": f"{prefix}-s-{sub.fan}-{sub.charges}", "profile_id": sub.profile,
                       "user_id": sub.fan, "occurred_at": at, "amount_minor": SUBSCRIPTION_MINOR, "currency": rates.currency}  # fmt: skip
            sub.cancelled = rng.random() < rates.subscriber_churn_per_month


def _affiliate(rng: random.Random, profile_ids: list[str], timeline: Timeline, prefix: str, rates: SalesRates) -> Iterator[dict[str, Any]]:
    n = 0
    for day in timeline.days():
        for _ in range(draw_count(rng, rates.affiliate * day.activity)):
            at = day.at(rng.uniform(9, 18))
            n += 1
            if timeline.contains(at):
                yield {"type": "affiliate.commission", "event_id": f"{prefix}-a-{n}", "profile_id": rng.choice(profile_ids),
                       "user_id": _fan(rng), "occurred_at": at, "amount_minor": AFFILIATE_MINOR, "currency": rates.currency}  # fmt: skip


def _invoices(rng: random.Random, timeline: Timeline, prefix: str, rates: SalesRates) -> Iterator[dict[str, Any]]:
    """Issued on the 1st, due two weeks later, paid within 12 days: none of them overdue."""
    for month in timeline.month_starts():
        for n in range(rates.invoices_per_month):
            issued = timeline.local(month, 9 + n)
            if not timeline.contains(issued):
                continue
            invoice, event_id = f"INV-{month:%Y%m}-{n + 1}", f"{prefix}-inv-{month:%Y-%m}-{n + 1}"
            amount = rng.choice(INVOICE_AMOUNTS)
            due = month + timedelta(days=14)
            yield {"type": "invoice.issued", "event_id": f"{event_id}-issued", "occurred_at": issued, "amount_minor": amount,
                   "currency": rates.currency, "properties": {"invoiceId": invoice, "dueDate": due.isoformat()}}  # fmt: skip
            paid = issued + timedelta(days=rng.randrange(3, 13), hours=rng.randrange(0, 8))
            if timeline.contains(paid):
                yield {"type": "invoice.paid", "event_id": f"{event_id}-paid", "occurred_at": paid, "amount_minor": amount,
                       "currency": rates.currency, "properties": {"invoiceId": invoice}}  # fmt: skip


def _showcase(profile_ids: list[str], timeline: Timeline, prefix: str, gifts: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Recent cases the reports should show: a refunded gift, a declined card, a payout no
    entry names (po-demo-1), a payout 10.00 EUR short of the two bookings it settles
    (po-demo-2), and invoices overdue (DEMO-1), due later (DEMO-2) and paid (DEMO-3)."""
    now = timeline.end.replace(microsecond=0)
    refunded = next((g for g in reversed(gifts) if g["occurred_at"] < now - timedelta(days=1)), None)
    if refunded is not None:
        yield {"type": "order.refunded", "event_id": f"{prefix}-r-0", "occurred_at": now - timedelta(minutes=5),
               "amount_minor": refunded["amount_minor"], "currency": "EUR", "properties": {"originalEventId": refunded["event_id"]}}  # fmt: skip
    yield {"type": "payment.failed", "event_id": f"{prefix}-f-0", "occurred_at": now - timedelta(minutes=9),
           "amount_minor": 12000, "currency": "EUR", "user_id": "fan-declined", "properties": {"reason": "insufficient_funds"}}  # fmt: skip
    yield {"type": "payout.settled", "event_id": f"{prefix}-p-0", "occurred_at": now - timedelta(days=1),
           "amount_minor": 50000, "currency": "EUR", "properties": {"payoutId": "po-demo-1"}}  # fmt: skip
    for n in range(2):
        yield {"type": "booking.completed", "event_id": f"{prefix}-pb-{n}", "profile_id": profile_ids[n],
               "occurred_at": now - timedelta(days=3, hours=n), "amount_minor": 20000, "currency": "EUR",
               "properties": {"payoutId": "po-demo-2", "platformFeeMinor": 2000, "serviceFeeMinor": 500, "processorFeeMinor": 300}}  # fmt: skip
    yield {"type": "payout.settled", "event_id": f"{prefix}-p-1", "occurred_at": now - timedelta(hours=6),
           "amount_minor": 33400, "currency": "EUR", "properties": {"payoutId": "po-demo-2"}}  # fmt: skip
    today = now.date()
    for n, (due, paid) in enumerate(((today - timedelta(days=5), False), (today + timedelta(days=14), False),
                                     (today - timedelta(days=20), True))):  # fmt: skip
        yield {"type": "invoice.issued", "event_id": f"{prefix}-i-{n}", "occurred_at": now - timedelta(days=25),
               "amount_minor": 4900 + 1000 * n, "currency": "EUR",
               "properties": {"invoiceId": f"DEMO-{n + 1}", "dueDate": due.isoformat()}}  # fmt: skip
        if paid:
            yield {"type": "invoice.paid", "event_id": f"{prefix}-ip-{n}", "occurred_at": now - timedelta(days=18),
                   "amount_minor": 4900 + 1000 * n, "currency": "EUR", "properties": {"invoiceId": f"DEMO-{n + 1}"}}  # fmt: skip
