"""The demo dataset, seeded through the real ingestion service and drained by the real
worker, makes every report a newcomer opens non-empty."""

from __future__ import annotations

import json
import stat
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest_asyncio

from app.services.demo import (
    DEMO_SLUG,
    GOV_VISITS,
    ensure_demo,
    generate_commerce_events,
    generate_events,
    generate_fraud_events,
    generate_money_events,
)
from app.services.demo_data import closed_shop
from app.services.demo_data import listings as demo_listings
from app.services.demo_data.timeline import Timeline
from app.services.demo_users import USERS_FILE, VIEWER
from tests.support.graphql import error_codes, gql

OVERVIEW = """
query($p: ID!) {
  profileOverview(profileId: $p, range: {preset: LAST_30_DAYS}) {
    views uniqueVisitors inquiries conversions revenue { amountMinor } favorites shares clicks
  }
}"""
FRAUD_ALERTS = """
query { fraudAlerts(first: 50) { alerts { kind risk status evidence } } }
"""
GOV_ALERTS = """
query($p: ID!) { govAlerts(profileId: $p, range: {preset: LAST_30_DAYS}) { total alerts { networkName confidence } } }
"""


@pytest_asyncio.fixture(scope="module")
async def demo(app: Any, settings: Any) -> Any:
    return await ensure_demo(settings, drain=True, announce=False)


async def test_the_demo_profile_has_traffic_inquiries_bookings_and_revenue(client, demo) -> None:
    body = await gql(client, OVERVIEW, {"p": demo.profile_id}, token=demo.provider_token)
    overview = body["data"]["profileOverview"]
    assert overview["views"] > 100 and overview["uniqueVisitors"] > 50, overview
    assert overview["inquiries"] > 0 and overview["conversions"] > 0 and overview["revenue"], overview
    assert 0 < overview["shares"] < overview["favorites"] < overview["clicks"] < overview["views"] / 5, overview


async def test_the_demo_profile_has_gov_alerts(client, demo) -> None:
    body = await gql(client, GOV_ALERTS, {"p": demo.profile_id}, token=demo.provider_token)
    listed = body["data"]["govAlerts"]
    assert listed["total"] == len(GOV_VISITS), body
    assert all(alert["confidence"] >= 0.7 and alert["networkName"] for alert in listed["alerts"])


async def test_seeding_again_changes_nothing(client, demo, settings) -> None:
    again = await ensure_demo(settings, drain=True, announce=False)
    assert again.created is False and again.profile_id == demo.profile_id
    body = await gql(client, GOV_ALERTS, {"p": demo.profile_id}, token=demo.provider_token)
    assert body["data"]["govAlerts"]["total"] == len(GOV_VISITS)


async def test_the_demo_organization_has_one_fraud_alert_of_each_kind(client, demo) -> None:
    body = await gql(client, FRAUD_ALERTS, token=demo.org_admin_token)
    alerts = body["data"]["fraudAlerts"]["alerts"]
    kinds = sorted(alert["kind"] for alert in alerts)
    assert kinds == ["ACCOUNTS_PER_IP", "BULK_PURCHASE", "FAILED_PAYMENTS", "REFUND_RATE", "TICKET_MULTI_DEVICE"], body
    assert all(alert["status"] == "OPEN" and alert["evidence"] for alert in alerts)


MONEY = """
query($p: ID!) {
  revenueSummary(range: {preset: LAST_30_DAYS}) { total { amountMinor currency } bySource { source } }
  revenueTimeseries(range: {preset: LAST_7_DAYS}, granularity: DAY) { points { total { amountMinor } } }
  giftSummary(range: {preset: LAST_30_DAYS}) { gifts donors revenue { amountMinor } }
  giftCategories(range: {preset: LAST_7_DAYS}) { category gifts previousGifts }
  topGiftDonors(range: {preset: LAST_30_DAYS}, limit: 3) { donorId gifts }
  duoStats(profileId: $p, range: {preset: LAST_30_DAYS}) { bookings partners { bookings } }
  costSummary(range: {preset: LAST_30_DAYS}) { entries byCategory { category } }
  pnl(range: {preset: LAST_30_DAYS}, granularity: WEEK) { totals { revenue fees costs netProfit } }
}"""


