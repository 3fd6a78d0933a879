"""The demo dataset: a marketplace with providers and 30 days of realistic traffic.

It goes through the real ingestion service (enrichment, sessions, outbox), so the demo
shows exactly what production data looks like. The same seed gives the same events.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.auth import Role, Viewer
from app.settings import Settings

log = logging.getLogger("pulsegraph.demo")

DEMO_SLUG = "demo"
DEMO_PROVIDERS = [
    "Alina Morgan", "Bruno Castell", "Chen Wei", "Dana Okafor", "Elif Yilmaz",
    "Farah Haddad", "Gus Lindqvist", "Hana Sato",
]
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
]
CAMPAIGNS = [
    ("", 70), ("?utm_source=newsletter&utm_medium=email&utm_campaign=spring", 12),
    ("?utm_source=instagram&utm_medium=social&utm_campaign=stories", 10),
    ("?utm_source=google&utm_medium=cpc&utm_campaign=brand&utm_term=massage", 8),
]


def _pick(rng: random.Random, weighted: list[tuple[Any, int]]) -> Any:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"2001:db8:{rng.randrange(65536):x}::{rng.randrange(65536):x}"
    return f"{rng.choice([81, 85, 92, 176, 203])}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


@dataclass(frozen=True)
class Visit:
    visitor: str
    ip: str
    user_agent: str


def generate_events(
    *, profile_ids: list[str], days: int = 30, visits: int = 6000, seed: int = 7, now: datetime | None = None, host: str = "https://demo.example"
) -> Iterator[dict[str, Any]]:
    """Visits spread over `days`, Zipf-weighted across profiles, busier in the evening.

    A visit views a profile (sometimes two), may send an inquiry, occasionally books or
    sends a gift, and ends with a page-leave engagement beacon.
    """
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(profile_ids))]
    visitors = [Visit(f"anon-{i}", _ip(rng), rng.choices(USER_AGENTS, UA_WEIGHTS)[0]) for i in range(visits // 3)]
    for n in range(visits):
        visit = rng.choice(visitors)
        day_offset = rng.random() ** 1.3 * days
        hour_bias = timedelta(hours=rng.triangular(0, 24, 20) - 12)
        start = now - timedelta(days=day_offset) + hour_bias
        start = min(start, now - timedelta(seconds=rng.randrange(5, 600)))
        profile = rng.choices(profile_ids, weights)[0]
        referrer = _pick(rng, REFERRERS)
        context = {
            "ip": visit.ip, "user_agent": visit.user_agent, "referrer": referrer,
            "url": f"{host}/p/{profile[:8]}{_pick(rng, CAMPAIGNS)}",
        }
        base = {"profile_id": profile, "anonymous_id": visit.visitor, "context": context}
        yield {**base, "type": "profile.viewed", "event_id": f"demo-{seed}-{n}-v", "occurred_at": start}
        if rng.random() < 0.11:
            yield {**base, "type": "profile.inquiry", "event_id": f"demo-{seed}-{n}-i", "occurred_at": start + timedelta(seconds=rng.randrange(20, 400))}
            if rng.random() < 0.35:
                yield {**base, "type": "booking.completed", "event_id": f"demo-{seed}-{n}-b", "occurred_at": start + timedelta(seconds=rng.randrange(400, 900)),
                       "amount_minor": rng.choice([8000, 12000, 15000, 20000]), "currency": "EUR"}
        if rng.random() < 0.03:
            yield {**base, "type": "gift.purchased", "event_id": f"demo-{seed}-{n}-g", "occurred_at": start + timedelta(seconds=rng.randrange(30, 300)),
                   "amount_minor": rng.choice([500, 1000, 2500]), "currency": "EUR"}
        yield {**base, "type": "profile.engaged", "event_id": f"demo-{seed}-{n}-e", "occurred_at": start + timedelta(seconds=rng.randrange(30, 240)),
               "engagement_ms": int(rng.lognormvariate(10.5, 0.8))}
    yield from gov_network_views(profile_ids[0], now=now, seed=seed)


# Addresses inside networks of the shipped curated list (app/data/gov_networks.json), so the
# demo raises gov alerts without any GeoIP database.
GOV_VISITS = [("6.14.2.9", 0.2), ("21.3.77.4", 3.5), ("6.201.9.13", 11.0)]  # (ip, days ago)


def gov_network_views(profile_id: str, *, now: datetime, seed: int) -> Iterator[dict[str, Any]]:
    """A few views of the first profile from government networks: the demo's gov alerts."""
    for n, (ip, days_ago) in enumerate(GOV_VISITS):
        context = {"ip": ip, "user_agent": USER_AGENTS[0], "url": f"https://demo.example/p/{profile_id[:8]}"}
        yield {
            "type": "profile.viewed", "event_id": f"demo-{seed}-gov-{n}", "profile_id": profile_id,
            "anonymous_id": f"anon-gov-{n}", "occurred_at": now - timedelta(days=days_ago), "context": context,
        }  # fmt: skip


