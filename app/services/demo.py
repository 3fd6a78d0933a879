"""The demo dataset: a marketplace with eight providers and thirteen months of history before
the current one (visits, bookings, gifts, subscriptions, ticket orders, payouts, invoices,
costs), two running experiments (one with a clear winner, one with a sample ratio mismatch),
a few fraud and gov cases, failed payments admins resolved or asked the host platform to retry
(with their webhooks: one dead, one delivered on a retry), the host platform's own failed
webhooks, a second organization that was suspended, and a services marketplace (service
executions, searches, views, purchases, subscriptions).

It goes through the real ingestion service (enrichment, sessions, outbox), so the demo
shows exactly what production data looks like. The generators live in
app/services/demo_data; the same seed gives the same events, and every event happened
before the moment of seeding. The organizations and profiles are backdated to the start
of their history, as if they had been created then.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from app.auth import Role, Viewer
from app.services.demo_data import closed_shop, operations, services_market
from app.services.demo_data import experiments as experiments_data
from app.services.demo_data.commerce import FRAUD_WINDOW, generate_commerce_events, generate_fraud_events
from app.services.demo_data.costs import monthly_costs
from app.services.demo_data.door_scans import generate_door_scans
from app.services.demo_data.listings import generate_campaign_visits, generate_listing_events
from app.services.demo_data.money import generate_money_events
from app.services.demo_data.product import generate_product_events
from app.services.demo_data.timeline import Timeline
from app.services.demo_data.traffic import GOV_VISITS, generate_events
from app.services.enrichment import GeoLocator
from app.settings import Settings

__all__ = [
    "DEMO_SLUG", "GOV_VISITS", "DemoInfo", "ensure_demo", "generate_commerce_events", "generate_events",
    "generate_fraud_events", "generate_money_events",
]  # fmt: skip

log = logging.getLogger("pulsegraph.demo")

DEMO_SLUG = "demo"
DEMO_PROVIDERS = [
    "Alina Morgan", "Bruno Castell", "Chen Wei", "Dana Okafor", "Elif Yilmaz",
    "Farah Haddad", "Gus Lindqvist", "Hana Sato",
]


@dataclass
class DemoInfo:
    organization: str
    organization_id: str
    provider_profile: str
    profile_id: str
    admin_token: str
    org_admin_token: str
    provider_token: str
    ingestion_key: str
    org_admin_email: str
    org_admin_password: str
    viewer_email: str
    viewer_password: str
    operator_email: str  # a platform admin
    operator_password: str
    created: bool
    services_organization_id: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def ensure_demo(settings: Settings, *, drain: bool = False, announce: bool = True, url: str = "http://127.0.0.1:8000") -> DemoInfo:
    """Seed once (idempotent by organization slug), then print the demo tokens (the stored
    ones while they are good, new ones otherwise: app/services/demo_tokens.py) and the demo
    users' passwords (kept per data folder too: app/services/demo_users.py)."""
    from app.services import organizations as orgs
    from app.services.demo_tokens import demo_tokens
    from app.services.demo_users import demo_users
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
    services = await _ensure_services_marketplace(settings)
    profile = await Profile.filter(organization_id=org.id).order_by("name").first()
    if drain:
        await _drain(settings)
    raw_key = json.loads(key_file.read_text())["key"] if key_file.exists() else (await orgs.create_ingestion_key(organization=org, name="demo beacon")).raw
    tokens = await demo_tokens(settings, organization_id=org.id, profile_id=profile.id)
    org_admin, viewer, operator = await demo_users(settings, organization_id=org.id)
    info = DemoInfo(
        organization=org.slug,
        organization_id=str(org.id),
        provider_profile=profile.slug,
        profile_id=str(profile.id),
        admin_token=tokens.admin_token,
        org_admin_token=tokens.org_admin_token,
        provider_token=tokens.provider_token,
        ingestion_key=raw_key,
        org_admin_email=org_admin.email,
        org_admin_password=org_admin.password,
        viewer_email=viewer.email,
        viewer_password=viewer.password,
        operator_email=operator.email,
        operator_password=operator.password,
        created=created,
        services_organization_id=str(services),
    )
    if announce:
        print(_banner(info, url), flush=True)
    return info