async def test_every_money_report_is_non_empty(client, demo) -> None:
    body = await gql(client, MONEY, {"p": demo.profile_id}, token=demo.org_admin_token)
    assert body.get("errors") is None, body
    data = body["data"]
    assert data["revenueSummary"]["total"] and len(data["revenueSummary"]["bySource"]) == 5, data
    assert any(p["total"] for p in data["revenueTimeseries"]["points"])
    assert data["giftSummary"]["gifts"] > 0 and data["giftSummary"]["donors"] > 0
    assert data["giftCategories"] and data["topGiftDonors"]
    assert data["duoStats"]["bookings"] > 0 and data["duoStats"]["partners"]
    assert data["costSummary"]["entries"] >= 2 and len(data["costSummary"]["byCategory"]) >= 2, data["costSummary"]
    [line] = data["pnl"]["totals"]
    assert line["revenue"] > 0 and line["fees"] > 0 and line["costs"] > 0


PLATFORM = """
query {
  platformKpis { organizations { total suspended } thisMonth { gmv { amountMinor } orders } allTime { netPlatformRevenue { amountMinor } } }
  platformGrowth(range: {preset: LAST_30_DAYS}) { points { gmv { amountMinor } activeProfiles } }
  revenueByOrganization(range: {preset: LAST_30_DAYS}) { rows { organizationName gmv net } }
  monthlySummary(range: {preset: LAST_30_DAYS}) { totals { gross fees costs netProfit } }
  payoutReconciliation(range: {preset: LAST_30_DAYS}) { discrepancies rows { payoutId status differenceMinor } }
  outstandingInvoices { groups { overdue amountMinor } invoices { invoiceId overdue } }
}"""


async def test_every_platform_report_is_non_empty(client, demo) -> None:
    body = await gql(client, PLATFORM, token=demo.admin_token)
    assert body.get("errors") is None, body
    data = body["data"]
    assert data["platformKpis"]["organizations"]["suspended"] >= 1 and data["platformKpis"]["allTime"]["netPlatformRevenue"]
    assert any(p["gmv"] for p in data["platformGrowth"]["points"]) and any(p["activeProfiles"] for p in data["platformGrowth"]["points"])
    assert data["revenueByOrganization"]["rows"] and data["monthlySummary"]["totals"]
    rows = {r["payoutId"]: r for r in data["payoutReconciliation"]["rows"]}
    assert rows["po-demo-2"]["status"] == "AMOUNT_MISMATCH" and rows["po-demo-2"]["differenceMinor"] == -1000
    invoices = {i["invoiceId"]: i["overdue"] for i in data["outstandingInvoices"]["invoices"]}
    assert invoices.get("DEMO-1") is True and invoices.get("DEMO-2") is False and "DEMO-3" not in invoices


async def test_a_restart_prints_the_same_tokens(demo, settings) -> None:
    """Tokens are reused while good (tests/test_demo_tokens.py), not minted at every start."""
    again = await ensure_demo(settings, announce=False)
    assert (again.admin_token, again.org_admin_token, again.provider_token) == (
        demo.admin_token, demo.org_admin_token, demo.provider_token,
    )  # fmt: skip


# --------------------------------------------------------------------------- a history a newcomer can believe


async def test_no_demo_event_happened_after_it_was_stored(demo) -> None:
    """Every event happened before the seeding stored it (received_at), and so before now."""
    from app.database import connection

    async with connection() as conn:
        row = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE e.occurred_at >= e.received_at AND o.slug = $1) AS after_storing,"
            " count(*) FILTER (WHERE e.occurred_at >= now()) AS in_the_future, count(*) AS events"
            " FROM events e JOIN organizations o ON o.id = e.organization_id WHERE o.slug = ANY($2::text[])",
            DEMO_SLUG,
            [DEMO_SLUG, closed_shop.SLUG],
        )
    assert row["events"] > 10_000 and row["after_storing"] == 0 and row["in_the_future"] == 0, dict(row)


def _month_starts(count: int, timezone: str) -> list[datetime]:
    """Local midnights of the 1st of the current month and the `count - 1` before it."""
    first = datetime.now(ZoneInfo(timezone)).date().replace(day=1)
    months = [first]
    for _ in range(count - 1):
        months.insert(0, (months[0] - timedelta(days=1)).replace(day=1))
    return [datetime.combine(m, datetime.min.time(), tzinfo=ZoneInfo(timezone)) for m in months]


MONTHS = """
query($p: ID!, $from: DateTime!) {
  profileTimeseries(profileId: $p, range: {from: $from}, granularity: MONTH) { buckets views }
  revenueTimeseries(range: {from: $from}, granularity: MONTH) { points { start total { amountMinor currency } } }
  pnl(range: {from: $from}, granularity: MONTH) { periods { start lines { revenue fees costs } } }
}"""


