"""Notifications end to end on real local servers: a gov alert raised by the worker reaches a
webhook receiver (signature verified with the Standard Webhooks library) and an SMTP server;
a receiver that is down, then answers 500, then is too slow, still gets it with the same
webhook-id; deliveries die after their attempts and come back with a manual retry; nothing
reaches another organization's channel; private destinations are refused."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from standardwebhooks import Webhook

from app.services.notifications import enqueue_notification, sender, signing
from app.settings import Settings, override_settings
from tests.support.fraud_streams import Stream, publish
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.receivers import SmtpReceiver, WebhookReceiver
from tests.support.settings import settings_with
from tests.support.tenants import Tenant

ARMY_IP = "6.1.2.3"  # on the shipped curated gov list
MAX_ATTEMPTS = 5
SPIKE_THRESHOLD = 3

CREATE = """
mutation($org: ID, $kind: NotificationChannelKind!, $name: String!, $url: String, $recipients: [String!], $kinds: [String!]!) {
  createNotificationChannel(organizationId: $org, kind: $kind, name: $name, url: $url, recipients: $recipients, kinds: $kinds) {
    secret channel { id organizationId kind name url recipients kinds enabled }
  }
}"""
DELIVERIES = """
query($org: ID, $status: DeliveryStatus, $channel: ID) {
  deliveries(organizationId: $org, status: $status, channelId: $channel) {
    deliveries { id organizationId channelId kind payload status attemptCount maxAttempts nextAttemptAt lastError
                 deliveredAt attempts { number statusCode error durationMs responseExcerpt } }
    endCursor
  }
}"""
RETRY = "mutation($id: ID!) { retryDelivery(id: $id) { id status attemptCount maxAttempts } }"
HEALTH = "query { webhookHealth { failedLast24h deliveredLast24h pending pendingRetries dead oldestPendingAt } }"
TRACK = "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted rejected { index field reason } } }"


@pytest_asyncio.fixture(scope="module")
async def notify_settings(app: Any, settings: Settings, smtp: SmtpReceiver) -> AsyncIterator[Settings]:
    """Local receivers allowed, small waits: the app and the sender run with these."""
    local = settings_with(
        settings, notification_allow_private=True, notification_allow_http=True, notification_max_attempts=MAX_ATTEMPTS,
        notification_backoff_base_seconds=0.05, notification_backoff_max_seconds=0.2, notification_timeout_seconds=0.5,
        smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False, smtp_from="alerts@pulsegraph.test",
        payment_failed_spike_threshold=SPIKE_THRESHOLD, payment_failed_spike_window_minutes=60,
    )  # fmt: skip
    app.state.settings = local
    override_settings(local)
    yield local
    app.state.settings = settings
    override_settings(settings)


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """Not started: each test starts it when its story has the receiver up."""
    hook = WebhookReceiver()
    yield hook
    await hook.stop()


async def create_channel(client: httpx.AsyncClient, token: str, **variables: Any) -> dict[str, Any]:
    defaults = {"kind": "WEBHOOK", "name": "Ops hook", "kinds": ["gov_alert"]}
    return (await gql_data(client, CREATE, {**defaults, **variables}, token))["createNotificationChannel"]


async def deliveries(client: httpx.AsyncClient, token: str, **variables: Any) -> list[dict[str, Any]]:
    return (await gql_data(client, DELIVERIES, variables, token))["deliveries"]["deliveries"]


async def raise_gov_alert(client: httpx.AsyncClient, worker: Any, tenant: Tenant) -> str:
    event_id = f"notify-{uuid.uuid4().hex}"
    view = {"type": "profile.viewed", "eventId": event_id, "profileId": tenant.profile_id, "anonymousId": "visitor-n",
            "context": {"ip": ARMY_IP}}  # fmt: skip
    tracked = (await gql_data(client, TRACK, {"e": [view]}, tenant.ingestion_key))["trackEvents"]
    assert tracked["rejected"] == [], tracked
    await worker.drain()
    return event_id


async def send_until(settings: Settings, done: Any, *, rounds: int = 60) -> None:
    """Run the sender as the worker would, waiting out the (small) backoff, until `done()`."""
    for _ in range(rounds):
        await sender.send_due(settings)
        if await done():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("not done after the sender's rounds")


async def test_signing_matches_the_specification_example() -> None:
    """The example of the Standard Webhooks specification, signed our way."""
    headers = signing.signed_headers(
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", message_id="msg_p5jXN8AQM9LWM0D4loKWxJek",
        at=datetime.fromtimestamp(1614265330, UTC), body=b'{"test": 2432232314}',
    )  # fmt: skip
    assert headers == {
        "webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "webhook-timestamp": "1614265330",
        "webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
    }
    secret = signing.new_secret()
    assert secret.startswith("whsec_") and len(Webhook(secret)._whsecret) == signing.SECRET_BYTES


async def test_a_gov_alert_reaches_a_flaky_webhook_and_an_inbox(
    client: httpx.AsyncClient, worker: Any, tenant: Tenant, notify_settings: Settings, smtp: SmtpReceiver,
    receiver: WebhookReceiver,
) -> None:  # fmt: skip
    admin = tenant.org_admin_token
    hook = await create_channel(client, admin, url=receiver.url)
    mail = await create_channel(client, admin, kind="EMAIL", name="Ops inbox", recipients=["ops@tenant.test"])
    assert hook["secret"].startswith("whsec_") and mail["secret"] is None
    event_id = await raise_gov_alert(client, worker, tenant)

    # down: nothing listens on the port
    await sender.send_due(notify_settings)
    [pending] = await deliveries(client, admin, channel=hook["channel"]["id"])
    assert (pending["status"], pending["attemptCount"]) == ("PENDING", 1)
    assert pending["attempts"][0]["statusCode"] is None and pending["attempts"][0]["error"]

    async def attempted(n: int) -> bool:
        [d] = await deliveries(client, admin, channel=hook["channel"]["id"])
        return d["attemptCount"] >= n

    await receiver.start()
    receiver.status = 500
    await send_until(notify_settings, lambda: attempted(2))
    receiver.status, receiver.delay = 200, 2.0  # slower than the send timeout
    await send_until(notify_settings, lambda: attempted(3))
    receiver.delay = 0.0
    await send_until(notify_settings, lambda: attempted(4))

    [delivered] = await deliveries(client, admin, channel=hook["channel"]["id"])
    assert delivered["status"] == "DELIVERED" and delivered["deliveredAt"] and delivered["nextAttemptAt"] is None
    codes = [a["statusCode"] for a in delivered["attempts"]]
    assert codes == [None, 500, None, 200], delivered["attempts"]
    assert "timeout" in delivered["attempts"][2]["error"] and delivered["attempts"][1]["responseExcerpt"] == "receiver trouble"
    assert [a["number"] for a in delivered["attempts"]] == [1, 2, 3, 4] and delivered["attempts"][3]["error"] is None

    # every request the receiver saw (the 500, the slow one, the accepted one) carried the same id
    assert len(receiver.received) == 3
    assert {r.headers["webhook-id"] for r in receiver.received} == {delivered["id"]}
    for request in receiver.received:
        body = Webhook(hook["secret"]).verify(request.body, request.headers)
        assert body["type"] == "gov_alert" and body["data"]["eventId"] == event_id
        assert body["data"]["organizationId"] == tenant.org_id and body["data"]["networkName"]
    forged = {**receiver.received[-1].headers, "webhook-id": "msg_forged"}
    with pytest.raises(Exception, match="signature"):
        Webhook(hook["secret"]).verify(receiver.received[-1].body, forged)

    [emailed] = await deliveries(client, admin, channel=mail["channel"]["id"])
    assert emailed["status"] == "DELIVERED" and emailed["attempts"][0]["statusCode"] == 250
    [(recipients, message)] = [(to, m) for to, m in smtp.messages if emailed["id"] in m["Message-ID"]]
    assert recipients == ["ops@tenant.test"] and message["From"] == "alerts@pulsegraph.test"
    assert "gov_alert" in message["Subject"] and event_id in message.get_content()


async def test_a_delivery_dies_after_its_attempts_and_a_manual_retry_brings_it(
    client: httpx.AsyncClient, tenant: Tenant, notify_settings: Settings, receiver: WebhookReceiver
) -> None:
    admin = tenant.org_admin_token
    hook = await create_channel(client, admin, url=receiver.url, kinds=["fraud_alert"])
    before = (await gql_data(client, HEALTH, {}, admin))["webhookHealth"]
    assert await enqueue_notification(None, organization_id=tenant.organization.id, kind="fraud_alert", payload={"n": 1}) == 1

    async def dead() -> bool:
        return bool(await deliveries(client, admin, status="DEAD", channel=hook["channel"]["id"]))

    await send_until(notify_settings, dead)
    [gone] = await deliveries(client, admin, channel=hook["channel"]["id"])
    assert (gone["attemptCount"], gone["maxAttempts"], gone["nextAttemptAt"]) == (MAX_ATTEMPTS, MAX_ATTEMPTS, None)
    assert len(gone["attempts"]) == MAX_ATTEMPTS and gone["lastError"]
    health = (await gql_data(client, HEALTH, {}, admin))["webhookHealth"]
    assert (health["dead"], health["failedLast24h"]) == (before["dead"] + 1, before["failedLast24h"] + 1)
    await sender.send_due(notify_settings)  # dead stays dead
    assert (await deliveries(client, admin, channel=hook["channel"]["id"]))[0]["attemptCount"] == MAX_ATTEMPTS

    await receiver.start()
    retried = (await gql_data(client, RETRY, {"id": gone["id"]}, admin))["retryDelivery"]
    assert (retried["status"], retried["maxAttempts"]) == ("PENDING", MAX_ATTEMPTS + 1)
    await sender.send_due(notify_settings)
    [back] = await deliveries(client, admin, channel=hook["channel"]["id"])
    assert back["status"] == "DELIVERED" and back["attemptCount"] == MAX_ATTEMPTS + 1
    health = (await gql_data(client, HEALTH, {}, admin))["webhookHealth"]
    assert (health["dead"], health["deliveredLast24h"]) == (before["dead"], before["deliveredLast24h"] + 1)
    assert [r.headers["webhook-id"] for r in receiver.received] == [gone["id"]]
    assert error_codes(await gql(client, RETRY, {"id": gone["id"]}, token=admin)) == ["BAD_USER_INPUT"]
    audit = await gql_data(client, 'query { auditLog(action: "notification_delivery.retried") { target } }', {}, admin)
    assert audit["auditLog"] == [{"target": gone["id"]}]


async def test_notifications_reach_only_their_own_organization(
    client: httpx.AsyncClient, worker: Any, tenant: Tenant, other_tenant: Tenant, notify_settings: Settings,
    receiver: WebhookReceiver,
) -> None:  # fmt: skip
    await receiver.start()
    mine = await create_channel(client, tenant.org_admin_token, url=receiver.url + "/mine")
    theirs = await create_channel(client, other_tenant.org_admin_token, url=receiver.url + "/theirs")
    platform = await create_channel(client, tenant.admin_token, url=receiver.url + "/platform", kinds=["gov_alert", "test"])
    assert platform["channel"]["organizationId"] is None
    await raise_gov_alert(client, worker, tenant)
    await sender.send_due(notify_settings)
    assert [r.path for r in receiver.received] == ["/hooks/pulsegraph/mine"]
    assert await deliveries(client, other_tenant.org_admin_token) == []
    [own] = await deliveries(client, tenant.org_admin_token)
    assert own["channelId"] == mine["channel"]["id"]
    # another organization's admin cannot see, retry or test what is not theirs
    assert error_codes(await gql(client, RETRY, {"id": own["id"]}, token=other_tenant.org_admin_token)) == ["NOT_FOUND"]
    test = "mutation($id: ID!) { sendTestNotification(id: $id) { id kind } }"
    assert error_codes(await gql(client, test, {"id": theirs["channel"]["id"]}, token=tenant.org_admin_token)) == ["NOT_FOUND"]
    # platform channels receive platform notifications, and platform admins see them
    assert await enqueue_notification(None, organization_id=None, kind="gov_alert", payload={"platform": True}) == 1
    await sender.send_due(notify_settings)
    assert receiver.received[-1].path == "/hooks/pulsegraph/platform"
    [platform_delivery] = await deliveries(client, tenant.admin_token)
    assert platform_delivery["organizationId"] is None and platform_delivery["payload"] == {"platform": True}
    # the platform's channels are every test's: leave none behind (its deliveries go with it)
    delete = "mutation($id: ID!) { deleteNotificationChannel(id: $id) }"
    await gql_data(client, delete, {"id": platform["channel"]["id"]}, tenant.admin_token)
    assert await deliveries(client, tenant.admin_token) == []


async def test_private_destinations_are_refused_unless_allowed(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, settings: Settings, notify_settings: Settings,
    receiver: WebhookReceiver,
) -> None:  # fmt: skip
    admin = tenant.org_admin_token
    await receiver.start()
    hook = await create_channel(client, admin, url=receiver.url)  # allowed while local destinations are
    strict = settings_with(notify_settings, notification_allow_private=False, notification_allow_http=False)
    app.state.settings = strict
    try:
        for url in ("https://127.0.0.1/hook", "https://10.0.0.8/hook", "https://169.254.169.254/latest",
                    "https://[::1]/hook", "https://localhost/hook", "http://93.184.215.14/hook"):  # fmt: skip
            body = await gql(client, CREATE, {"kind": "WEBHOOK", "name": "x", "url": url, "kinds": ["test"]}, token=admin)
            assert error_codes(body) == ["BAD_USER_INPUT"], (url, body)
            assert body["errors"][0]["extensions"]["field"] == "url"
    finally:
        app.state.settings = notify_settings
    # checked again at send time, after resolving: nothing leaves, the attempt says why
    await gql_data(client, "mutation($id: ID!) { sendTestNotification(id: $id) { id } }", {"id": hook["channel"]["id"]}, admin)
    await sender.send_due(settings_with(notify_settings, notification_allow_private=False))
    [refused] = await deliveries(client, admin, channel=hook["channel"]["id"])
    assert refused["attempts"][0]["error"].startswith("refused: 127.0.0.1 resolves to 127.0.0.1")
    assert receiver.received == []


async def test_invitations_are_mailed_when_smtp_is_configured(
    client: httpx.AsyncClient, tenant: Tenant, notify_settings: Settings, smtp: SmtpReceiver, receiver: WebhookReceiver
) -> None:
    await receiver.start()
    hook = await create_channel(client, tenant.org_admin_token, url=receiver.url, kinds=["invitation"])
    invite = """mutation($org: ID!) { inviteMember(organizationId: $org, email: "new-colleague@tenant.test", role: VIEWER) {
      token emailSent } }"""
    invited = (await gql_data(client, invite, {"org": tenant.org_id}, tenant.org_admin_token))["inviteMember"]
    assert invited["emailSent"] is True
    [(recipients, message)] = [(to, m) for to, m in smtp.messages if to == ["new-colleague@tenant.test"]]
    assert invited["token"] in message.get_content() and tenant.organization.name in message["Subject"]
    await sender.send_due(notify_settings)
    [notice] = receiver.received
    body = Webhook(hook["secret"]).verify(notice.body, notice.headers)
    assert body["type"] == "invitation" and body["data"]["email"] == "new-colleague@tenant.test"
    assert invited["token"] not in orjson.dumps(body).decode()


async def test_a_failed_payment_spike_is_notified_once_per_window(
    client: httpx.AsyncClient, worker: Any, tenant: Tenant, notify_settings: Settings, receiver: WebhookReceiver
) -> None:
    """More failed payments than the threshold in one hour window: one notification, however
    many batches bring them; a quiet window raises none."""
    admin = tenant.org_admin_token
    hook = await create_channel(client, admin, url=receiver.url, kinds=["payment.failed_spike"])
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    stream = Stream(base=hour)
    quiet = Stream(base=hour + timedelta(hours=1))

    async def spikes() -> list[dict[str, Any]]:
        return await deliveries(client, admin, channel=hook["channel"]["id"])

    for minute in range(SPIKE_THRESHOLD):  # up to the threshold: not above it
        stream.failed(f"buyer-{minute}", minute + 1)
        quiet.failed(f"buyer-{minute}", minute + 1)
    await publish(client, tenant, stream.events + quiet.events)
    await worker.drain()
    assert await spikes() == []

    for batch in range(3):  # past it, and again in the same window
        stream.events.clear()
        stream.failed(f"late-buyer-{batch}", 30 + batch)
        await publish(client, tenant, stream.events)
        await worker.drain()
    [spike] = await spikes()
    assert spike["kind"] == "payment.failed_spike"
    assert spike["payload"] == {"windowStart": hour.isoformat(), "windowMinutes": 60,
                                "failedPayments": SPIKE_THRESHOLD + 1, "threshold": SPIKE_THRESHOLD}  # fmt: skip


async def test_an_admin_refund_asks_the_host_platform_through_its_webhook(
    client: httpx.AsyncClient, worker: Any, tenant: Tenant, notify_settings: Settings, receiver: WebhookReceiver,
) -> None:  # fmt: skip
    await receiver.start()
    await create_channel(client, tenant.org_admin_token, url=receiver.url + "/refunds", kinds=["refund.requested"])
    sale = {"eventId": f"tx-{uuid.uuid4().hex[:12]}", "type": "ORDER_PAID", "amountMinor": 8_000, "currency": "EUR",
            "occurredAt": (datetime.now(UTC) - timedelta(minutes=5)).isoformat(),
            "properties": {"orderId": "ord-refund-hook", "serviceFeeMinor": 300}}  # fmt: skip
    publish = "mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted } }"
    assert (await gql_data(client, publish, {"e": [sale]}, tenant.service_token))["publishDomainEvents"]["accepted"] == 1
    await worker.drain()
    refund = """mutation($org: ID!, $t: String!) { issueRefund(organizationId: $org, transactionId: $t, amountMinor: 3000,
      refundServiceFee: false, reason: "Show moved") { id amountMinor } }"""
    issued = (await gql_data(client, refund, {"org": tenant.org_id, "t": sale["eventId"]}, tenant.admin_token))["issueRefund"]
    [delivery] = await deliveries(client, tenant.org_admin_token)
    assert delivery["kind"] == "refund.requested" and delivery["payload"]["refundId"] == issued["id"]
    assert (delivery["payload"]["transactionId"], delivery["payload"]["amountMinor"], delivery["payload"]["reason"]) == (
        sale["eventId"], 3_000, "Show moved")
    await sender.send_due(notify_settings)
    [received] = receiver.received
    assert received.path == "/hooks/pulsegraph/refunds" and orjson.loads(received.body)["data"]["orderId"] == "ord-refund-hook"
