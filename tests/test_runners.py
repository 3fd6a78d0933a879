"""Reports as query runners: a repeated report reads nothing, a change shows in the next
answer, and a cached answer never crosses a tenant or a permission."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from app.result_cache import ResultCache
from app.runners import QueryRunner, frozen
from app.services.pnl import PnlQuery
from app.services.revenue.reports import RevenueSummaryQuery
from tests.support.graphql import error_codes, gql
from tests.support.tenants import Tenant

SUMMARY = """query($org: ID, $p: ID) { revenueSummary(organizationId: $org, profileId: $p, range: {preset: LAST_7_DAYS}) {
  total { amountMinor currency } transactions converted { total { amountMinor currency } missingRates } } }"""
PUBLISH = """mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted rejected { field reason } } }"""
SETTINGS = """mutation($c: String, $r: [ExchangeRateInput!]) {
  updateMoneySettings(reportingCurrency: $c, rates: $r) { reportingCurrency } }"""
PNL = """query { pnl(range: {preset: LAST_7_DAYS}, granularity: DAY) { totals { currency costs } } }"""
COST = """mutation($d: Date!) { createCost(category: TOOLS, amountMinor: 1200, currency: "EUR", date: $d) { id } }"""


def booking(tenant: Tenant | Any, amount: int) -> dict[str, Any]:
    return {"eventId": f"b-{uuid.uuid4().hex[:10]}", "type": "BOOKING_COMPLETED", "profileId": tenant.profile_id,
            "amountMinor": amount, "currency": "EUR", "occurredAt": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}  # fmt: skip


async def summary(client: Any, token: str, **ids: Any) -> dict[str, Any]:
    body = await gql(client, SUMMARY, {"org": ids.get("org"), "p": ids.get("profile")}, token=token)
    assert body.get("errors") is None, body
    return body["data"]["revenueSummary"]


async def book(client: Any, tenant: Tenant, worker: Any, amount: int) -> None:
    body = await gql(client, PUBLISH, {"e": [booking(tenant, amount)]}, token=tenant.service_token)
    assert body["data"]["publishDomainEvents"]["accepted"] == 1, body
    await worker.drain()


async def test_a_repeated_report_reads_nothing_until_the_worker_processes_more(client, worker, tenant):
    await book(client, tenant, worker, 5_000)
    reads = RevenueSummaryQuery.fetches
    first = await summary(client, tenant.org_admin_token)
    assert RevenueSummaryQuery.fetches == reads + 1
    assert await summary(client, tenant.org_admin_token) == first
    assert RevenueSummaryQuery.fetches == reads + 1, "the second answer came from the cache"
    assert first["total"] == [{"amountMinor": 5_000, "currency": "EUR"}]

    await book(client, tenant, worker, 700)
    after = await summary(client, tenant.org_admin_token)
    assert after["total"] == [{"amountMinor": 5_700, "currency": "EUR"}] and after["transactions"] == 2
    assert RevenueSummaryQuery.fetches == reads + 2


async def test_another_organizations_events_leave_an_answer_cached(client, worker, tenant, other_tenant):
    await book(client, tenant, worker, 1_000)
    await summary(client, tenant.org_admin_token)
    reads = RevenueSummaryQuery.fetches
    await book(client, other_tenant, worker, 9_999)
    mine = await summary(client, tenant.org_admin_token)
    assert RevenueSummaryQuery.fetches == reads and mine["total"] == [{"amountMinor": 1_000, "currency": "EUR"}]
    theirs = await summary(client, other_tenant.org_admin_token)
    assert theirs["total"] == [{"amountMinor": 9_999, "currency": "EUR"}]


async def test_a_settings_change_shows_in_the_next_answer(client, worker, tenant):
    await book(client, tenant, worker, 2_000)
    assert (await summary(client, tenant.org_admin_token))["converted"] is None  # no reporting currency yet
    body = await gql(client, SETTINGS, {"c": "EUR", "r": []}, token=tenant.org_admin_token)
    assert body.get("errors") is None, body
    converted = (await summary(client, tenant.org_admin_token))["converted"]
    assert converted == {"total": {"amountMinor": 2_000, "currency": "EUR"}, "missingRates": []}

    before = await gql(client, PNL, token=tenant.org_admin_token)
    assert before["data"]["pnl"]["totals"][0]["costs"] == 0
    today = datetime.now(UTC).date().isoformat()
    assert (await gql(client, COST, {"d": today}, token=tenant.org_admin_token)).get("errors") is None
    after = await gql(client, PNL, token=tenant.org_admin_token)
    assert after["data"]["pnl"]["totals"][0]["costs"] == 1_200


async def test_a_cached_answer_is_only_handed_to_who_may_read_it(client, worker, tenant, other_tenant):
    await book(client, tenant, worker, 3_000)
    mine = await summary(client, tenant.provider_token, profile=tenant.profile_id)
    assert mine["total"] == [{"amountMinor": 3_000, "currency": "EUR"}]
    for token in (other_tenant.org_admin_token, other_tenant.provider_token):
        body = await gql(client, SUMMARY, {"org": None, "p": tenant.profile_id}, token=token)
        assert error_codes(body) == ["NOT_FOUND"], body
    other_profile = await gql(client, SUMMARY, {"org": None, "p": tenant.profile_id}, token=tenant.provider_token)
    assert other_profile["data"]["revenueSummary"] == mine
    sibling = await gql(client, SUMMARY, {"org": None, "p": str(tenant.other_profile.id)}, token=tenant.provider_token)
    assert error_codes(sibling) == ["NOT_FOUND"]


def test_inputs_make_one_key_whatever_their_order():
    class Probe(QueryRunner[None, None, None]):
        kind = "probe"

    one = Probe(viewer=None, a=[1, 2], b={"x": datetime(2026, 1, 1, tzinfo=UTC), "y": None})
    two = Probe(viewer=None, b={"y": None, "x": datetime(2026, 1, 1, tzinfo=UTC)}, a=[1, 2])
    assert one.cache_key(None) == two.cache_key(None)  # type: ignore[arg-type]
    assert frozen([1, 2]) != frozen([2, 1])
    assert PnlQuery.kind == "pnl"


@pytest.mark.slow
def test_a_worker_in_another_process_invalidates_the_apis_answers(split_stack):
    """The worker announces what it processed on the bus; the API process drops its answers."""
    tenant = split_stack.tenant()
    with httpx.Client(base_url=split_stack.base_url, timeout=10) as http:

        def ask() -> dict[str, Any]:
            response = http.post("/graphql", json={"query": SUMMARY, "variables": {"org": None, "p": None}},
                                 headers={"Authorization": f"Bearer {tenant.org_admin_token}"})  # fmt: skip
            body = response.json()
            assert body.get("errors") is None, body
            return body["data"]["revenueSummary"]

        assert ask()["transactions"] == 0
        assert ask()["transactions"] == 0  # now kept by the API process
        published = http.post("/graphql", json={"query": PUBLISH, "variables": {"e": [booking(tenant, 4_200)]}},
                              headers={"Authorization": f"Bearer {tenant.service_token}"})  # fmt: skip
        assert published.json()["data"]["publishDomainEvents"]["accepted"] == 1
        deadline = time.monotonic() + 10  # far below the answers' 30 s age limit
        while (answer := ask())["transactions"] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert answer["total"] == [{"amountMinor": 4_200, "currency": "EUR"}]


@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set")
async def test_answers_and_data_versions_are_shared_through_redis():
    """Two processes' caches: an answer one computed serves the other, and a change announced
    by either (or by a worker) makes it stale for both, with no event bus involved."""
    one, two = ResultCache(), ResultCache()
    one.share(os.environ["REDIS_URL"])
    two.share(os.environ["REDIS_URL"])
    org, elsewhere = str(uuid.uuid4()), str(uuid.uuid4())
    key = ("probe", org)
    try:
        found, _, stamp = await one.lookup(key, [org], 30)
        assert not found and stamp is not None
        await one.store(key, {"views": 7}, stamp, 30)
        found, answer, _ = await two.lookup(key, [org], 30)
        assert found and answer == {"views": 7}

        await two.announce([elsewhere])  # another organization's change
        assert (await one.lookup(key, [org], 30))[:2] == (True, {"views": 7})
        await two.announce([org])
        assert (await one.lookup(key, [org], 30))[0] is False
        assert (await two.lookup(key, [org], 30))[0] is False
    finally:
        await one.close()
        await two.close()