async def test_each_of_the_last_13_months_has_views_revenue_and_costs_growing_gently(client, demo) -> None:
    months = _month_starts(13, "Europe/Berlin")
    body = await gql(client, MONTHS, {"p": demo.profile_id, "from": months[0].isoformat()}, token=demo.org_admin_token)
    assert body.get("errors") is None, body
    data = body["data"]
    views = data["profileTimeseries"]["views"]
    revenue = [sum(m["amountMinor"] for m in p["total"]) for p in data["revenueTimeseries"]["points"]]
    lines = [p["lines"][0] if p["lines"] else {} for p in data["pnl"]["periods"]]
    assert len(views) == len(revenue) == len(lines) == 13, data
    begun = 13 if datetime.now(UTC) - months[-1] >= timedelta(days=1) else 12  # a month begun minutes ago may be empty
    assert all(v > 0 for v in views[:begun]) and all(r > 0 for r in revenue[:begun]), (views, revenue)
    assert all(line.get("costs", 0) > 0 and line.get("fees", 0) > 0 for line in lines[:begun]), lines
    complete = views[:-1]  # the current month is still running
    steps = [b / a for a, b in zip(complete, complete[1:], strict=False)]
    assert all(0.75 <= s <= 1.35 for s in steps), steps  # no cliffs: gentle growth and noise
    assert complete[-1] > complete[0], complete  # and it grew over the year


COMPARISONS = """
query($p: ID!) {
  revenueSummary(range: {preset: LAST_30_DAYS}) {
    previousRange { from to } total { amountMinor } previousTotal { amountMinor } change { currency percent }
  }
  profileOverview(profileId: $p, range: {preset: LAST_30_DAYS}) { views uniqueVisitors inquiries }
}"""
PREVIOUS_OVERVIEW = """
query($p: ID!, $from: DateTime!, $to: DateTime!) {
  profileOverview(profileId: $p, range: {from: $from, to: $to}) { views uniqueVisitors inquiries }
}"""


async def test_the_last_30_days_compare_plausibly_with_the_30_days_before(client, demo) -> None:
    body = await gql(client, COMPARISONS, {"p": demo.profile_id}, token=demo.org_admin_token)
    assert body.get("errors") is None, body
    summary, current = body["data"]["revenueSummary"], body["data"]["profileOverview"]
    [change] = summary["change"]
    assert change["currency"] == "EUR" and -50 <= change["percent"] <= 100, summary
    before = summary["previousRange"]
    body = await gql(client, PREVIOUS_OVERVIEW, {"p": demo.profile_id, "from": before["from"], "to": before["to"]},
                     token=demo.org_admin_token)  # fmt: skip
    previous = body["data"]["profileOverview"]
    for name in ("views", "uniqueVisitors", "inquiries"):
        assert previous[name] > 0 and -50 <= 100 * (current[name] / previous[name] - 1) <= 100, (name, current, previous)


GROWTH = """
query {
  weeks: platformGrowth(range: {preset: LAST_90_DAYS}, granularity: WEEK) { points { start gmv { amountMinor } activeProfiles } }
  months: platformGrowth(range: {preset: LAST_12_MONTHS}) { points { start gmv { amountMinor } activeProfiles newOrganizations } }
  platformKpis { lastMonth { gmv { amountMinor } orders } allTime { orders } }
}"""


