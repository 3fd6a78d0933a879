"""Managing notification channels (validation, secrets shown once, audit), what raises
notifications (fraud alerts, password resets; paused channels get nothing), and a running
worker sending on its own."""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest_asyncio
from standardwebhooks import Webhook

from app.settings import Settings, override_settings
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.receivers import SmtpReceiver, WebhookReceiver
from tests.support.settings import settings_with
from tests.support.tenants import Tenant
from workers.outbox import OutboxWorker

CREATE = """
mutation($org: ID, $kind: NotificationChannelKind!, $name: String!, $url: String, $recipients: [String!], $kinds: [String!]!) {
  createNotificationChannel(organizationId: $org, kind: $kind, name: $name, url: $url, recipients: $recipients, kinds: $kinds) {
    secret channel { id organizationId kind name url recipients kinds enabled }
  }
}"""
UPDATE = """
mutation($id: ID!, $name: String, $url: String, $kinds: [String!], $enabled: Boolean, $recipients: [String!]) {
  updateNotificationChannel(id: $id, name: $name, url: $url, kinds: $kinds, enabled: $enabled, recipients: $recipients) {
    id name url kinds enabled recipients
  }
}"""
CHANNELS = "query($org: ID) { notificationChannels(organizationId: $org) { id name url kinds enabled organizationId } }"
ROTATE = "mutation($id: ID!) { rotateChannelSecret(id: $id) { secret channel { id } } }"
DELETE = "mutation($id: ID!) { deleteNotificationChannel(id: $id) }"
TEST = "mutation($id: ID!) { sendTestNotification(id: $id) { id kind status payload } }"
DELIVERIES = """query($channel: ID, $first: Int, $after: String) { deliveries(channelId: $channel, first: $first, after: $after) {
  deliveries { id kind status payload attempts { statusCode error } } endCursor } }"""
