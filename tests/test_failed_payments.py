"""Failed payments and the host platform's failed webhooks: the report and statistics equal a
plain reading of what was published; resolving and requesting a retry follow their rules,
are audited, and the retry request reaches the host platform's webhook, signed; nothing of
one organization shows in another's answers."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest_asyncio
from standardwebhooks import Webhook

from app.services.notifications import sender
from app.settings import Settings, override_settings
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.receivers import WebhookReceiver
from tests.support.settings import settings_with
from tests.support.tenants import Tenant

PUBLISH = """mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
TRACK = "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted rejected { index field reason } } }"
LIST = """query($org: ID, $range: TimeRangeInput!, $reason: String, $status: FailedPaymentStatus, $first: Int!, $after: String) {
  failedPayments(organizationId: $org, range: $range, failureReason: $reason, status: $status, first: $first, after: $after) {
    range { from to }
    payments { organizationId organizationName transactionId occurredAt amountMinor currency reason orderId customerId
               status note retryRequestedBy retryRequestedAt resolvedBy resolvedAt }
    endCursor } }"""
STATS = """query($org: ID) { failedPaymentStats(organizationId: $org) {
  organizationId windows { window failed successful failureRate } byReason { reason count } byStatus { status count } } }"""
RESOLVE = """mutation($org: ID!, $t: String!, $r: String!) {
  resolveFailedPayment(organizationId: $org, transactionId: $t, reason: $r) { transactionId status note resolvedBy resolvedAt
    retryRequestedAt } }"""
RETRY = """mutation($org: ID!, $t: String!, $r: String!) {
  requestPaymentRetry(organizationId: $org, transactionId: $t, reason: $r) { transactionId status note retryRequestedBy
    retryRequestedAt resolvedAt } }"""
AUDIT = """query($org: ID, $action: String) { auditLog(organizationId: $org, action: $action) {
  action target actor role before after reason } }"""
CHANNEL = """mutation($url: String!) { createNotificationChannel(kind: WEBHOOK, name: "Host platform", url: $url,
  kinds: ["payment.retry_requested"]) { secret channel { id } } }"""
DELIVERIES = """query($channel: ID) { deliveries(channelId: $channel) { deliveries { id kind status payload attemptCount } } }"""
HOOKS = """query($org: ID, $range: TimeRangeInput!, $recent: Int) {
  hostWebhookFailures(organizationId: $org, range: $range, recent: $recent) {
    organizationId count byEndpoint { endpoint count } byStatusCode { statusCode count } byError { error count }
    recent { organizationId eventId occurredAt endpoint eventType statusCode error attempt maxAttempts } } }"""
LAST_30 = {"preset": "LAST_30_DAYS"}
REASONS = ["card_declined", "insufficient_funds", "expired_card", None, "card_declined", "fraud_suspected", "processing_error"]


def failure(n: int, at: datetime, reason: str | None, *, amount: int | None = 1_000, buyer: str = "buyer") -> dict[str, Any]:
    """A payment.failed as a payment service publishes it."""
    event: dict[str, Any] = {"eventId": f"pf-{uuid.uuid4().hex[:10]}-{n}", "type": "PAYMENT_FAILED", "occurredAt": at.isoformat(),
                             "userId": f"{buyer}-{n}", "properties": {"orderId": f"order-{n}"}}  # fmt: skip
    if reason is not None:
        event["properties"]["reason"] = reason
    if amount is not None:
        event |= {"amountMinor": amount + n, "currency": "EUR"}
    return event


def sale(n: int, at: datetime, **properties: Any) -> dict[str, Any]:
    return {"eventId": f"ok-{uuid.uuid4().hex[:10]}-{n}", "type": "ORDER_PAID", "occurredAt": at.isoformat(),
            "userId": f"payer-{n}", "amountMinor": 2_000, "currency": "EUR", "properties": {"orderId": f"paid-{n}", **properties}}  # fmt: skip


async def publish(client: Any, tenant: Tenant, events: list[dict[str, Any]]) -> dict[str, Any]:
    return (await gql_data(client, PUBLISH, {"e": events}, tenant.service_token))["publishDomainEvents"]