def _begun_a_day_ago(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Buckets except a last one that began less than a day ago (it may have no sale yet)."""
    last = datetime.fromisoformat(points[-1]["start"])
    return points[:-1] if datetime.now(UTC) - last < timedelta(days=1) else points


async def test_platform_growth_has_data_in_every_week_and_month(client, demo) -> None:
    body = await gql(client, GROWTH, token=demo.admin_token)
    assert body.get("errors") is None, body
    weeks, months = body["data"]["weeks"]["points"], body["data"]["months"]["points"]
    assert len(weeks) >= 13 and len(months) == 12
    for point in _begun_a_day_ago(weeks) + _begun_a_day_ago(months):
        assert point["gmv"] and point["activeProfiles"] > 0, point
    assert body["data"]["platformKpis"]["lastMonth"]["orders"] > 30, body


AGE = """
query($org: ID!, $closed: ID!) {
  organizationFraudProfile(range: {preset: LAST_30_DAYS}, organizationId: $org) { accountAgeDays orders refunds }
  platformOrganizations(organizationId: $closed) { status createdAt lastEventAt statusChangedAt }
}"""


async def test_the_demo_organizations_have_been_around_for_their_history(client, demo) -> None:
    orgs = await gql(client, "query { organizations { id slug } }", token=demo.admin_token)
    ids = {o["slug"]: o["id"] for o in orgs["data"]["organizations"]}
    body = await gql(client, AGE, {"org": ids[DEMO_SLUG], "closed": ids[closed_shop.SLUG]}, token=demo.admin_token)
    assert body.get("errors") is None, body
    profile = body["data"]["organizationFraudProfile"]
    assert profile["accountAgeDays"] >= 365 and profile["orders"] > 0, profile
    [closed] = body["data"]["platformOrganizations"]
    suspended = datetime.fromisoformat(closed["statusChangedAt"])
    assert closed["status"] == "SUSPENDED" and datetime.now(UTC) - suspended > timedelta(days=30), closed
    assert datetime.fromisoformat(closed["createdAt"]) < suspended - timedelta(days=180), closed
    assert datetime.fromisoformat(closed["lastEventAt"]) <= suspended, closed


# --------------------------------------------------------------------------- the generators, without a database

NOW = datetime(2026, 3, 31, 21, 30, 15, 123456, tzinfo=UTC)
PROFILES = [str(uuid.UUID(int=n + 1)) for n in range(8)]


def _everything(now: datetime, seed: int) -> list[dict[str, Any]]:
    """What the demo organization and the closed shop get, seeded at `now`."""
    timeline = Timeline.ending(now, timezone="Europe/Berlin")
    closed = closed_shop.closed_shop_timeline(now)
    return [
        *generate_events(profile_ids=PROFILES, timeline=timeline, seed=seed),
        *generate_money_events(PROFILES, timeline=timeline, seed=seed),
        *generate_commerce_events(timeline=timeline, seed=seed),
        *generate_fraud_events(now=now, seed=seed),
        *closed_shop.closed_shop_visits(PROFILES[:2], timeline=closed),
        *closed_shop.closed_shop_sales(PROFILES[:2], timeline=closed),
    ]


def test_the_same_seed_gives_the_same_events_and_another_seed_others() -> None:
    first = _everything(NOW, 7)
    assert first == _everything(NOW, 7)
    assert [e["occurred_at"] for e in first] != [e["occurred_at"] for e in _everything(NOW, 8)]
    assert len({e["event_id"] for e in first}) == len(first)


def test_no_generated_event_is_at_or_after_the_moment_of_seeding() -> None:
    """Also in the last minutes before it, where "now + a few minutes" used to end up."""
    for now in (NOW, NOW.replace(hour=23, minute=59, second=59), NOW.replace(day=1, hour=0, minute=1)):
        events = _everything(now, 7)
        assert max(e["occurred_at"] for e in events) < now
        assert min(e["occurred_at"] for e in events) >= Timeline.ending(now, timezone="Europe/Berlin").start


def test_the_history_covers_13_whole_months_before_the_current_one() -> None:
    timeline = Timeline.ending(NOW, timezone="Europe/Berlin")
    views = Counter(
        e["occurred_at"].astimezone(ZoneInfo("Europe/Berlin")).strftime("%Y-%m")
        for e in generate_events(profile_ids=PROFILES, timeline=timeline)
        if e["type"] == "profile.viewed"
    )
    assert sorted(views) == [
        "2025-02", "2025-03", "2025-04", "2025-05", "2025-06", "2025-07", "2025-08",
        "2025-09", "2025-10", "2025-11", "2025-12", "2026-01", "2026-02", "2026-03",
    ]  # fmt: skip
    assert min(views.values()) > 1000


async def test_the_banner_names_ids_that_queries_take(client, demo, settings, capsys) -> None:
    """What the banner prints as the organization and the profile answers in GraphQL as is."""
    await ensure_demo(settings, announce=True)
    banner = capsys.readouterr().out
    printed = dict(line.split(":", 1) for line in banner.splitlines() if " : " in line)
    org_id = printed["  organization id   "].split()[0]
    profile_id = printed["  provider profile  "].split()[0]
    admin_token = printed["  admin token       "].strip()
    body = await gql(
        client,
        "query($o: ID!, $p: ID!) { revenueSummary(organizationId: $o, range: {preset: LAST_30_DAYS}) { transactions }"
        " profileOverview(profileId: $p, range: {preset: LAST_30_DAYS}) { views } }",
        {"o": org_id, "p": profile_id},
        token=admin_token,
    )
    assert body.get("errors") is None, body
    assert body["data"]["revenueSummary"]["transactions"] > 0 and body["data"]["profileOverview"]["views"] > 0


LOGIN = """
mutation($email: String!, $password: String!) { login(email: $email, password: $password) { role organizationId accessToken } }
"""


async def _signs_in_as(client: Any, email: str, password: str) -> tuple[str, str | None]:
    """The role and organization a sign-in with these credentials acts with."""
    body = await gql(client, LOGIN, {"email": email, "password": password})
    assert body.get("errors") is None, body
    return body["data"]["login"]["role"], body["data"]["login"]["organizationId"]


async def test_the_demo_users_sign_in_with_the_printed_passwords_at_every_start(client, demo, settings, capsys) -> None:
    await ensure_demo(settings, announce=True)
    banner = capsys.readouterr().out
    printed = dict(line.split(":", 1) for line in banner.splitlines() if " : " in line)
    admin_email, _, admin_password = printed["  org admin sign-in "].split()[:3]
    viewer_email, _, viewer_password = printed["  viewer sign-in    "].split()[:3]
    operator_email, _, operator_password = printed["  operator sign-in  "].split()[:3]
    assert f'login(email: "{admin_email}", password: "{admin_password}")' in banner

    assert await _signs_in_as(client, admin_email, admin_password) == ("org_admin", demo.organization_id)
    assert await _signs_in_as(client, viewer_email, viewer_password) == ("viewer", demo.organization_id)
    assert await _signs_in_as(client, operator_email, operator_password) == ("admin", None)
    again = await ensure_demo(settings, announce=False)
    assert (again.org_admin_password, again.viewer_password, again.operator_password) == (
        admin_password, viewer_password, operator_password,
    )  # fmt: skip
    assert stat.S_IMODE((settings.data_dir / USERS_FILE).stat().st_mode) == 0o600


async def test_the_demo_users_file_decides_their_passwords(client, demo, settings) -> None:
    """A password the file lost is replaced by a new one; one changed in the file (or in the
    database) is set to the file's; either way the old one stops working."""
    path = settings.data_dir / USERS_FILE
    before = await ensure_demo(settings, announce=False)
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({email: password for email, password in stored.items() if email != VIEWER.email}))
    lost = await ensure_demo(settings, announce=False)
    assert lost.viewer_password not in ("", before.viewer_password) and lost.org_admin_password == before.org_admin_password
    assert json.loads(path.read_text())[VIEWER.email] == lost.viewer_password
    assert await _signs_in_as(client, VIEWER.email, lost.viewer_password) == ("viewer", demo.organization_id)
    body = await gql(client, LOGIN, {"email": VIEWER.email, "password": before.viewer_password})
    assert error_codes(body) == ["UNAUTHENTICATED"], body

    path.write_text(json.dumps({**json.loads(path.read_text()), VIEWER.email: "a demo password chosen by hand"}))
    chosen = await ensure_demo(settings, announce=False)
    assert chosen.viewer_password == "a demo password chosen by hand"
    assert await _signs_in_as(client, VIEWER.email, chosen.viewer_password) == ("viewer", demo.organization_id)