AUDIT = 'query { auditLog(limit: 20) { action target details } }'
PUBLISH = """mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
RESET = "mutation($user: ID!) { createPasswordReset(userId: $user) { token emailSent } }"


@pytest_asyncio.fixture(scope="module")
async def local(app: Any, settings: Settings, smtp: SmtpReceiver) -> AsyncIterator[Settings]:
    changed = settings_with(
        settings, notification_allow_private=True, notification_allow_http=True, notification_backoff_base_seconds=0.05,
        notification_timeout_seconds=1.0, smtp_host="127.0.0.1", smtp_port=smtp.port, smtp_starttls=False,
    )  # fmt: skip
    app.state.settings = changed
    override_settings(changed)
    yield changed
    app.state.settings = settings
    override_settings(settings)


async def create(client: httpx.AsyncClient, token: str, **variables: Any) -> dict[str, Any]:
    body = await gql(client, CREATE, {"kind": "WEBHOOK", "name": "Hook", "kinds": ["fraud_alert"], **variables}, token=token)
    return body


async def test_channels_are_validated_managed_and_audited(
    client: httpx.AsyncClient, tenant: Tenant, local: Settings, receiver: WebhookReceiver
) -> None:
    admin = tenant.org_admin_token
    refusals = [
        ({"kinds": ["gov_alert", "weather"], "url": receiver.url}, "kinds"),
        ({"kinds": [], "url": receiver.url}, "kinds"),
        ({"url": None}, "url"),
        ({"url": "ftp://example.com/hook"}, "url"),
        ({"url": receiver.url, "recipients": ["a@b.test"]}, "recipients"),
        ({"kind": "EMAIL", "recipients": ["not an address"]}, "recipients"),
        ({"kind": "EMAIL", "recipients": []}, "recipients"),
        ({"kind": "EMAIL", "recipients": ["a@b.test"], "url": receiver.url}, "url"),
        ({"name": " ", "url": receiver.url}, "name"),
    ]
    for variables, field in refusals:
        body = await create(client, admin, **variables)
        assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == field, (variables, body)
    assert error_codes(await create(client, tenant.viewer_token, url=receiver.url)) == ["FORBIDDEN"]

    made = (await create(client, admin, url=receiver.url, name="Risk desk"))["data"]["createNotificationChannel"]
    channel, secret = made["channel"], made["secret"]
    assert channel["organizationId"] == tenant.org_id and channel["enabled"] and channel["kinds"] == ["fraud_alert"]
    listed = (await gql_data(client, CHANNELS, {}, admin))["notificationChannels"]
    assert [c["id"] for c in listed] == [channel["id"]] and "secret" not in listed[0]

    changed = (await gql_data(client, UPDATE, {"id": channel["id"], "name": "Risk desk 2", "kinds": ["fraud_alert", "test"],
                                               "enabled": False}, admin))["updateNotificationChannel"]  # fmt: skip
    assert (changed["name"], changed["kinds"], changed["enabled"]) == ("Risk desk 2", ["fraud_alert", "test"], False)
    body = await gql(client, UPDATE, {"id": channel["id"], "recipients": ["x@y.test"]}, token=admin)
    assert body["errors"][0]["extensions"]["field"] == "recipients"

    rotated = (await gql_data(client, ROTATE, {"id": channel["id"]}, admin))["rotateChannelSecret"]
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != secret
    await gql_data(client, UPDATE, {"id": channel["id"], "enabled": True}, admin)
    await gql_data(client, TEST, {"id": channel["id"]}, admin)
    from app.services.notifications import sender

    await sender.send_due(local)
    [request] = receiver.received
    assert Webhook(rotated["secret"]).verify(request.body, request.headers)["type"] == "test"
    assert error_codes(await gql(client, ROTATE, {"id": str(uuid.uuid4())}, token=admin)) == ["NOT_FOUND"]

    assert (await gql_data(client, DELETE, {"id": channel["id"]}, admin))["deleteNotificationChannel"] is True
    assert (await gql_data(client, CHANNELS, {}, admin))["notificationChannels"] == []
    assert (await gql_data(client, DELIVERIES, {}, admin))["deliveries"]["deliveries"] == []  # gone with the channel
    entries = [e for e in (await gql_data(client, AUDIT, {}, admin))["auditLog"] if e["target"] == channel["id"]]
    assert [e["action"] for e in entries] == [
        "notification_channel.deleted", "notification.test_sent", "notification_channel.updated",
        "notification_channel.secret_rotated", "notification_channel.updated", "notification_channel.created",
    ]  # fmt: skip
    assert entries[-1]["details"]["after"]["name"] == "Risk desk"
    assert not any(secret in str(e) or rotated["secret"] in str(e) for e in entries)


async def test_fraud_alerts_and_resets_raise_notifications_paused_channels_get_none(
    client: httpx.AsyncClient, worker: Any, tenant: Tenant, local: Settings, smtp: SmtpReceiver
) -> None:
    admin = tenant.org_admin_token
    hook = (await create(client, admin, url="http://127.0.0.1:9/risk", kinds=["fraud_alert", "password_reset"]))["data"]
    paused = (await create(client, admin, url="http://127.0.0.1:9/paused", kinds=["fraud_alert"]))["data"]
    await gql_data(client, UPDATE, {"id": paused["createNotificationChannel"]["channel"]["id"], "enabled": False}, admin)
    tag = uuid.uuid4().hex[:8]
    failures = [{"eventId": f"pf-{tag}-{n}", "type": "PAYMENT_FAILED", "userId": "card-tester", "amountMinor": 1999,
                 "currency": "EUR"} for n in range(4)]  # fmt: skip
    published = (await gql_data(client, PUBLISH, {"e": failures}, tenant.service_token))["publishDomainEvents"]
    assert published["rejected"] == []
    await worker.drain()
    page = (await gql_data(client, DELIVERIES, {}, admin))["deliveries"]
    [alert] = page["deliveries"]
    assert alert["kind"] == "fraud_alert" and alert["status"] == "PENDING"
    assert alert["payload"]["subject"] == "actor:u:card-tester" and alert["payload"]["organizationId"] == tenant.org_id
    alerts = await gql_data(client, "query { fraudAlerts { alerts { id } } }", {}, admin)
    assert alert["payload"]["id"] in {a["id"] for a in alerts["fraudAlerts"]["alerts"]}

    reset = (await gql_data(client, RESET, {"user": str(tenant.users["viewer"])}, admin))["createPasswordReset"]
    assert reset["emailSent"] is True
    [mailed] = [m for to, m in smtp.messages if to[0].startswith(f"viewer-{tenant.users['viewer'].hex[:12]}")]
    token = mailed.get_content().strip().rsplit("\n", 1)[-1].strip()
    assert token.startswith("pgp_") and reset["token"] in (None, token)
    new_password = {"t": token, "p": "lantern quartz 8812 meadow"}
    reset_with_mail = "mutation($t: String!, $p: String!) { resetPassword(token: $t, newPassword: $p) }"
    assert (await gql_data(client, reset_with_mail, new_password, None))["resetPassword"] is True
    first = (await gql_data(client, DELIVERIES, {"first": 1}, admin))["deliveries"]
    assert first["deliveries"][0]["kind"] == "password_reset" and token not in str(first)
    second = (await gql_data(client, DELIVERIES, {"first": 1, "after": first["endCursor"]}, admin))["deliveries"]
    assert [d["id"] for d in second["deliveries"]] == [alert["id"]] and second["endCursor"] is None
    assert hook["createNotificationChannel"]["channel"]["id"]


async def test_a_running_worker_sends_without_being_asked(
    app: Any, client: httpx.AsyncClient, tenant: Tenant, local: Settings, receiver: WebhookReceiver
) -> None:
    admin = tenant.org_admin_token
    made = (await create(client, admin, url=receiver.url, kinds=["test"]))["data"]["createNotificationChannel"]
    running = OutboxWorker(bus=app.state.bus, settings=settings_with(local, worker_poll_seconds=0.2), name="sender")
    task = asyncio.create_task(running.run())
    try:
        sent = (await gql_data(client, TEST, {"id": made["channel"]["id"]}, admin))["sendTestNotification"]
        started = time.monotonic()
        while not receiver.received:
            assert time.monotonic() - started < 10, "the running worker did not send"
            await asyncio.sleep(0.05)
    finally:
        await running.stop()
        await task
    assert receiver.received[0].headers["webhook-id"] == sent["id"]


def localhost_certificate(folder: Path) -> tuple[str, str]:
    """A self-signed certificate for the name `localhost` (openssl), and its key."""
    cert, key = folder / "localhost.pem", folder / "localhost-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


async def test_https_goes_to_the_checked_address_under_the_name_it_was_given(
    client: httpx.AsyncClient, tenant: Tenant, local: Settings, tmp_path: Path
) -> None:
    """The sender connects to the address it checked, yet TLS still checks the certificate
    against the URL's name (SNI) and the Host header carries it: a real https receiver."""
    from app.services.notifications import sender

    certificate = localhost_certificate(tmp_path)
    receiver = WebhookReceiver(certificate=certificate)
    await receiver.start()
    try:
        https_only = settings_with(local, notification_allow_http=False)
        made = (await create(client, tenant.org_admin_token, url=receiver.url, kinds=["test"]))["data"]
        channel = made["createNotificationChannel"]
        await gql_data(client, TEST, {"id": channel["channel"]["id"]}, tenant.org_admin_token)
        trusting = ssl.create_default_context(cafile=certificate[0])
        async with httpx.AsyncClient(verify=trusting, timeout=5, follow_redirects=False, trust_env=False) as http:
            await sender.send_due(https_only, http)
        [request] = receiver.received
        assert request.headers["host"] == f"localhost:{receiver.port}"
        assert Webhook(channel["secret"]).verify(request.body, request.headers)["type"] == "test"

        # a client that does not trust the certificate: the attempt fails on it, nothing is accepted
        await gql_data(client, TEST, {"id": channel["channel"]["id"]}, tenant.org_admin_token)
        async with sender.new_client(https_only) as untrusting:
            await sender.send_due(https_only, untrusting)
        page = (await gql_data(client, DELIVERIES, {"channel": channel["channel"]["id"]}, tenant.org_admin_token))
        newest = page["deliveries"]["deliveries"][0]
        assert newest["status"] == "PENDING" and newest["attempts"][0]["statusCode"] is None
        assert "CERTIFICATE_VERIFY_FAILED" in newest["attempts"][0]["error"]
        assert len(receiver.received) == 1
    finally:
        await receiver.stop()