async def seed(client: Any, worker: Any, tenant: Tenant, now: datetime) -> tuple[list[dict[str, Any]], list[datetime]]:
    """Failures and sales spread over 40 days; returns the failures and the sales' times."""
    ages = [timedelta(hours=h) for h in (1, 5, 30, 50, 24 * 6, 24 * 9, 24 * 20, 24 * 29, 24 * 35)]
    failures = [failure(n, now - age, REASONS[n % len(REASONS)], amount=None if n == 3 else 1_000) for n, age in enumerate(ages)]
    sale_ages = [timedelta(hours=h) for h in (2, 3, 40, 24 * 8, 24 * 25, 24 * 32)]
    sales = [sale(n, now - age) for n, age in enumerate(sale_ages)]
    pending = sale(99, now - timedelta(hours=4), status="pending")  # not a successful payment (yet)
    refund = {"eventId": f"rf-{uuid.uuid4().hex[:10]}", "type": "ORDER_REFUNDED", "occurredAt": (now - timedelta(hours=1)).isoformat(),
              "amountMinor": 2_000, "currency": "EUR", "properties": {"orderId": "paid-0"}}  # fmt: skip
    done = await publish(client, tenant, failures + sales + [pending, refund])
    assert done["rejected"] == [], done
    await worker.drain()
    return failures, [now - age for age in sale_ages]


def reason_of(event: dict[str, Any]) -> str:
    return event["properties"].get("reason") or "unknown"


async def test_the_statistics_equal_a_plain_count_of_what_was_published(client, worker, tenant, other_tenant) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    failures, sold = await seed(client, worker, tenant, now)
    await publish(client, other_tenant, [failure(50, now - timedelta(hours=2), "other_tenant_reason")])
    stats = (await gql_data(client, STATS, {}, tenant.org_admin_token))["failedPaymentStats"]
    assert stats["organizationId"] == tenant.org_id
    for window, span in (("LAST_24_HOURS", timedelta(hours=24)), ("LAST_7_DAYS", timedelta(days=7)), ("LAST_30_DAYS", timedelta(days=30))):
        failed = sum(1 for f in failures if datetime.fromisoformat(f["occurredAt"]) >= now - span)
        successful = sum(1 for at in sold if at >= now - span)
        [figures] = [w for w in stats["windows"] if w["window"] == window]
        assert (figures["failed"], figures["successful"]) == (failed, successful), (window, figures)
        assert abs(figures["failureRate"] - failed / (failed + successful)) < 1e-12
    recent = [f for f in failures if datetime.fromisoformat(f["occurredAt"]) >= now - timedelta(days=30)]
    expected = sorted(Counter(reason_of(f) for f in recent).items(), key=lambda item: (-item[1], item[0]))
    assert [(r["reason"], r["count"]) for r in stats["byReason"]] == expected
    assert {s["status"]: s["count"] for s in stats["byStatus"]} == {"OPEN": len(recent), "RETRY_REQUESTED": 0, "RESOLVED": 0}
    # a platform admin sees every organization's together, or the one named
    everyone = (await gql_data(client, STATS, {}, tenant.admin_token))["failedPaymentStats"]
    assert everyone["organizationId"] is None
    assert "other_tenant_reason" in {r["reason"] for r in everyone["byReason"]}
    named = (await gql_data(client, STATS, {"org": tenant.org_id}, tenant.admin_token))["failedPaymentStats"]
    assert named == stats