INSIGHTS = """
query($org: ID!) {
  trends(query: {organizationId: $org, range: {preset: LAST_30_DAYS}, series: [
      {event: "signup"}, {event: "search", math: UNIQUE_PERSONS}, {event: "booking.requested", math: AVERAGE, property: "price"}],
    breakdown: {source: DIMENSION, key: "browser"}}) { series { label breakdownValue total } }
  sessionMetrics(organizationId: $org, range: {preset: LAST_30_DAYS}) {
    total { sessions averageDurationSeconds pagesPerSession bounceRate } topEntryPages { page sessions } }
}"""


async def test_every_insight_shows_the_demo_product(client, demo) -> None:
    """Sign-ups, searches, listing views and booking requests of people who come back."""
    body = await gql(client, INSIGHTS, {"org": demo.organization_id}, token=demo.org_admin_token)
    assert body.get("errors") is None, body
    lines = body["data"]["trends"]["series"]
    assert {line["label"] for line in lines if line["total"]} == {"signup", "search", "booking.requested"}
    assert {"Chrome", "Mobile Safari", "Chrome Mobile"} <= {line["breakdownValue"] for line in lines}
    sessions = body["data"]["sessionMetrics"]
    assert sessions["total"]["sessions"] > 100 and 0 < sessions["total"]["bounceRate"] < 1
    assert sessions["total"]["averageDurationSeconds"] > 0 and sessions["topEntryPages"][0]["page"].endswith("/")


PERSONS_AND_COHORTS = """
query($org: ID!) {
  cohorts(organizationId: $org) { id name memberCount }
  persons(organizationId: $org, search: "@demo.example", first: 5) { persons { id userId anonymousIds properties } }
}"""


async def test_the_demo_has_identified_persons_and_cohorts(client, demo) -> None:
    """Sign-ups identified their devices and set their plan; both saved cohorts have members."""
    body = await gql(client, PERSONS_AND_COHORTS, {"org": demo.organization_id}, token=demo.org_admin_token)
    assert body.get("errors") is None, body
    cohorts = {c["name"]: c["memberCount"] for c in body["data"]["cohorts"]}
    assert set(cohorts) == {"Searched 3+ times in 30 days", "Pro plan"} and all(cohorts.values()), cohorts
    persons = body["data"]["persons"]["persons"]
    assert len(persons) == 5 and all(p["userId"] and p["anonymousIds"] and p["properties"]["plan"] for p in persons)