async def _seed_events(settings: Settings, org: Any, profile_ids: list[str]) -> None:
    """Everything the demo organization did before now, then the suspended organization."""
    timeline = Timeline.ending(datetime.now(UTC), timezone=org.timezone)
    await _backdate(org.id, timeline.start)
    viewer = Viewer(subject="demo-seed", role=Role.SERVICE, organization_id=org.id)
    geo = GeoLocator(settings.geoip_city_db, settings.geoip_asn_db)
    total = 0
    try:
        total += await _ingest(viewer, generate_events(profile_ids=profile_ids, timeline=timeline), settings, geo, domain=False)
        total += await _ingest(viewer, generate_product_events(timeline=timeline), settings, geo, domain=False)
        await _seed_cohorts(org)
        total += await _seed_experiments(org, timeline, settings, geo, viewer)
        total += await _ingest(viewer, generate_money_events(profile_ids, timeline=timeline), settings, geo)
        total += await _ingest(viewer, generate_commerce_events(timeline=timeline), settings, geo)
        total += await _ingest(viewer, generate_listing_events(timeline=timeline), settings, geo)
        quiet_end = timeline.end - FRAUD_WINDOW
        total += await _ingest(viewer, generate_campaign_visits(timeline=timeline, quiet_end=quiet_end), settings, geo, domain=False)
        total += await _ingest(viewer, generate_fraud_events(now=timeline.end), settings, geo)
        total += await _ingest(viewer, generate_door_scans(now=timeline.end), settings, geo)
        total += await _seed_operations(settings, org, timeline.end, geo, viewer)
        await _seed_costs(org, timeline)
        total += await _seed_suspended_organization(settings, geo, timeline.end)
    finally:
        geo.close()
    log.info("demo: seeded %d events for %d profiles since %s", total, len(profile_ids), timeline.start.date())


async def _ensure_services_marketplace(settings: Settings) -> Any:
    """The services marketplace organization (seeded once, by its slug): its id."""
    from app.services import organizations as orgs
    from models.organizations import Organization

    found = await Organization.get_or_none(slug=services_market.SLUG)
    if found is not None:
        return found.id
    timeline = services_market.services_timeline(datetime.now(UTC))
    org = await orgs.create_organization(name=services_market.NAME, timezone=services_market.TIMEZONE, currency="EUR",
                                         slug=services_market.SLUG)  # fmt: skip
    creators = [await orgs.create_profile(organization=org, name=name, kind="creator") for name in services_market.CREATORS]
    for name in services_market.BRANDS:
        await orgs.create_profile(organization=org, name=name, kind="brand")
    await _backdate(org.id, timeline.start)
    viewer = Viewer(subject="demo-seed", role=Role.SERVICE, organization_id=org.id)
    geo = GeoLocator(settings.geoip_city_db, settings.geoip_asn_db)
    try:
        events = services_market.generate_service_events(timeline=timeline, creator_profiles=[str(p.id) for p in creators])
        accepted = await _ingest(viewer, events, settings, geo)
    finally:
        geo.close()
    log.info("demo: seeded %d services marketplace events since %s", accepted, timeline.start.date())
    return org.id


async def _seed_operations(settings: Settings, org: Any, now: datetime, geo: GeoLocator, viewer: Viewer) -> int:
    """The host platform's failed webhooks, its webhook channel, and what admins did about four
    failed payments (app/services/demo_data/operations.py). Returns the events it accepted."""
    accepted = await _ingest(viewer, operations.generate_host_webhook_failures(now=now), settings, geo)
    accepted += await _ingest(viewer, operations.generate_acted_failures(now=now), settings, geo)
    channel = await _host_channel(org.id)
    admin = Viewer(subject="demo-seed", role=Role.ORG_ADMIN, organization_id=org.id)
    for act in operations.ACTS:
        await _act_on_failed_payment(admin, channel, act, now)
    return accepted