async def test_the_list_filters_and_pages_like_a_plain_reading(client, worker, tenant, other_tenant) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    failures, _ = await seed(client, worker, tenant, now)
    await publish(client, other_tenant, [failure(60, now - timedelta(hours=2), "card_declined")])
    inside = [f for f in failures if datetime.fromisoformat(f["occurredAt"]) >= now - timedelta(days=29)]
    expected = sorted(inside, key=lambda f: (f["occurredAt"], f["eventId"]), reverse=True)
    seen, after = [], None
    while True:
        page = (await gql_data(client, LIST, {"range": LAST_30, "first": 2, "after": after}, tenant.org_admin_token))["failedPayments"]
        seen += page["payments"]
        after = page["endCursor"]
        if after is None:
            break
    assert [p["transactionId"] for p in seen] == [f["eventId"] for f in expected if _in_range(f, page["range"])]
    first = {p["transactionId"]: p for p in seen}[failures[0]["eventId"]]
    assert (first["amountMinor"], first["currency"], first["reason"], first["orderId"], first["customerId"], first["status"]) == (
        1_000, "EUR", "card_declined", "order-0", "u:buyer-0", "OPEN")
    no_amount = {p["transactionId"]: p for p in seen}[failures[3]["eventId"]]
    assert (no_amount["amountMinor"], no_amount["currency"], no_amount["reason"]) == (None, None, "unknown")
    assert {p["organizationId"] for p in seen} == {tenant.org_id}
    declined = (await gql_data(client, LIST, {"range": LAST_30, "first": 100, "reason": "card_declined"}, tenant.org_admin_token))
    assert [p["transactionId"] for p in declined["failedPayments"]["payments"]] == [
        p["transactionId"] for p in seen if p["reason"] == "card_declined"]
    bad = await gql(client, LIST, {"range": LAST_30, "first": 101}, token=tenant.org_admin_token)
    assert error_codes(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "first"
    bad = await gql(client, LIST, {"range": LAST_30, "first": 5, "after": "nonsense"}, token=tenant.org_admin_token)
    assert bad["errors"][0]["extensions"]["field"] == "after"
    theirs = await gql(client, LIST, {"org": tenant.org_id, "range": LAST_30, "first": 5}, token=other_tenant.org_admin_token)
    assert error_codes(theirs) == ["NOT_FOUND"]


def _in_range(event: dict[str, Any], span: dict[str, str]) -> bool:
    at = datetime.fromisoformat(event["occurredAt"])
    return datetime.fromisoformat(span["from"]) <= at < datetime.fromisoformat(span["to"])


@pytest_asyncio.fixture
async def host_receiver(app: Any, settings: Settings) -> AsyncIterator[tuple[WebhookReceiver, Settings]]:
    """The host platform's webhook receiver, and settings that let the app call it locally."""
    local = settings_with(settings, notification_allow_private=True, notification_allow_http=True,
                          notification_backoff_base_seconds=0.05, notification_timeout_seconds=2.0)  # fmt: skip
    app.state.settings = local
    override_settings(local)
    hook = WebhookReceiver()
    await hook.start()
    yield hook, local
    await hook.stop()
    app.state.settings = settings
    override_settings(settings)


async def test_a_retry_request_is_audited_and_reaches_the_host_platform_signed(client, worker, tenant, host_receiver) -> None:
    receiver, local = host_receiver
    admin, org = tenant.org_admin_token, tenant.org_id
    created = (await gql_data(client, CHANNEL, {"url": receiver.url}, admin))["createNotificationChannel"]
    now = datetime.now(UTC).replace(microsecond=0)
    event = failure(1, now - timedelta(minutes=5), "insufficient_funds", buyer="retry-buyer")
    assert (await publish(client, tenant, [event]))["rejected"] == []
    asked = (await gql_data(client, RETRY, {"org": org, "t": event["eventId"], "r": "Customer topped up"}, admin))
    asked = asked["requestPaymentRetry"]
    assert (asked["status"], asked["note"], asked["resolvedAt"]) == ("RETRY_REQUESTED", "Customer topped up", None)
    assert asked["retryRequestedBy"] and asked["retryRequestedAt"]

    for _ in range(50):
        await sender.send_due(local)
        if receiver.received:
            break
        await asyncio.sleep(0.1)
    [request] = receiver.received
    body = Webhook(created["secret"]).verify(request.body, request.headers)
    assert body["type"] == "payment.retry_requested"
    data = body["data"]
    assert (data["transactionId"], data["organizationId"], data["orderId"], data["customerId"]) == (
        event["eventId"], org, "order-1", "u:retry-buyer-1")
    assert (data["amountMinor"], data["currency"], data["failureReason"], data["reason"]) == (1_001, "EUR", "insufficient_funds",
                                                                                            "Customer topped up")
    [delivery] = (await gql_data(client, DELIVERIES, {"channel": created["channel"]["id"]}, admin))["deliveries"]["deliveries"]
    assert (delivery["kind"], delivery["status"], delivery["id"]) == ("payment.retry_requested", "DELIVERED",
                                                                      request.headers["webhook-id"])

    twice = await gql(client, RETRY, {"org": org, "t": event["eventId"], "r": "again"}, token=admin)
    assert error_codes(twice) == ["BAD_USER_INPUT"] and twice["errors"][0]["extensions"]["field"] == "transactionId"
    resolved = (await gql_data(client, RESOLVE, {"org": org, "t": event["eventId"], "r": "Paid on retry"}, admin))
    resolved = resolved["resolveFailedPayment"]
    assert (resolved["status"], resolved["note"]) == ("RESOLVED", "Paid on retry")
    assert resolved["resolvedBy"] and resolved["retryRequestedAt"] == asked["retryRequestedAt"]
    for mutation in (RETRY, RESOLVE):
        refused = await gql(client, mutation, {"org": org, "t": event["eventId"], "r": "once more"}, token=admin)
        assert error_codes(refused) == ["BAD_USER_INPUT"] and refused["errors"][0]["extensions"]["field"] == "transactionId"

    trail = []
    for action in ("failed_payment.retry_requested", "failed_payment.resolved"):
        trail += (await gql_data(client, AUDIT, {"action": action}, admin))["auditLog"]
    assert [(e["action"], e["target"], e["role"], e["before"], e["after"], e["reason"]) for e in trail] == [
        ("failed_payment.retry_requested", event["eventId"], "org_admin", {"status": "open"}, {"status": "retry_requested"},
         "Customer topped up"),
        ("failed_payment.resolved", event["eventId"], "org_admin", {"status": "retry_requested"}, {"status": "resolved"},
         "Paid on retry"),
    ]  # fmt: skip
    listed = (await gql_data(client, LIST, {"range": LAST_30, "first": 10, "status": "RESOLVED"}, admin))["failedPayments"]
    assert [p["transactionId"] for p in listed["payments"]] == [event["eventId"]]
    assert receiver.received == [request], "refused acts notify nobody"


async def test_acts_are_checked_and_stay_in_their_organization(client, tenant, other_tenant) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    event = failure(2, now - timedelta(minutes=3), "expired_card")
    assert (await publish(client, tenant, [event]))["rejected"] == []
    org, admin = tenant.org_id, tenant.org_admin_token

    def field_of(body: dict[str, Any]) -> tuple[list[str], str]:
        return error_codes(body), body["errors"][0]["extensions"].get("field")

    assert field_of(await gql(client, RESOLVE, {"org": org, "t": event["eventId"], "r": "  "}, token=admin)) == (
        ["BAD_USER_INPUT"], "reason")
    assert field_of(await gql(client, RESOLVE, {"org": org, "t": "no-such-payment", "r": "x"}, token=admin)) == (
        ["NOT_FOUND"], "transactionId")
    # a sale is not a failed payment
    ok = sale(3, now - timedelta(minutes=2))
    await publish(client, tenant, [ok])
    assert field_of(await gql(client, RETRY, {"org": org, "t": ok["eventId"], "r": "x"}, token=admin)) == (
        ["NOT_FOUND"], "transactionId")
    # another organization's admin: not in their organization, and they cannot name ours
    assert field_of(await gql(client, RESOLVE, {"org": other_tenant.org_id, "t": event["eventId"], "r": "x"},
                              token=other_tenant.org_admin_token)) == (["NOT_FOUND"], "transactionId")  # fmt: skip
    assert field_of(await gql(client, RETRY, {"org": org, "t": event["eventId"], "r": "x"},
                              token=other_tenant.org_admin_token)) == (["NOT_FOUND"], "organizationId")  # fmt: skip
    listed = (await gql_data(client, LIST, {"range": LAST_30, "first": 10}, admin))["failedPayments"]["payments"]
    assert [(p["transactionId"], p["status"]) for p in listed] == [(event["eventId"], "OPEN")]
    # a platform admin acts on any organization's payment, named
    resolved = (await gql_data(client, RESOLVE, {"org": org, "t": event["eventId"], "r": "Card renewed"}, tenant.admin_token))
    assert resolved["resolveFailedPayment"]["status"] == "RESOLVED"


async def test_the_reason_and_webhook_failures_are_checked_at_ingestion(client, tenant) -> None:
    now = datetime.now(UTC)
    long_reason = failure(1, now, "x" * 65)
    bad = [long_reason, failure(2, now, "card_declined") | {"properties": {"reason": 42}},
           hook(1, now, endpoint=None), hook(2, now, statusCode=700), hook(3, now, attempt=4, maxAttempts=3),
           hook(4, now, error="")]  # fmt: skip
    done = await publish(client, tenant, bad)
    assert [(r["index"], r["field"]) for r in done["rejected"]] == [
        (0, "properties.reason"), (1, "properties.reason"), (2, "properties.endpoint"), (3, "properties.statusCode"),
        (4, "properties.attempt"), (5, "properties.error")]  # fmt: skip
    beacon = {"type": "webhook.failed", "properties": {"endpoint": "https://example.test/hook"}}
    tracked = (await gql_data(client, TRACK, {"e": [beacon]}, tenant.ingestion_key))["trackEvents"]
    assert [(r["index"], r["field"]) for r in tracked["rejected"]] == [(0, "type")], "only a service reports them"


def hook(n: int, at: datetime, **properties: Any) -> dict[str, Any]:
    """A webhook.failed as the host platform publishes it."""
    props = {"endpoint": "https://crm.example.test/hooks", "eventType": "order.paid", "statusCode": 500,
             "error": "HTTP 500", "attempt": 1, "maxAttempts": 5} | properties  # fmt: skip
    return {"eventId": f"wf-{uuid.uuid4().hex[:10]}-{n}", "type": "WEBHOOK_FAILED", "occurredAt": at.isoformat(),
            "properties": {k: v for k, v in props.items() if v is not None}}  # fmt: skip


async def test_host_webhook_failures_equal_a_plain_count(client, tenant, other_tenant) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        hook(1, now - timedelta(hours=1)),
        hook(2, now - timedelta(hours=2), statusCode=503, error="HTTP 503", attempt=2),
        hook(3, now - timedelta(hours=3), endpoint="https://mail.example.test/in", statusCode=None, error="timeout", attempt=5),
        hook(4, now - timedelta(days=3), endpoint="https://mail.example.test/in", statusCode=None, error="connection refused"),
        hook(5, now - timedelta(days=3, hours=1), statusCode=410, error=None),
        hook(6, now - timedelta(days=40)),  # outside the range
    ]
    assert (await publish(client, tenant, events))["rejected"] == []
    assert (await publish(client, other_tenant, [hook(9, now - timedelta(hours=1), endpoint="https://theirs.test")]))["rejected"] == []
    found = (await gql_data(client, HOOKS, {"range": LAST_30, "recent": 3}, tenant.org_admin_token))["hostWebhookFailures"]
    inside = [e for e in events if datetime.fromisoformat(e["occurredAt"]) >= now - timedelta(days=29)]
    props = [e["properties"] for e in inside]

    def counted(values: list[Any]) -> list[tuple[Any, int]]:
        return sorted(Counter(values).items(), key=lambda item: (-item[1], item[0] is None, str(item[0])))

    assert found["organizationId"] == tenant.org_id and found["count"] == len(inside)
    assert [(e["endpoint"], e["count"]) for e in found["byEndpoint"]] == counted([p["endpoint"] for p in props])
    assert [(s["statusCode"], s["count"]) for s in found["byStatusCode"]] == counted([p.get("statusCode") for p in props])
    assert [(e["error"], e["count"]) for e in found["byError"]] == counted([p["error"] for p in props if "error" in p])
    assert [r["eventId"] for r in found["recent"]] == [e["eventId"] for e in inside[:3]]
    first = found["recent"][0]
    assert (first["endpoint"], first["eventType"], first["statusCode"], first["error"], first["attempt"], first["maxAttempts"]) == (
        "https://crm.example.test/hooks", "order.paid", 500, "HTTP 500", 1, 5)
    everyone = (await gql_data(client, HOOKS, {"range": LAST_30}, tenant.admin_token))["hostWebhookFailures"]
    assert {"https://theirs.test", "https://crm.example.test/hooks"} <= {e["endpoint"] for e in everyone["byEndpoint"]}
    theirs = await gql(client, HOOKS, {"org": tenant.org_id, "range": LAST_30}, token=other_tenant.org_admin_token)
    assert error_codes(theirs) == ["NOT_FOUND"]