def generate_fraud_events(*, now: datetime | None = None, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Commerce events of the last hours that cross each default fraud rule once (see
    app/services/fraud.py DEFAULT_RULES), among orders that cross none."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    start = now - timedelta(hours=3)
    prefix = f"demo-{seed}-fraud"

    def event(kind: str, n: int, minute: int, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": f"{prefix}-{kind}-{n}", "occurred_at": start + timedelta(minutes=minute), **fields}

    for n in range(30):  # ordinary orders: one each, by different buyers
        yield event("order.paid", n, n, user_id=f"buyer-{n}", amount_minor=2500, currency="EUR",
                    properties={"orderId": f"order-{n}", "quantity": 1})
    for n in range(8):  # 8 of 32 orders refunded: 25% > 20%
        yield event("order.refunded", n, 40 + n, user_id=f"buyer-{n}", amount_minor=2500, currency="EUR",
                    properties={"orderId": f"order-{n}"})
    for n, quantity in enumerate((12, 14)):  # 26 tickets in 10 minutes > 20
        yield event("order.paid", 100 + n, 50 + 10 * n, user_id="reseller-42", amount_minor=2500 * quantity,
                    currency="EUR", properties={"orderId": f"bulk-{n}", "quantity": quantity})
    for n in range(5):  # 5 declined cards in 20 minutes > 3
        yield event("payment.failed", n, 70 + 5 * n, user_id="card-tester", amount_minor=4999, currency="EUR")
    for n in range(5):  # 5 sign-ups from one address in 10 minutes > 3
        yield event("account.created", n, 100 + 2 * n, user_id=f"signup-{n}", context={"ip": "203.0.113.66"})
    for n, gate in enumerate(("gate-north", "gate-north", "gate-south")):  # one ticket, two devices
        yield event("ticket.scanned", n, 120 + n, properties={"ticketId": "TCK-1001", "deviceId": gate})


def generate_money_events(profile_ids: list[str], *, now: datetime | None = None, seed: int = 7) -> Iterator[dict[str, Any]]:
    """Money of the last 30 days for every report: duo bookings with fees, gifts by category,
    subscriptions, affiliate commissions, a refund, a failed payment and a payout."""
    rng = random.Random(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    prefix = f"demo-{seed}-money"
    for n in range(60):
        at = now - timedelta(days=rng.randrange(0, 30), minutes=rng.randrange(1, 1440))
        profile, partner = rng.sample(profile_ids, 2)
        base = {"profile_id": profile, "user_id": f"fan-{rng.randrange(15)}", "occurred_at": at, "currency": "EUR"}
        fees = {"platformFeeMinor": 1200, "processorFeeMinor": 290}
        yield {**base, "type": "booking.completed", "event_id": f"{prefix}-b-{n}", "amount_minor": 12000,
               "properties": {"partnerProfileId": partner, "splitPercent": 60, **fees} if n % 3 == 0 else fees}
        yield {**base, "type": "gift.purchased", "event_id": f"{prefix}-g-{n}", "amount_minor": rng.choice([500, 1000, 2500]),
               "properties": {"category": rng.choice(["flowers", "coffee", "music"]), "orderId": f"{prefix}-gift-{n}"}}
        if n % 6 == 0:
            yield {**base, "type": "subscription.charged", "event_id": f"{prefix}-s-{n}", "amount_minor": 999}
            yield {**base, "type": "affiliate.commission", "event_id": f"{prefix}-a-{n}", "amount_minor": 350}
    yield {"type": "order.refunded", "event_id": f"{prefix}-r-0", "occurred_at": now - timedelta(minutes=5),
           "amount_minor": 500, "currency": "EUR", "properties": {"originalEventId": f"{prefix}-g-1"}}
    yield {"type": "payment.failed", "event_id": f"{prefix}-f-0", "occurred_at": now - timedelta(minutes=9),
           "amount_minor": 12000, "currency": "EUR", "user_id": "fan-declined"}
    yield {"type": "payout.settled", "event_id": f"{prefix}-p-0", "occurred_at": now - timedelta(days=1),
           "amount_minor": 50000, "currency": "EUR", "properties": {"payoutId": "po-demo-1"}}
    # A payout that pays 10.00 EUR less than the two bookings it settles (a reconciliation
    # discrepancy), an invoice overdue, one due later and one paid.
    for n in range(2):
        yield {"type": "booking.completed", "event_id": f"{prefix}-pb-{n}", "profile_id": profile_ids[n],
               "occurred_at": now - timedelta(days=3, hours=n), "amount_minor": 20000, "currency": "EUR",
               "properties": {"payoutId": "po-demo-2", "platformFeeMinor": 2000, "serviceFeeMinor": 500, "processorFeeMinor": 300}}
    yield {"type": "payout.settled", "event_id": f"{prefix}-p-1", "occurred_at": now - timedelta(hours=6),
           "amount_minor": 33400, "currency": "EUR", "properties": {"payoutId": "po-demo-2"}}
    today = now.date()
    for n, (due, paid) in enumerate(((today - timedelta(days=5), False), (today + timedelta(days=14), False),
                                     (today - timedelta(days=20), True))):
        yield {"type": "invoice.issued", "event_id": f"{prefix}-i-{n}", "occurred_at": now - timedelta(days=25),
               "amount_minor": 4900 + 1000 * n, "currency": "EUR",
               "properties": {"invoiceId": f"DEMO-{n + 1}", "dueDate": due.isoformat()}}
        if paid:
            yield {"type": "invoice.paid", "event_id": f"{prefix}-ip-{n}", "occurred_at": now - timedelta(days=18),
                   "amount_minor": 4900 + 1000 * n, "currency": "EUR", "properties": {"invoiceId": f"DEMO-{n + 1}"}}


async def _seed_costs(org: Any) -> None:
    """A few cost entries so costs and P&L are non-empty."""
    from app.services import costs

    viewer = Viewer(subject="demo-seed", role=Role.ORG_ADMIN, organization_id=org.id)
    today = datetime.now(UTC).date()
    for days, category, amount, text in ((2, "marketing", 15000, "Spring ads"), (9, "tools", 4900, "Scheduling tool"),
                                          (20, "subscriptions", 2900, "Hosting")):
        await costs.create_cost(viewer=viewer, category=category, amount_minor=amount, currency="EUR",
                                incurred_on=today - timedelta(days=days), description=text)


async def _seed_suspended_organization() -> None:
    """A second, suspended organization, so the platform's lifecycle figures are not all zero."""
    from app.services import organizations as orgs
    from app.services import platform

    other = await orgs.create_organization(name="Demo Closed Shop", timezone="America/New_York", slug="demo-closed")
    admin = Viewer(subject="demo-seed", role=Role.ADMIN, organization_id=None)
    await platform.set_status(viewer=admin, organization_id=other.id, suspend=True, reason="Demo: unpaid invoices")


@dataclass
class DemoInfo:
    organization: str
    provider_profile: str
    profile_id: str
    admin_token: str
    org_admin_token: str
    provider_token: str
    ingestion_key: str
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def ensure_demo(settings: Settings, *, drain: bool = False, announce: bool = True, url: str = "http://127.0.0.1:8000") -> DemoInfo:
    """Seed once (idempotent by organization slug), then print the demo tokens: the stored
    ones while they are good, new ones otherwise (app/services/demo_tokens.py)."""
    from app.services import organizations as orgs
    from app.services.demo_tokens import demo_tokens
    from models.organizations import Organization, Profile

    org = await Organization.get_or_none(slug=DEMO_SLUG)
    created = org is None
    key_file = settings.data_dir / "demo-ingestion-key.json"
    if org is None:
        org = await orgs.create_organization(name="Demo Marketplace", timezone="Europe/Berlin", currency="EUR", slug=DEMO_SLUG)
        profiles = [await orgs.create_profile(organization=org, name=name) for name in DEMO_PROVIDERS]
        key = await orgs.create_ingestion_key(organization=org, name="demo beacon")
        key_file.write_text(json.dumps({"key": key.raw}))
        await _seed_events(settings, org, [str(p.id) for p in profiles])
    profile = await Profile.filter(organization_id=org.id).order_by("name").first()
    if drain:
        await _drain(settings)
    raw_key = json.loads(key_file.read_text())["key"] if key_file.exists() else (await orgs.create_ingestion_key(organization=org, name="demo beacon")).raw
    tokens = await demo_tokens(settings, organization_id=org.id, profile_id=profile.id)
    info = DemoInfo(
        organization=org.slug,
        provider_profile=profile.slug,
        profile_id=str(profile.id),
        admin_token=tokens.admin_token,
        org_admin_token=tokens.org_admin_token,
        provider_token=tokens.provider_token,
        ingestion_key=raw_key,
        created=created,
    )
    if announce:
        print(_banner(info, url), flush=True)
    return info


async def _seed_events(settings: Settings, org: Any, profile_ids: list[str]) -> None:
    from app.services.enrichment import GeoLocator
    from app.services.ingestion import track_events

    viewer = Viewer(subject="demo-seed", role=Role.SERVICE, organization_id=org.id)
    geo = GeoLocator(settings.geoip_city_db, settings.geoip_asn_db)
    batch: list[dict[str, Any]] = []
    total = 0
    try:
        for event in generate_events(profile_ids=profile_ids):
            batch.append(event)
            if len(batch) == settings.max_batch_size:
                total += (await track_events(viewer=viewer, events=batch, geo=geo, settings=settings)).accepted
                batch = []
        if batch:
            total += (await track_events(viewer=viewer, events=batch, geo=geo, settings=settings)).accepted
        fraud = list(generate_fraud_events())
        total += (await track_events(viewer=viewer, events=fraud, geo=geo, settings=settings, domain=True)).accepted
        money = list(generate_money_events(profile_ids))
        for i in range(0, len(money), settings.max_batch_size):
            chunk = money[i : i + settings.max_batch_size]
            total += (await track_events(viewer=viewer, events=chunk, geo=geo, settings=settings, domain=True)).accepted
        await _seed_costs(org)
        await _seed_suspended_organization()
    finally:
        geo.close()
    log.info("demo: seeded %d events for %d profiles", total, len(profile_ids))


async def _drain(settings: Settings) -> None:
    from app.eventbus import EventBus
    from workers.outbox import OutboxWorker

    bus = EventBus("memory://")
    await bus.connect()
    try:
        await OutboxWorker(bus=bus, settings=settings, name="demo").drain()
    finally:
        await bus.disconnect()


def _banner(info: DemoInfo, url: str) -> str:
    return "\n".join([
        "",
        f"pulsegraph is ready: open {url}/graphql",
        f"  demo organization : {info.organization}   provider profile: {info.provider_profile} ({info.profile_id})",
        f"  admin token       : {info.admin_token}",
        f"  org admin token   : {info.org_admin_token}",
        f"  provider token    : {info.provider_token}",
        f"  ingestion key     : {info.ingestion_key}",
        "  (paste a token into GraphiQL's headers as {\"Authorization\": \"Bearer <token>\"})",
        "",
    ])