async def _host_channel(organization_id: Any) -> Any:
    """The host platform's webhook channel, written as createNotificationChannel would (its
    example host is not resolved at seeding)."""
    from app.database import transaction
    from app.services.notifications import signing

    async with transaction() as conn:
        return await conn.fetchval(
            """INSERT INTO notification_channels (id, organization_id, kind, name, url, secret, kinds)
               VALUES (gen_random_uuid(), $1, 'webhook', $2, $3, $4, $5) RETURNING id""",
            organization_id, operations.HOST_CHANNEL_NAME, operations.HOST_CHANNEL_URL, signing.new_secret(),
            operations.HOST_CHANNEL_KINDS,
        )  # fmt: skip


async def _act_on_failed_payment(admin: Viewer, channel: Any, act: operations.Act, now: datetime) -> None:
    """Resolve a failed payment or request its retry through the service, then date the act,
    its audit entries and its webhook's attempts as they happened."""
    from app.database import transaction
    from app.services import failed_payments

    org, event_id = admin.organization_id, operations.act_event_id(act)
    common = {"viewer": admin, "organization_id": org, "transaction_id": event_id, "address": None}
    if act.requested_hours_ago is not None:
        await failed_payments.request_payment_retry(**common, reason=act.requested_note)
    if act.resolved_hours_ago is not None:
        await failed_payments.resolve_failed_payment(**common, reason=act.resolved_note)
    requested = now - timedelta(hours=act.requested_hours_ago) if act.requested_hours_ago is not None else None
    resolved = now - timedelta(hours=act.resolved_hours_ago) if act.resolved_hours_ago is not None else None
    async with transaction() as conn:
        await conn.execute(
            """UPDATE failed_payment_states
               SET at = COALESCE($3::timestamptz, $4::timestamptz), retry_requested_at = COALESCE($4::timestamptz, retry_requested_at),
                   resolved_at = COALESCE($3::timestamptz, resolved_at)
               WHERE organization_id = $1 AND event_id = $2""",
            org, event_id, resolved, requested,
        )  # fmt: skip
        await conn.execute(
            """UPDATE audit_log SET at = CASE action WHEN 'failed_payment.resolved' THEN $3::timestamptz ELSE $4::timestamptz END
               WHERE organization_id = $1 AND target = $2 AND action LIKE 'failed_payment.%'""",
            org, event_id, resolved, requested,
        )  # fmt: skip
        if requested is not None and act.attempts is not None:
            await _date_delivery(conn, channel, event_id, requested, act.attempts)


async def _date_delivery(
    conn: Any, channel: Any, event_id: str, requested: datetime, attempts: list[operations.Attempt]
) -> None:
    """The retry request's webhook as its attempts went: delivered by the last one if it
    succeeded, dead after them otherwise."""
    delivered = attempts[-1].error is None
    last_error = next((a.error for a in reversed(attempts) if a.error is not None), None)
    at = [requested + timedelta(minutes=a.minutes) for a in attempts]
    delivery = await conn.fetchval(
        """UPDATE notification_deliveries
           SET created_at = $3, attempts = $4::int, status = $5::text, delivered_at = $6, last_error = $7, next_attempt_at = $8,
               max_attempts = CASE WHEN $5::text = 'dead' THEN $4::int ELSE GREATEST(max_attempts, $4::int) END,
               payload = payload || jsonb_build_object('requestedAt', $3::timestamptz)
           WHERE channel_id = $1 AND payload ->> 'transactionId' = $2 RETURNING id""",
        channel, event_id, requested, len(attempts), "delivered" if delivered else "dead", at[-1] if delivered else None,
        None if delivered else last_error, at[-1],
    )  # fmt: skip
    await conn.executemany(
        """INSERT INTO notification_attempts (delivery_id, number, organization_id, attempted_at, status_code, error,
                                              duration_ms, response_excerpt)
           SELECT id, $2, organization_id, $3, $4, $5, $6, $7 FROM notification_deliveries WHERE id = $1""",
        [(delivery, n, when, a.status_code, a.error, a.duration_ms, "accepted" if a.error is None else None)
         for n, (a, when) in enumerate(zip(attempts, at, strict=True), start=1)],
    )  # fmt: skip