EXPERIMENTS = """query { experiments(status: RUNNING) { id key winner confidence variants { key views conversionRate } } }"""
EXPERIMENT_RESULTS = """query($id: ID!) { experimentResults(experimentId: $id) { srmPValue srmFlagged daysRunning
  metrics { key analysis { winner variants { key absolute { pValue } } } } } }"""


async def test_the_demo_runs_a_clear_winner_and_a_sample_ratio_mismatch(client, demo) -> None:
    listed = {e["key"]: e for e in (await gql(client, EXPERIMENTS, token=demo.org_admin_token))["data"]["experiments"]}
    checkout, checklist = listed["one-page-checkout"], listed["onboarding-checklist"]
    assert checkout["winner"] == "one-page" and checkout["confidence"] > 0.99, checkout
    control, one_page = checkout["variants"]
    assert one_page["conversionRate"] > control["conversionRate"] and min(control["views"], one_page["views"]) > 1000
    clean = (await gql(client, EXPERIMENT_RESULTS, {"id": checkout["id"]}, token=demo.org_admin_token))["data"]["experimentResults"]
    assert clean["srmFlagged"] is False and 13 < clean["daysRunning"] < 15
    skewed = (await gql(client, EXPERIMENT_RESULTS, {"id": checklist["id"]}, token=demo.org_admin_token))["data"]["experimentResults"]
    assert skewed["srmFlagged"] is True and skewed["srmPValue"] < 0.001


SERVICES_MARKET = """
query($org: ID!, $half: TimeRangeInput!) {
  serviceMetrics(organizationId: $org, range: {preset: LAST_30_DAYS}) {
    total { executions errors p50Ms p95Ms p99Ms averageMs } services { serviceId } slowestServices { serviceId }
    errorCodes { code errors } }
  marketplaceMetrics(organizationId: $org, range: {preset: LAST_30_DAYS}) {
    total { searches zeroResultSearches views conversions conversionRate sales { amountMinor } }
    topQueries { query } zeroResultQueries { query } topServices { serviceId } topCategories { category } funnel { count } }
  revenueMetrics(organizationId: $org, range: $half, granularity: MONTH) {
    gmv { amountMinor } takeRates { rate } creatorEarnings { amountMinor } transactions averageOrderValue { amountMinor }
    arpu { amountMinor } mrr { amountMinor } topCreators { creatorId }
    mrrMonths { mrr new { customerCount } reactivation { customerCount } expansion { customerCount }
      contraction { customerCount } churn { customerCount } } }
}"""


async def test_the_services_marketplace_answers_every_marketplace_query(client, demo) -> None:
    half = {"from": (datetime.now(UTC) - timedelta(days=200)).isoformat()}
    body = await gql(client, SERVICES_MARKET, {"org": demo.services_organization_id, "half": half}, token=demo.admin_token)
    assert body.get("errors") is None, body
    services, market, money = (body["data"][k] for k in ("serviceMetrics", "marketplaceMetrics", "revenueMetrics"))
    total = services["total"]
    assert total["executions"] > 1000 and total["errors"] > 0 and total["p50Ms"] < total["p95Ms"] <= total["p99Ms"], total
    assert len(services["services"]) == 6 and services["slowestServices"][0]["serviceId"] == "voiceover"
    assert {c["code"] for c in services["errorCodes"]} == {"TIMEOUT", "UPSTREAM_502", "QUOTA_EXCEEDED"}
    counts = market["total"]
    assert counts["searches"] > counts["views"] > counts["conversions"] > 0 and counts["zeroResultSearches"] > 0, counts
    assert market["topQueries"] and market["zeroResultQueries"] and market["topServices"] and market["topCategories"]
    assert [step["count"] for step in market["funnel"]][2] > 0
    assert money["gmv"] and money["takeRates"][0]["rate"] > 0 and money["transactions"] > 0 and money["mrr"], money
    assert money["averageOrderValue"] and money["arpu"] and money["creatorEarnings"] and money["topCreators"]
    moved = {kind for month in money["mrrMonths"] for kind in ("new", "reactivation", "expansion", "contraction", "churn")
             if month[kind]["customerCount"]}  # fmt: skip
    assert moved == {"new", "reactivation", "expansion", "contraction", "churn"}, money["mrrMonths"]


def test_the_services_marketplace_generator_is_deterministic_and_in_the_past() -> None:
    from app.services.demo_data import services_market

    timeline = services_market.services_timeline(NOW)
    creators = PROFILES[:2]
    first = list(services_market.generate_service_events(timeline=timeline, creator_profiles=creators))
    again = list(services_market.generate_service_events(timeline=timeline, creator_profiles=creators))
    assert first == again and len({e["event_id"] for e in first}) == len(first)
    assert all(e["occurred_at"] < NOW for e in first)
    assert {e["type"] for e in first} == {"service.executed", "marketplace.searched", "marketplace.viewed",
                                          "marketplace.converted", "subscription.charged"}  # fmt: skip


