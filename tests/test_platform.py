"""Platform KPIs, growth series and the organization lifecycle, end to end: a generated
multi-currency ledger published through the API and drained by the real worker, every figure
compared with a from-scratch computation over the generated events (tests/support/ledger.py)."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.database import connection
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.ledger import (
    Ledger,
    api_period,
    as_map,
    day_start,
    generate,
    gmv,
    month_start,
    net_platform,
    period_figures,
    previous_month,
    publish,
)
from tests.support.tenants import make_tenant

PERIOD = """from to gmv { amountMinor currency } orders tickets averageOrderValue { amountMinor currency }
  platformFees { amountMinor currency } serviceFees { amountMinor currency } processorFees { amountMinor currency }
  netPlatformRevenue { amountMinor currency }"""
KPIS = f"""query($org: ID) {{ platformKpis(organizationId: $org) {{ organizationId asOf
  organizations {{ total active suspended churned newThisWeek newThisMonth newLastMonth monthOverMonthGrowthPercent }}
  thisMonth {{ {PERIOD} }} lastMonth {{ {PERIOD} }} allTime {{ {PERIOD} }}
  gmvChange {{ currency amountMinor percent }} }} }}"""
GROWTH = """query($org: ID, $r: GrowthRangeInput!, $g: Granularity) { platformGrowth(organizationId: $org, range: $r, granularity: $g) {
  range { from to timezone } granularity
  points { start end gmv { amountMinor currency } newOrganizations activeProfiles } } }"""
# Both money lists of a 90-day daily series are over the default query cost limit: ask twice.
GROWTH_REVENUE = """query($org: ID, $r: GrowthRangeInput!, $g: Granularity) {
  platformGrowth(organizationId: $org, range: $r, granularity: $g) { points { platformRevenue { amountMinor currency } } } }"""
LIFECYCLE = """query($org: ID) { platformOrganizations(organizationId: $org) { organizationId status churned active lastEventAt
  statusReason statusChangedBy history { action actor reason } } }"""
TRACK_ONE = "mutation($e: TrackEventInput!) { trackEvent(event: $e) { accepted } }"
PUBLISH_DOMAIN = "mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted } }"
SUSPEND = """mutation($org: ID!, $reason: String!) { suspendOrganization(organizationId: $org, reason: $reason) {
  status active history { action reason } } }"""
REINSTATE = """mutation($org: ID!, $reason: String!) { reinstateOrganization(organizationId: $org, reason: $reason) {
  status active history { action reason } } }"""


async def build(app: Any, settings: Any, client: Any, worker: Any, now: datetime) -> list[Ledger]:
    """Two organizations either side of UTC, each with its generated ledger, drained."""
    ledgers = []
    for seed, tz in ((21, "America/Los_Angeles"), (22, "Asia/Tokyo")):
        tenant = await make_tenant(settings, timezone=tz)
        ledger = generate(tenant, random.Random(seed), now)
        await publish(client, tenant, ledger.events)
        ledgers.append(ledger)
    await worker.drain()
    return ledgers


def in_window(ledger: Ledger, start: datetime, end: datetime) -> list[Any]:
    return [e for e in ledger.entries if start <= e.at < end]


async def test_kpis_and_growth_match_a_from_scratch_computation(app, settings, client, worker):
    now = datetime.now(UTC).replace(microsecond=0)
    ledgers = await build(app, settings, client, worker, now)
    admin = ledgers[0].tenant.admin_token
    for ledger in ledgers:
        org = ledger.tenant.org_id
        kpis = (await gql_data(client, KPIS, {"org": org}, admin))["platformKpis"]
        assert kpis["organizationId"] == org
        # UTC weeks and months as of the server's moment: a Monday or a 1st may have begun since `now`.
        as_of = datetime.fromisoformat(kpis["asOf"])
        this_month, week = month_start(as_of), day_start(as_of) - timedelta(days=as_of.weekday())
        last_month = previous_month(this_month)
        created = ledger.tenant.organization.created_at
        assert now <= created <= as_of
        assert kpis["organizations"] == {
            "total": 1, "active": 1, "suspended": 0, "churned": 0, "newThisWeek": int(created >= week),
            "newThisMonth": int(created >= this_month), "newLastMonth": int(created < this_month),
            "monthOverMonthGrowthPercent": None if created >= this_month else 0.0,
        }  # fmt: skip
        current = in_window(ledger, this_month, now + timedelta(hours=1))
        previous = in_window(ledger, last_month, this_month)
        assert api_period(kpis["thisMonth"]) == period_figures(current)
        assert api_period(kpis["lastMonth"]) == period_figures(previous)
        assert api_period(kpis["allTime"]) == period_figures(ledger.entries)
        assert datetime.fromisoformat(kpis["lastMonth"]["from"]) == last_month
        change_now, change_before = gmv(current), gmv(previous)
        for row in kpis["gmvChange"]:
            c = row["currency"]
            assert row["amountMinor"] == change_now.get(c, 0) - change_before.get(c, 0)
            before = change_before.get(c, 0)
            assert row["percent"] == (round((change_now.get(c, 0) - before) * 100 / abs(before), 2) if before else None)

        # Growth by UTC day over 90 days, by UTC month over 12 months, by week over a custom range.
        daily = await growth(client, {"org": org, "r": {"preset": "LAST_90_DAYS"}}, admin)
        assert daily["granularity"] == "DAY" and daily["range"]["timezone"] == "UTC" and len(daily["points"]) == 90
        check_points(daily["points"], ledger)
        monthly = await growth(client, {"org": org, "r": {"preset": "LAST_12_MONTHS"}}, admin)
        assert monthly["granularity"] == "MONTH" and len(monthly["points"]) == 12
        check_points(monthly["points"], ledger)
        start = now - timedelta(days=50, hours=5)
        custom = {"from": start.isoformat(), "to": now.isoformat()}
        weekly = await growth(client, {"org": org, "r": custom, "g": "WEEK"}, admin)
        assert datetime.fromisoformat(weekly["points"][0]["start"]) == start
        check_points(weekly["points"], ledger)

    # Platform-wide: the generated organizations are inside the totals.
    everything = (await gql_data(client, KPIS, {"org": None}, admin))["platformKpis"]
    assert everything["organizationId"] is None and everything["organizations"]["total"] >= 2
    for currency, amount in gmv([e for ledger in ledgers for e in ledger.entries]).items():
        assert as_map(everything["allTime"]["gmv"]).get(currency, 0) != 0 or amount == 0


async def growth(client: Any, variables: dict[str, Any], token: str) -> dict[str, Any]:
    found = (await gql_data(client, GROWTH, variables, token))["platformGrowth"]
    revenue = (await gql_data(client, GROWTH_REVENUE, variables, token))["platformGrowth"]["points"]
    for point, extra in zip(found["points"], revenue, strict=True):
        point.update(extra)
    return found


def check_points(points: list[dict[str, Any]], ledger: Ledger) -> None:
    """Each bucket against the entries and views whose time lies in [start, end)."""
    for point in points:
        start, end = datetime.fromisoformat(point["start"]), datetime.fromisoformat(point["end"])
        inside = in_window(ledger, start, end)
        assert as_map(point["gmv"]) == gmv(inside), point["start"]
        assert as_map(point["platformRevenue"]) == net_platform(inside), point["start"]
        assert point["activeProfiles"] == len({p for p, at in ledger.views if start <= at < end}), point["start"]
        created = ledger.tenant.organization.created_at
        assert point["newOrganizations"] == (1 if start <= created < end else 0), point["start"]


async def test_lifecycle_suspended_and_churned_organizations(app, settings, client, worker):
    quiet, suspended, lively = [await make_tenant(settings) for _ in range(3)]
    admin = lively.admin_token
    await publish(client, lively, [{"eventId": f"l-{uuid.uuid4()}", "type": "PROFILE_VIEWED", "profileId": lively.profile_id}])
    await publish(client, quiet, [{"eventId": f"q-{uuid.uuid4()}", "type": "PROFILE_VIEWED", "profileId": quiet.profile_id}])
    await worker.drain()
    async with connection() as conn:  # new this week and month when counted, whenever the tenants were made
        await conn.execute("UPDATE organizations SET created_at = now() WHERE id = $1", quiet.organization.id)
    before = (await gql_data(client, KPIS, {"org": None}, admin))["platformKpis"]["organizations"]

    # Nothing received from `quiet` for 100 days (it is 120 days old): churned.
    async with connection() as conn:
        await conn.execute("UPDATE organizations SET created_at = now() - interval '120 days' WHERE id = $1", quiet.organization.id)
        await conn.execute("UPDATE outbox SET received_at = now() - interval '100 days' WHERE organization_id = $1",
                           quiet.organization.id)  # fmt: skip
    done = (await gql_data(client, SUSPEND, {"org": suspended.org_id, "reason": "unpaid invoices"}, admin))["suspendOrganization"]
    assert done == {"status": "SUSPENDED", "active": False, "history": [{"action": "suspended", "reason": "unpaid invoices"}]}
    again = await gql(client, SUSPEND, {"org": suspended.org_id, "reason": "twice"}, token=admin)
    assert error_codes(again) == ["BAD_USER_INPUT"] and again["errors"][0]["extensions"]["field"] == "organizationId"

    after = (await gql_data(client, KPIS, {"org": None}, admin))["platformKpis"]["organizations"]
    assert after["total"] == before["total"]
    assert (after["suspended"], after["churned"], after["active"]) == (
        before["suspended"] + 1, before["churned"] + 1, before["active"] - 2
    )
    assert (after["newThisMonth"], after["newThisWeek"]) == (before["newThisMonth"] - 1, before["newThisWeek"] - 1)
    [row] = (await gql_data(client, LIFECYCLE, {"org": quiet.org_id}, admin))["platformOrganizations"]
    assert (row["status"], row["churned"], row["active"]) == ("ACTIVE", True, False)
    assert datetime.fromisoformat(row["lastEventAt"]) < datetime.now(UTC) - timedelta(days=99)
    [row] = (await gql_data(client, LIFECYCLE, {"org": suspended.org_id}, admin))["platformOrganizations"]
    assert (row["status"], row["churned"], row["statusReason"]) == ("SUSPENDED", False, "unpaid invoices")
    assert row["statusChangedBy"] and row["history"][0]["actor"] == row["statusChangedBy"]
    kpis = (await gql_data(client, KPIS, {"org": quiet.org_id}, admin))["platformKpis"]["organizations"]
    assert (kpis["total"], kpis["churned"], kpis["active"], kpis["newThisMonth"]) == (1, 1, 0, 0)

    # A suspended organization's events are refused, by key and by service token, and nothing is stored.
    view = {"type": "profile.viewed", "eventId": f"s-{uuid.uuid4()}", "profileId": suspended.profile_id}
    tracked = await gql(client, TRACK_ONE, {"e": view}, token=suspended.ingestion_key)
    assert error_codes(tracked) == ["FORBIDDEN"] and "suspended" in tracked["errors"][0]["message"], tracked
    domain = {"eventId": view["eventId"], "type": "PROFILE_VIEWED", "profileId": suspended.profile_id}
    published = await gql(client, PUBLISH_DOMAIN, {"e": [domain]}, token=suspended.service_token)
    assert error_codes(published) == ["FORBIDDEN"], published
    async with connection() as conn:
        stored = await conn.fetchval("SELECT count(*) FROM outbox WHERE event_id = $1", view["eventId"])
    assert stored == 0

    back = (await gql_data(client, REINSTATE, {"org": suspended.org_id, "reason": "paid"}, admin))["reinstateOrganization"]
    assert back["status"] == "ACTIVE" and back["active"] is True
    assert [h["action"] for h in back["history"]] == ["suspended", "reinstated"]
    tracked = await gql(client, TRACK_ONE, {"e": view}, token=suspended.ingestion_key)
    assert tracked["data"]["trackEvent"]["accepted"] == 1, tracked


async def test_churn_lookup_stays_cheap_with_many_events(app, settings, client):
    """The last event of every organization is one index probe each, even with 300,000 outbox rows."""
    tenant = await make_tenant(settings)
    async with connection() as conn:
        await conn.execute(
            "INSERT INTO outbox (organization_id, event_id, occurred_at, type, received_at, processed_at)"
            " SELECT $1, 'bulk-' || g, now(), 'page.viewed', now() - (g || ' seconds')::interval, now()"
            " FROM generate_series(1, 300000) g",
            tenant.organization.id,
        )
        await conn.execute("ANALYZE outbox")
        plan = "\n".join(r[0] for r in await conn.fetch(
            "EXPLAIN SELECT (SELECT max(x.received_at) FROM outbox x WHERE x.organization_id = o.id) FROM organizations o"
        ))  # fmt: skip
    assert "outbox_org_received" in plan, plan
    started = time.perf_counter()
    await gql_data(client, KPIS, {"org": None}, tenant.admin_token)
    assert time.perf_counter() - started < 2.0


async def test_platform_reports_are_for_platform_admins_only(client, tenant):
    for token in (tenant.org_admin_token, tenant.provider_token, tenant.service_token):
        for query, variables in ((KPIS, {"org": tenant.org_id}), (KPIS, {"org": None}),
                                 (GROWTH, {"org": None, "r": {"preset": "LAST_7_DAYS"}}), (LIFECYCLE, {"org": None}),
                                 (SUSPEND, {"org": tenant.org_id, "reason": "x"})):  # fmt: skip
            body = await gql(client, query, variables, token=token)
            assert error_codes(body) == ["FORBIDDEN"], (query, body)
    assert error_codes(await gql(client, KPIS, {"org": None})) == ["UNAUTHENTICATED"]


async def test_validation_errors_name_the_field(client, tenant):
    admin = tenant.admin_token
    cases = [
        (GROWTH, {"r": {"preset": "LAST_7_DAYS", "from": "2026-01-01T00:00:00Z"}}, "range"),
        (GROWTH, {"r": {"from": "2026-01-01T00:00:00"}, "g": "MONTH"}, "range.from"),
        (GROWTH, {"r": {"from": "2024-01-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "g": "MONTH"}, "range.to"),
        (SUSPEND, {"org": tenant.org_id, "reason": "  "}, "reason"),
        ("query { platformOrganizations(limit: 0) { name } }", {}, "limit"),
    ]
    for query, variables, field in cases:
        body = await gql(client, query, variables, token=admin)
        assert body["errors"][0]["extensions"]["field"] == field, body
    unknown = await gql(client, KPIS, {"org": str(uuid.uuid4())}, token=admin)
    assert error_codes(unknown) == ["NOT_FOUND"]
