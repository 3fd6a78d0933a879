"""The demo dataset, seeded through the real ingestion service and drained by the real
worker, makes every report a newcomer opens non-empty."""

from __future__ import annotations

from typing import Any

import pytest_asyncio

from app.services.demo import GOV_VISITS, ensure_demo
from tests.conftest import gql

OVERVIEW = """
query($p: ID!) {
  profileOverview(profileId: $p, range: {preset: LAST_30_DAYS}) { views uniqueVisitors inquiries conversions revenue { amountMinor } }
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
    assert data["costSummary"]["entries"] == 3
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