LISTINGS_AND_CAMPAIGNS = """
query($org: ID!, $since: DateTime!) {
  platformKpis(organizationId: $org) { asOf listings { total liveNow upcomingNext30Days thisMonth averagePerOrganization ticketsSold
    averageTicketPrice { amountMinor currency } } }
  platform: platformKpis { people { users creators brands providers } }
  ended: platformGrowth(organizationId: $org, range: {preset: LAST_90_DAYS}, listingStatus: ENDED) { points { ticketsSold } }
  live: platformGrowth(organizationId: $org, range: {preset: LAST_90_DAYS}, listingStatus: LIVE) { points { ticketsSold } }
  campaignPerformance(organizationId: $org, range: {preset: LAST_30_DAYS}, granularity: WEEK) {
    rows { source medium campaign visits uniqueVisitors conversions revenue { amountMinor currency } } }
  costs: campaignPerformance(organizationId: $org, range: {from: $since}, granularity: WEEK) {
    campaigns { campaign visits conversions revenue { amountMinor } cost { amountMinor } roiPercent { currency percent } } }
}"""


async def test_the_demo_has_ticketed_events_and_campaigns_with_tagged_costs(client, demo) -> None:
    """Two workshops a month (one live now, some ahead), their tickets, and campaign visitors
    who buy them; the search ads are tagged with the brand campaign (a cost on the 12th of each
    month: 62 days always hold one)."""
    since = (datetime.now(UTC) - timedelta(days=62)).isoformat()
    body = await gql(client, LISTINGS_AND_CAMPAIGNS, {"org": demo.organization_id, "since": since}, token=demo.admin_token)
    assert body.get("errors") is None, body
    listings = body["data"]["platformKpis"]["listings"]
    # The open studio night, and a regular workshop while one runs (18:00 to 21:00 Berlin on the 10th and 24th).
    as_of = datetime.fromisoformat(body["data"]["platformKpis"]["asOf"])
    timeline = Timeline.ending(as_of, timezone="Europe/Berlin")
    start, end = demo_listings.WORKSHOP_HOURS
    workshops = demo_listings.workshop_dates(timeline)
    workshops_live = sum(timeline.local(d, start) <= as_of < timeline.local(d, end) for d in workshops)
    assert listings["total"] >= 26 and listings["liveNow"] == 1 + workshops_live and listings["upcomingNext30Days"] >= 1
    assert listings["thisMonth"] >= 2 and listings["ticketsSold"] > 1000
    assert listings["averageTicketPrice"] == [{"amountMinor": 2500, "currency": "EUR"}]
    assert sum(p["ticketsSold"] for p in body["data"]["ended"]["points"]) > 100
    assert sum(p["ticketsSold"] for p in body["data"]["live"]["points"]) >= 0
    rows = {r["campaign"]: r for r in body["data"]["campaignPerformance"]["rows"]}
    assert {"spring", "stories", "brand"} <= set(rows)
    for name in ("spring", "stories", "brand"):
        assert rows[name]["visits"] > 20 and 0 < rows[name]["conversions"] < rows[name]["visits"] and rows[name]["revenue"]
    campaigns = {c["campaign"]: c for c in body["data"]["costs"]["campaigns"]}
    brand = campaigns["brand"]
    people = body["data"]["platform"]["people"]
    assert people["creators"] >= 2 and people["brands"] >= 2 and people["providers"] >= 3 and people["users"] >= 3
    assert brand["cost"] and brand["roiPercent"] and -100 < brand["roiPercent"][0]["percent"] < 1000


SCANNING = """query($org: ID!) { scanningHealth(organizationId: $org, range: {preset: LAST_24_HOURS}) {
  scans failures failureRate byErrorType { errorType count } devices { deviceId scans failures lastErrorType }
  recentErrors { errorType deviceId ticketId code listingId } } }"""
DEMO_TICKET = """query($org: ID!, $t: String!) { ticket(organizationId: $org, ticketId: $t) {
  status listingTitle scans { errorType } } }"""