async def _seed_cohorts(org: Any) -> None:
    """Two saved cohorts of the product's persons, computed at once (then by the scheduler)."""
    from app.services.insights import cohorts, grammar

    searchers = cohorts.behavioral(grammar.EventMatcher("search"), performed=True, min_count=3, days=30)
    pro = grammar.property_filter(
        source=grammar.PropertySource.PERSON, key="plan", operator=grammar.FilterOperator.EQUALS, value="pro", field="filters[0]"
    )
    await cohorts.create_cohort(org=org.id, actor="demo-seed", name="Searched 3+ times in 30 days", definition=searchers)
    await cohorts.create_cohort(org=org.id, actor="demo-seed", name="Pro plan", definition=cohorts.person_properties([pro]))


async def _seed_experiments(org: Any, timeline: Timeline, settings: Settings, geo: GeoLocator, viewer: Viewer) -> int:
    """Two running experiments (a clear winner, a sample ratio mismatch), started two weeks ago;
    their exposures and bookings go through ingestion like an SDK's."""
    from app.database import transaction
    from app.services.experiments import definitions

    admin = Viewer(subject="demo-seed", role=Role.ORG_ADMIN, organization_id=org.id)
    for make in experiments_data.DEFINITIONS:
        created = await definitions.create_experiment(org=org.id, actor=admin.subject, definition=make())
        await definitions.set_status(org=org.id, experiment_id=created.id, status=definitions.Status.RUNNING, viewer=admin)
    started = timeline.end - timedelta(days=experiments_data.DAYS)
    async with transaction() as conn:
        await conn.execute("UPDATE experiments SET started_at = $2, created_at = $2 WHERE organization_id = $1", org.id, started)
        await conn.execute("UPDATE experiment_status_audit SET at = $2 WHERE organization_id = $1", org.id, started)
    return await _ingest(viewer, experiments_data.generate_experiment_events(now=timeline.end), settings, geo, domain=False)


async def _ingest(
    viewer: Viewer, events: Iterable[dict[str, Any]], settings: Settings, geo: GeoLocator, *, domain: bool = True
) -> int:
    """Track `events` in batches of the largest accepted size; returns how many were accepted.

    A rejected event is a mistake in a generator, so it stops the seeding rather than
    leaving a silent hole in the demo."""
    from app.services.ingestion import track_events

    accepted = 0
    for batch in _batches(events, settings.max_batch_size):
        outcome = await track_events(viewer=viewer, events=batch, geo=geo, settings=settings, domain=domain)
        if outcome.rejected:
            first = outcome.rejected[0]
            raise RuntimeError(f"demo event {batch[first.index].get('event_id')} rejected: {first.field}: {first.reason}")
        accepted += outcome.accepted
    return accepted