async def test_platform_admins_see_every_organizations_deliveries_together(client, tenant, other_tenant, host_receiver) -> None:
    from app.database import connection
    from app.services.notifications import enqueue_notification

    receiver, _ = host_receiver
    ids = {}
    for owner in (tenant, other_tenant):
        await gql_data(client, CHANNEL, {"url": receiver.url}, owner.org_admin_token)
        assert await enqueue_notification(None, organization_id=owner.organization.id, kind="payment.retry_requested",
                                          payload={"transactionId": f"pf-{owner.org_id}"}) == 1  # fmt: skip
        [mine] = (await gql_data(client, DELIVERIES, {}, owner.org_admin_token))["deliveries"]["deliveries"]
        ids[owner.org_id] = mine["id"]
    every = """query { deliveries(everyOrganization: true, status: PENDING, first: 100) { deliveries { id organizationId } }
      webhookHealth(everyOrganization: true) { pending dead } }"""
    data = await gql_data(client, every, {}, tenant.admin_token)
    seen = {d["id"]: d["organizationId"] for d in data["deliveries"]["deliveries"]}
    assert {seen.get(ids[tenant.org_id]), seen.get(ids[other_tenant.org_id])} == {tenant.org_id, other_tenant.org_id}
    async with connection() as conn:
        pending, dead = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'dead') FROM notification_deliveries")
    assert (data["webhookHealth"]["pending"], data["webhookHealth"]["dead"]) == (pending, dead)
    assert set(error_codes(await gql(client, every, {}, token=tenant.org_admin_token))) == {"FORBIDDEN"}
    both = await gql(client, "query($org: ID) { webhookHealth(organizationId: $org, everyOrganization: true) { dead } }",
                     {"org": tenant.org_id}, token=tenant.admin_token)  # fmt: skip
    assert error_codes(both) == ["BAD_USER_INPUT"] and both["errors"][0]["extensions"]["field"] == "everyOrganization"