async def test_the_demo_doors_show_scan_errors_of_each_kind_at_two_gates(client, demo) -> None:
    """The workshop live now: its tickets scanned at two gates, the south one failing most."""
    body = await gql(client, SCANNING, {"org": demo.organization_id}, token=demo.admin_token)
    health = body["data"]["scanningHealth"]
    assert health["failures"] >= 8 and 0 < health["failureRate"] < 0.5, health
    assert all(c["count"] >= 2 for c in health["byErrorType"]), health
    gates = {d["deviceId"]: d for d in health["devices"] if d["deviceId"] in ("gate-north", "gate-south")}
    assert gates["gate-south"]["failures"] > gates["gate-north"]["failures"] > 0, health
    assert health["devices"][0]["deviceId"] == "gate-south" and health["devices"][0]["lastErrorType"], health
    assert {e["errorType"] for e in health["recentErrors"]} == {"INVALID_CODE", "ALREADY_USED", "NETWORK"}
    assert any(e["ticketId"] is None and e["code"] for e in health["recentErrors"]), "an invalid code resolves to no ticket"
    body = await gql(client, DEMO_TICKET, {"org": demo.organization_id, "t": "LIVE-019"}, token=demo.org_admin_token)
    ticket = body["data"]["ticket"]
    assert ticket["status"] == "USED" and ticket["listingTitle"] == "Open studio night", body
    assert [s["errorType"] for s in ticket["scans"]] == [None, "ALREADY_USED"]


OPERATIONS = """
query($org: ID!) {
  failedPaymentStats(organizationId: $org) { windows { window failed successful failureRate } byReason { reason count }
                                             byStatus { status count } }
  resolved: failedPayments(organizationId: $org, range: {preset: LAST_7_DAYS}, status: RESOLVED) {
    payments { reason note resolvedBy resolvedAt retryRequestedAt } }
  retried: failedPayments(organizationId: $org, range: {preset: LAST_7_DAYS}, status: RETRY_REQUESTED) {
    payments { reason note retryRequestedAt } }
  hostWebhookFailures(organizationId: $org, range: {preset: LAST_7_DAYS}) {
    count byEndpoint { endpoint count } byStatusCode { statusCode count } recent { endpoint statusCode error attempt } }
  dead: deliveries(organizationId: $org, status: DEAD) { deliveries { kind attemptCount maxAttempts lastError
    payload attempts { number statusCode error } } }
  delivered: deliveries(organizationId: $org, status: DELIVERED) { deliveries { kind attemptCount
    payload attempts { number statusCode error } } }
  webhookHealth(organizationId: $org) { dead }
}"""


async def test_the_demo_shows_failed_payments_and_dead_and_retried_webhooks(client, demo) -> None:
    from app.services.demo_data.operations import HOST_WEBHOOK_FAILURES

    body = await gql(client, OPERATIONS, {"org": demo.organization_id}, token=demo.org_admin_token)
    assert "errors" not in body, body
    data = body["data"]
    month = {w["window"]: w for w in data["failedPaymentStats"]["windows"]}["LAST_30_DAYS"]
    assert month["failed"] > 5 and month["successful"] > month["failed"] and 0 < month["failureRate"] < 0.5, month
    assert {"card_declined", "insufficient_funds", "expired_card", "processing_error"} <= {
        r["reason"] for r in data["failedPaymentStats"]["byReason"]}
    statuses = {s["status"]: s["count"] for s in data["failedPaymentStats"]["byStatus"]}
    assert statuses["RESOLVED"] >= 1 and statuses["RETRY_REQUESTED"] >= 1 and statuses["OPEN"] > 0, statuses
    resolved = {p["reason"]: p for p in data["resolved"]["payments"]}
    assert resolved["processing_error"]["retryRequestedAt"] and resolved["card_declined"]["resolvedBy"] == "demo-seed"
    assert {"expired_card", "insufficient_funds"} <= {p["reason"] for p in data["retried"]["payments"]}

    hooks = data["hostWebhookFailures"]
    within_six_days = sum(1 for *_, hours in HOST_WEBHOOK_FAILURES if hours < 24 * 6)
    assert within_six_days <= hooks["count"] <= len(HOST_WEBHOOK_FAILURES), hooks
    assert len(hooks["byEndpoint"]) >= 3 and None in {s["statusCode"] for s in hooks["byStatusCode"]}

    [dead] = [d for d in data["dead"]["deliveries"] if d["kind"] == "payment.retry_requested"]
    assert dead["attemptCount"] == dead["maxAttempts"] == len(dead["attempts"]) and dead["lastError"]
    assert all(a["error"] for a in dead["attempts"]) and dead["payload"]["failureReason"] == "expired_card"
    [retried] = [d for d in data["delivered"]["deliveries"] if d["kind"] == "payment.retry_requested"]
    assert [a["statusCode"] for a in retried["attempts"]] == [500, None, 200] and retried["attemptCount"] == 3
    assert retried["payload"]["failureReason"] == "processing_error"
    assert data["webhookHealth"]["dead"] >= 1
