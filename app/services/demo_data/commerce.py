"""Ticket sales for the providers' workshops: ordinary orders, refunds and failed payments (with
their reasons) over the history, and, in the last hours, one case for each default fraud rule."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from app.services.demo_data.listings import listing_for
from app.services.demo_data.operations import FAILURE_REASONS
from app.services.demo_data.timeline import Timeline, draw_count

TICKET_MINOR = 2500
ORDERS_PER_DAY = 1.8  # on an average day at the end of the history
REFUND_RATE = 0.04  # well under the refund-rate rule's 20%
FAILED_PER_DAY = 0.15
QUANTITIES = [(1, 55), (2, 30), (3, 10), (4, 5)]  # never near the bulk-purchase rule's 20 an hour
FRAUD_WINDOW = timedelta(hours=3)  # the fraud cases happen in the last three hours before seeding
BURST_ORDERS = 50  # the refund-rate rule's sample: the last 50 orders


def generate_commerce_events(*, timeline: Timeline, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Orders, their refunds a few days later, and declined cards, each by its own buyer; all
    before the fraud window, so the refund-rate rule's last orders there are the burst's own."""
    rng = random.Random(seed * 104_729 + 3)  # its own stream, as in money.py
    quiet = Timeline(timeline.start, timeline.end.replace(microsecond=0) - FRAUD_WINDOW, timeline.timezone)
    prefix = f"demo-{seed}-shop"
    n = 0
    for day in quiet.days():
        for _ in range(draw_count(rng, ORDERS_PER_DAY * day.activity)):
            n += 1
            yield from _order(rng, quiet, day.at(rng.triangular(6, 24, 19)), f"{prefix}-{n}", f"T-{n:05d}")
        for _ in range(draw_count(rng, FAILED_PER_DAY * day.activity)):
            n += 1
            at = day.at(rng.uniform(7, 23))
            if quiet.contains(at):
                yield {"type": "payment.failed", "event_id": f"{prefix}-{n}-f", "occurred_at": at,
                       "user_id": f"ticket-buyer-{rng.randrange(100_000)}", "amount_minor": TICKET_MINOR, "currency": "EUR",
                       "properties": {"reason": FAILURE_REASONS[n % len(FAILURE_REASONS)]}}  # fmt: skip


def _order(rng: random.Random, quiet: Timeline, at: datetime, event_id: str, order_id: str) -> Iterator[dict[str, Any]]:
    if not quiet.contains(at):
        return
    quantity = rng.choices([q for q, _ in QUANTITIES], [w for _, w in QUANTITIES])[0]
    amount = TICKET_MINOR * quantity
    buyer = f"ticket-buyer-{rng.randrange(100_000)}"
    fees = {"platformFeeMinor": amount * 8 // 100, "processorFeeMinor": amount * 2 // 100 + 25}
    listing = listing_for(at, quiet)
    yield {"type": "order.paid", "event_id": f"{event_id}-o", "occurred_at": at, "user_id": buyer, "amount_minor": amount,
           "currency": "EUR", "properties": {"orderId": order_id, "quantity": quantity, "listingId": listing,
                                             "buyerEmail": f"{buyer}@demo.example", **fees}}  # fmt: skip
    if rng.random() < REFUND_RATE:
        refunded = at + timedelta(days=rng.uniform(1, 5))
        if quiet.contains(refunded):
            yield {"type": "order.refunded", "event_id": f"{event_id}-r", "occurred_at": refunded, "user_id": buyer,
                   "amount_minor": amount, "currency": "EUR", "properties": {"orderId": order_id}}  # fmt: skip


def generate_fraud_events(*, now: datetime | None = None, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Commerce events of the last hours that cross each default fraud rule once (see
    app/services/fraud/rules.py DEFAULT_RULES), among orders that cross none."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    start = now - FRAUD_WINDOW
    prefix = f"demo-{seed}-fraud"

    def event(kind: str, n: int, minute: int, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"{prefix}-{kind}-{n}", "occurred_at": start + timedelta(minutes=minute), **fields}

    for n in range(BURST_ORDERS):  # a workshop's tickets go on sale: one order each, by different buyers
        yield event("order.paid", n, n, user_id=f"buyer-{n}", amount_minor=TICKET_MINOR, currency="EUR",
                    properties={"orderId": f"order-{n}", "quantity": 1})  # fmt: skip
    for n in range(12):  # 12 of the last 50 orders refunded: 24% > 20%
        yield event("order.refunded", n, 52 + n, user_id=f"buyer-{n}", amount_minor=TICKET_MINOR, currency="EUR",
                    properties={"orderId": f"order-{n}"})  # fmt: skip
    for n, quantity in enumerate((12, 14)):  # 26 tickets in 10 minutes > 20
        yield event("order.paid", 100 + n, 70 + 10 * n, user_id="reseller-42", amount_minor=TICKET_MINOR * quantity,
                    currency="EUR", properties={"orderId": f"bulk-{n}", "quantity": quantity})  # fmt: skip
    for n in range(5):  # 5 declined cards in 20 minutes > 3
        yield event("payment.failed", n, 90 + 5 * n, user_id="card-tester", amount_minor=4999, currency="EUR",
                    properties={"reason": "card_declined"})
    for n in range(5):  # 5 sign-ups from one address in 10 minutes > 3
        yield event("account.created", n, 120 + 2 * n, user_id=f"signup-{n}", context={"ip": "203.0.113.66"})
    for n, gate in enumerate(("gate-north", "gate-north", "gate-south")):  # one ticket, two devices
        yield event("ticket.scanned", n, 150 + n, properties={"ticketId": "TCK-1001", "deviceId": gate})
