"""A generated multi-currency ledger for the platform and financial report tests: the events
to publish, and what each of them should be in the ledger, so the tests can recompute every
figure from scratch (nothing here imports the code under test)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from tests.support.graphql import gql

if TYPE_CHECKING:
    from tests.support.tenants import Tenant

STREAMS = ("booking", "gift", "subscription", "affiliate", "order")
KIND = {"booking": "BOOKING_COMPLETED", "gift": "GIFT_PURCHASED", "subscription": "SUBSCRIPTION_CHARGED",
        "affiliate": "AFFILIATE_COMMISSION", "order": "ORDER_PAID"}  # fmt: skip
GMV_STREAMS = {"booking", "gift", "subscription", "order"}
DAYS_BACK = 100
PUBLISH = """mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted duplicates rejected { index field reason } } }"""


@dataclass
class Entry:
    """One revenue entry of the ledger as the test expects it (a sale, or a refund: negative)."""

    event_id: str
    stream: str
    currency: str
    amount: int
    at: datetime
    sale: bool
    platform: int = 0
    service: int = 0
    processor: int = 0
    quantity: Any = None
    payout_id: str | None = None

    @property
    def fees(self) -> int:
        return self.platform + self.service + self.processor

    @property
    def tickets(self) -> int:
        return self.quantity if type(self.quantity) is int and self.quantity > 0 else 1


@dataclass
class Ledger:
    tenant: Tenant
    events: list[dict[str, Any]] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)
    views: list[tuple[str, datetime]] = field(default_factory=list)  # (profile id, when)


def generate(tenant: Tenant, rng: random.Random, now: datetime) -> Ledger:
    """~100 days of sales in USD/EUR/JPY with fees, ticket quantities and payout ids; refunds
    (often in a later month), pending sales and failed payments; and profile views."""
    ledger = Ledger(tenant)
    profiles = [tenant.profile_id, str(tenant.other_profile.id)]
    for n in range(140):
        stream, currency = rng.choice(STREAMS), rng.choice(("USD", "EUR", "JPY"))
        amount, at = rng.randrange(200, 90_000), now - timedelta(minutes=rng.randrange(10, DAYS_BACK * 24 * 60))
        fees = {"platformFeeMinor": amount // 10, "serviceFeeMinor": amount // 25, "processorFeeMinor": rng.randrange(0, 60)}
        fees = fees if rng.random() < 0.7 else {}
        props: dict[str, Any] = {"orderId": f"o-{n}", **fees}
        if stream == "order":
            quantity = rng.choice((None, 1, 2, 4, "two", 0))
            if quantity is not None:
                props["quantity"] = quantity
        pending = rng.random() < 0.05
        if pending:
            props["status"] = "pending"
        payout = rng.choice((None, None, "po-A", "po-B", "po-C")) if stream != "affiliate" else None
        if payout:
            props["payoutId"] = payout
        event = {"eventId": f"s-{n}", "type": KIND[stream], "amountMinor": amount, "currency": currency,
                 "occurredAt": at.isoformat(), "userId": f"buyer-{rng.randrange(9)}", "properties": props}  # fmt: skip
        if stream != "affiliate":
            event["profileId"] = rng.choice(profiles)
        ledger.events.append(event)
        if pending:
            continue
        sale = Entry(f"s-{n}", stream, currency, amount, at, True, fees.get("platformFeeMinor", 0),
                     fees.get("serviceFeeMinor", 0), fees.get("processorFeeMinor", 0), props.get("quantity"), payout)  # fmt: skip
        ledger.entries.append(sale)
        if rng.random() < 0.25:  # refunded later, often in another month
            back = min(now - timedelta(minutes=1), at + timedelta(hours=rng.randrange(1, 24 * 45)))
            part = rng.choice((amount, amount // 3))
            ledger.events.append({"eventId": f"s-{n}-r", "type": "ORDER_REFUNDED", "amountMinor": part, "currency": currency,
                                  "occurredAt": back.isoformat(), "properties": {"originalEventId": f"s-{n}"}})  # fmt: skip
            ledger.entries.append(Entry(f"s-{n}-r", stream, currency, -part, back, False))
        if rng.random() < 0.1:
            ledger.events.append({"eventId": f"s-{n}-f", "type": "PAYMENT_FAILED", "amountMinor": amount,
                                  "currency": currency, "occurredAt": at.isoformat(), "userId": "declined"})  # fmt: skip
    for n in range(40):
        profile, at = rng.choice(profiles), now - timedelta(minutes=rng.randrange(5, DAYS_BACK * 24 * 60))
        ledger.events.append({"eventId": f"v-{n}", "type": "PROFILE_VIEWED", "profileId": profile, "occurredAt": at.isoformat(),
                              "anonymousId": f"viewer-{n}"})  # fmt: skip
        ledger.views.append((profile, at))
    return ledger


async def publish(client: Any, tenant: Tenant, events: list[dict[str, Any]]) -> None:
    for i in range(0, len(events), 100):
        body = await gql(client, PUBLISH, {"e": events[i : i + 100]}, token=tenant.service_token)
        assert body.get("errors") is None, body
        assert body["data"]["publishDomainEvents"]["rejected"] == [], body


# -- independent arithmetic -------------------------------------------------------------------


def month_start(at: datetime) -> datetime:
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def previous_month(start: datetime) -> datetime:
    return month_start(start - timedelta(days=1))


def day_start(at: datetime) -> datetime:
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def totals(entries: list[Entry], value: Any) -> dict[str, int]:
    """Per currency, zero totals dropped (the API lists a currency when it has entries)."""
    out: dict[str, int] = {}
    for e in entries:
        out[e.currency] = out.get(e.currency, 0) + value(e)
    return {c: v for c, v in out.items() if v}


def as_map(money: list[dict[str, Any]]) -> dict[str, int]:
    return {m["currency"]: m["amountMinor"] for m in money if m["amountMinor"]}


def gmv(entries: list[Entry]) -> dict[str, int]:
    return totals([e for e in entries if e.stream in GMV_STREAMS], lambda e: e.amount)


def net_platform(entries: list[Entry]) -> dict[str, int]:
    return totals(entries, lambda e: e.platform + e.service - e.processor)


def period_figures(entries: list[Entry]) -> dict[str, Any]:
    """What PeriodKpis should say about these entries."""
    orders = [e for e in entries if e.sale and e.stream in ("order", "booking")]
    counts = {c: sum(1 for e in orders if e.currency == c) for c in {e.currency for e in orders}}
    values = totals(orders, lambda e: e.amount)
    return {
        "gmv": gmv(entries), "orders": len(orders),
        "tickets": sum(e.tickets for e in entries if e.sale and e.stream == "order"),
        "averageOrderValue": {c: round(Fraction(values[c], counts[c])) for c in values},
        "platformFees": totals(entries, lambda e: e.platform), "serviceFees": totals(entries, lambda e: e.service),
        "processorFees": totals(entries, lambda e: e.processor), "netPlatformRevenue": net_platform(entries),
    }  # fmt: skip


def api_period(period: dict[str, Any]) -> dict[str, Any]:
    return {
        "gmv": as_map(period["gmv"]), "orders": period["orders"], "tickets": period["tickets"],
        "averageOrderValue": as_map(period["averageOrderValue"]), "platformFees": as_map(period["platformFees"]),
        "serviceFees": as_map(period["serviceFees"]), "processorFees": as_map(period["processorFees"]),
        "netPlatformRevenue": as_map(period["netPlatformRevenue"]),
    }  # fmt: skip


def utc_date(at: datetime) -> date:
    return at.astimezone(UTC).date()