def _batches(events: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for event in events:
        batch.append(event)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


async def _backdate(organization_id: Any, start: datetime) -> None:
    """The organization, its profiles and keys exist since its history began (the platform's
    account age and new-organizations figures read these dates)."""
    from models.organizations import IngestionKey, Organization, Profile

    await Organization.filter(id=organization_id).update(created_at=start)
    await Profile.filter(organization_id=organization_id).update(created_at=start)
    await IngestionKey.filter(organization_id=organization_id).update(created_at=start)


async def _seed_costs(org: Any, timeline: Timeline) -> None:
    """Every month's costs, so costs and P&L are complete for each period of the history."""
    from app.services import costs

    viewer = Viewer(subject="demo-seed", role=Role.ORG_ADMIN, organization_id=org.id)
    for entry in monthly_costs(timeline):
        await costs.create_cost(viewer=viewer, category=entry.category, amount_minor=entry.amount_minor,
                                currency="EUR", incurred_on=entry.incurred_on, description=entry.description,
                                campaign=entry.campaign)  # fmt: skip


async def _seed_suspended_organization(settings: Settings, geo: GeoLocator, now: datetime) -> int:
    """A second organization that traded for months and was suspended weeks ago, so the
    platform's lifecycle figures are not all zero. Returns the events it accepted."""
    from app.services import organizations as orgs
    from app.services import platform

    timeline = closed_shop.closed_shop_timeline(now)
    other = await orgs.create_organization(name=closed_shop.NAME, timezone=closed_shop.TIMEZONE, currency="USD",
                                           slug=closed_shop.SLUG)  # fmt: skip
    profiles = [await orgs.create_profile(organization=other, name=name) for name in closed_shop.PROFILES]
    await _backdate(other.id, timeline.start)
    viewer = Viewer(subject="demo-seed", role=Role.SERVICE, organization_id=other.id)
    profile_ids = [str(p.id) for p in profiles]
    accepted = await _ingest(viewer, closed_shop.closed_shop_visits(profile_ids, timeline=timeline), settings, geo, domain=False)
    accepted += await _ingest(viewer, closed_shop.closed_shop_sales(profile_ids, timeline=timeline), settings, geo)
    admin = Viewer(subject="demo-seed", role=Role.ADMIN, organization_id=None)
    await platform.set_status(viewer=admin, organization_id=other.id, suspend=True, reason=closed_shop.SUSPENSION_REASON)
    await _date_suspension(other.id, timeline.end)
    return accepted


async def _date_suspension(organization_id: Any, at: datetime) -> None:
    """Suspended when its history ends, not now; and its events were received as they
    happened, so its last event received is not later than its suspension."""
    from app.database import transaction

    async with transaction() as conn:
        await conn.execute("UPDATE organizations SET status_changed_at = $2 WHERE id = $1", organization_id, at)
        await conn.execute("UPDATE organization_status_audit SET at = $2 WHERE organization_id = $1", organization_id, at)
        await conn.execute("UPDATE events SET received_at = occurred_at WHERE organization_id = $1", organization_id)
        await conn.execute("UPDATE outbox SET received_at = occurred_at WHERE organization_id = $1", organization_id)


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
        f"  organization id   : {info.organization_id}   (the demo, slug {info.organization}: organizationId in queries)",
        f"  provider profile  : {info.profile_id}   ({info.provider_profile}: profileId in queries)",
        f"  admin token       : {info.admin_token}",
        f"  org admin token   : {info.org_admin_token}",
        f"  provider token    : {info.provider_token}",
        f"  ingestion key     : {info.ingestion_key}",
        f"  org admin sign-in : {info.org_admin_email}  password {info.org_admin_password}",
        f"  viewer sign-in    : {info.viewer_email}  password {info.viewer_password}",
        f"  operator sign-in  : {info.operator_email}  password {info.operator_password}   (platform admin)",
        f"  services market   : {info.services_organization_id}   (organizationId of serviceMetrics, marketplaceMetrics,"
        " revenueMetrics and GET /stream, with the admin token)",
        "  (paste a token into GraphiQL's headers as {\"Authorization\": \"Bearer <token>\"})",
        f"  (or sign in: run mutation {{ login(email: \"{info.org_admin_email}\", password: \"{info.org_admin_password}\")"
        " { accessToken } } in GraphiQL and paste its accessToken as the token)",
        "",
    ])
