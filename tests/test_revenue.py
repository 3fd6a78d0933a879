"""Money end to end: domain events published through the API, recorded in the ledger by the
real outbox worker, reports read back through GraphQL and compared with an independent
computation over the events that were sent (tests/money_ledger.py generates them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.database import connection
from tests.conftest import Tenant, gql

PUBLISH = """
mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted duplicates rejected { index field reason } }
}"""


async def publish(client: Any, tenant: Tenant, events: list[dict[str, Any]], *, duplicates: int = 0) -> dict[str, Any]:
    body = await gql(client, PUBLISH, {"e": events}, token=tenant.service_token)
    assert body.get("errors") is None, body
    result = body["data"]["publishDomainEvents"]
    assert result["rejected"] == [] and result["duplicates"] == duplicates, result
    return result


async def ledger(tenant: Tenant) -> dict[str, dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch("SELECT * FROM transactions WHERE organization_id = $1", tenant.organization.id)
    return {r["event_id"]: dict(r) for r in rows}


def _at(minutes_ago: int) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat()


async def test_the_worker_records_each_money_event_once(client, worker, tenant):
    tag = uuid.uuid4().hex[:6]
    pid, partner = tenant.profile_id, str(tenant.other_profile.id)
    events = [
        {"eventId": f"{tag}-b", "type": "BOOKING_COMPLETED", "profileId": pid, "amountMinor": 10_000, "currency": "EUR",
         "userId": "cust-1", "occurredAt": _at(50),
         "properties": {"partnerProfileId": partner, "splitPercent": 60, "platformFeeMinor": 1000, "processorFeeMinor": 290}},
        {"eventId": f"{tag}-g", "type": "GIFT_PURCHASED", "profileId": pid, "amountMinor": 500, "currency": "EUR",
         "anonymousId": "anon-9", "occurredAt": _at(40), "properties": {"category": "flowers"}},
        {"eventId": f"{tag}-s", "type": "SUBSCRIPTION_CHARGED", "profileId": pid, "amountMinor": 999, "currency": "USD",
         "occurredAt": _at(30), "properties": {"status": "pending"}},
        {"eventId": f"{tag}-a", "type": "AFFILIATE_COMMISSION", "amountMinor": 250, "currency": "USD", "occurredAt": _at(30)},
        {"eventId": f"{tag}-o", "type": "ORDER_PAID", "amountMinor": 3000, "currency": "JPY", "userId": "cust-2",
         "occurredAt": _at(20), "properties": {"orderId": f"{tag}-order"}},
        {"eventId": f"{tag}-r", "type": "ORDER_REFUNDED", "amountMinor": 1000, "currency": "JPY",
         "occurredAt": _at(10), "properties": {"orderId": f"{tag}-order"}},
        {"eventId": f"{tag}-f", "type": "PAYMENT_FAILED", "amountMinor": 777, "currency": "EUR", "userId": "cust-3", "occurredAt": _at(5)},
        {"eventId": f"{tag}-f0", "type": "PAYMENT_FAILED", "userId": "cust-3", "occurredAt": _at(5)},
        {"eventId": f"{tag}-p", "type": "PAYOUT_SETTLED", "amountMinor": 5000, "currency": "EUR", "occurredAt": _at(1),
         "properties": {"payoutId": "po-1"}},
    ]  # fmt: skip
    await publish(client, tenant, events)
    await worker.drain()
    rows = await ledger(tenant)
    assert set(rows) == {f"{tag}-{k}" for k in ("b", "g", "s", "a", "o", "r", "f")}
    booking = rows[f"{tag}-b"]
    assert (booking["type"], booking["status"], booking["amount_minor"], booking["currency"]) == ("booking", "completed", 10_000, "EUR")
    assert (str(booking["partner_profile_id"]), booking["split_percent"], booking["customer_id"]) == (partner, 60, "u:cust-1")
    assert (booking["platform_fee_minor"], booking["service_fee_minor"], booking["processor_fee_minor"]) == (1000, 0, 290)
    gift = rows[f"{tag}-g"]
    assert (gift["type"], gift["category"], gift["customer_id"]) == ("gift", "flowers", "a:anon-9")
    assert rows[f"{tag}-s"]["status"] == "pending"
    assert (rows[f"{tag}-a"]["type"], rows[f"{tag}-a"]["profile_id"]) == ("affiliate", None)
    assert rows[f"{tag}-o"]["status"] == "refunded" and rows[f"{tag}-o"]["amount_minor"] == 3000
    refund = rows[f"{tag}-r"]
    assert (refund["is_refund"], refund["amount_minor"], refund["refund_of"], refund["type"]) == (True, -1000, f"{tag}-o", "order")
    assert (rows[f"{tag}-f"]["status"], rows[f"{tag}-f"]["amount_minor"]) == ("failed", 777)
    async with connection() as conn:
        payouts = await conn.fetch("SELECT payout_id, amount_minor FROM payouts WHERE organization_id = $1", tenant.organization.id)
    assert [tuple(p) for p in payouts] == [("po-1", 5000)]

    # Publishing again changes nothing; so does the worker re-running events it already recorded.
    await publish(client, tenant, events, duplicates=len(events))
    async with connection() as conn:
        await conn.execute("UPDATE outbox SET processed_at = NULL WHERE organization_id = $1", tenant.organization.id)
    await worker.drain()
    assert await ledger(tenant) == rows


async def test_a_refund_before_its_sale_is_linked_when_the_sale_arrives(client, worker, tenant):
    tag = uuid.uuid4().hex[:6]
    await publish(client, tenant, [{"eventId": f"{tag}-r", "type": "ORDER_REFUNDED", "amountMinor": 400, "currency": "USD",
                                    "occurredAt": _at(5), "properties": {"orderId": f"{tag}-1"}}])  # fmt: skip
    await worker.drain()
    assert (await ledger(tenant))[f"{tag}-r"]["refund_of"] is None
    await publish(client, tenant, [{"eventId": f"{tag}-g", "type": "GIFT_PURCHASED", "profileId": tenant.profile_id,
                                    "amountMinor": 900, "currency": "USD", "occurredAt": _at(60),
                                    "properties": {"orderId": f"{tag}-1", "category": "cake"}}])  # fmt: skip
    await worker.drain()
    rows = await ledger(tenant)
    assert rows[f"{tag}-g"]["status"] == "refunded"
    refund = rows[f"{tag}-r"]
    assert (refund["refund_of"], refund["type"], str(refund["profile_id"]), refund["category"]) == (
        f"{tag}-g", "gift", tenant.profile_id, "cake"
    )


async def test_money_properties_are_checked_at_ingestion(client, tenant):
    base = {"type": "BOOKING_COMPLETED", "profileId": tenant.profile_id, "amountMinor": 100, "currency": "EUR"}
    bad = [
        {**base, "eventId": f"x-{uuid.uuid4()}", "properties": {"platformFeeMinor": -1}},
        {**base, "eventId": f"x-{uuid.uuid4()}", "properties": {"splitPercent": 100}},
        {**base, "eventId": f"x-{uuid.uuid4()}", "properties": {"partnerProfileId": "nope"}},
        {**base, "eventId": f"x-{uuid.uuid4()}", "properties": {"processorFeeMinor": 1.5}},
        {"eventId": f"x-{uuid.uuid4()}", "type": "AFFILIATE_COMMISSION"},
        {"eventId": f"x-{uuid.uuid4()}", "type": "PAYOUT_SETTLED", "amountMinor": 5, "currency": "eur"},
    ]
    body = await gql(client, PUBLISH, {"e": bad}, token=tenant.service_token)
    result = body["data"]["publishDomainEvents"]
    assert result["accepted"] == 0
    assert [r["field"] for r in result["rejected"]] == [
        "properties.platformFeeMinor", "properties.splitPercent", "properties.partnerProfileId",
        "properties.processorFeeMinor", "amountMinor", "currency",
    ]  # fmt: skip
