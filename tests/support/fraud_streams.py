"""Domain events that trip the default fraud rules, published through the API and processed
by the real worker, and the alerts read back: shared by the fraud and privacy tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.graphql import gql
from tests.support.tenants import Tenant

PUBLISH = """
mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted duplicates rejected { index field reason } }
}"""
ALERT_FIELDS = """
id organizationId ruleId ruleName kind risk subject status details evidence triggeredAt lastTriggeredAt raisedAt updatedAt
"""
ALERTS = f"""
query($org: ID, $status: FraudAlertStatus, $first: Int! = 50, $after: String) {{
  fraudAlerts(organizationId: $org, status: $status, first: $first, after: $after) {{
    alerts {{ {ALERT_FIELDS} }} endCursor hasNextPage
  }}
}}"""
ANDROID_UA = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36"


# -- streams ----------------------------------------------------------------------------------


class Stream:
    """Domain events of one test, with readable ids (`<tag>-<n>`) and times relative to a base."""

    def __init__(self, base: datetime | None = None) -> None:
        self.base = base or (datetime.now(UTC) - timedelta(minutes=90)).replace(microsecond=0)
        self.tag = uuid.uuid4().hex[:6]
        self.events: list[dict[str, Any]] = []
        self.sent = 0

    def _add(self, kind: str, minute: float, **fields: Any) -> str:
        self.sent += 1
        event_id = f"{self.tag}-{kind}-{self.sent}"
        at = self.base + timedelta(minutes=minute)
        self.events.append({"eventId": event_id, "occurredAt": at.isoformat(), **fields})
        return event_id

    def failed(self, user: str, minute: float) -> str:
        return self._add("pf", minute, type="PAYMENT_FAILED", userId=user, amountMinor=1999, currency="EUR")

    def paid(self, user: str, order: str, minute: float, quantity: int = 1) -> str:
        return self._add(
            "op", minute, type="ORDER_PAID", userId=user, amountMinor=2500 * quantity, currency="EUR",
            properties={"orderId": order, "quantity": quantity},
        )  # fmt: skip

    def refunded(self, order: str, minute: float) -> str:
        return self._add("or", minute, type="ORDER_REFUNDED", amountMinor=2500, currency="EUR", properties={"orderId": order})

    def account(self, user: str, ip: str, minute: float) -> str:
        return self._add("ac", minute, type="ACCOUNT_CREATED", userId=user, context={"ip": ip})

    def scan(self, ticket: str, minute: float, *, device: str | None = None) -> str:
        fields: dict[str, Any] = {"properties": {"ticketId": ticket, **({"deviceId": device} if device else {})}}
        if device is None:
            fields["context"] = {"userAgent": ANDROID_UA}
        return self._add("ts", minute, type="TICKET_SCANNED", **fields)


async def publish(client: Any, tenant: Tenant, events: list[dict[str, Any]]) -> None:
    body = await gql(client, PUBLISH, {"e": events}, token=tenant.service_token)
    assert body.get("errors") is None, body
    assert body["data"]["publishDomainEvents"] == {"accepted": len(events), "duplicates": 0, "rejected": []}, body


async def run(client: Any, worker: Any, tenant: Tenant, stream: Stream) -> None:
    """Publish the stream and let the real worker process everything pending."""
    await publish(client, tenant, stream.events)
    stream.events = []
    await worker.drain()


async def alerts_of(client: Any, tenant: Tenant, **variables: Any) -> list[dict[str, Any]]:
    body = await gql(client, ALERTS, {"org": tenant.org_id, **variables}, token=tenant.org_admin_token)
    assert body.get("errors") is None, body
    return body["data"]["fraudAlerts"]["alerts"]
