"""Operations for the demo: the host platform's failed webhooks of the last days, and the
story of four failed payments, told through the real services (audited, notified) and then
dated as it happened:

- a declined card the customer paid with another card: resolved;
- an expired card: a retry was requested, and the request's webhook to the host platform died
  after every attempt (its endpoint was down): retryDelivery brings it back;
- a processing error: a retry was requested, its webhook failed twice then went through, and
  the payment was resolved once the host platform had retried it;
- insufficient funds: a retry was requested just now (its webhook is pending).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

# properties.reason of the history's declined payments, in turn (the fraud case's card tester: card_declined)
FAILURE_REASONS = ("card_declined", "insufficient_funds", "card_declined", "expired_card", "processing_error", "fraud_suspected")
HOST_CHANNEL_NAME = "Host platform"
HOST_CHANNEL_URL = "https://host-platform.example/pulsegraph/hooks"
HOST_CHANNEL_KINDS = ["payment.retry_requested", "refund.requested"]

# (endpoint, eventType, statusCode, error, attempt, hours ago)
HOST_WEBHOOK_FAILURES = [
    ("https://crm.example/hooks/orders", "order.paid", 500, "HTTP 500", 1, 2),
    ("https://crm.example/hooks/orders", "order.paid", 500, "HTTP 500", 2, 2),
    ("https://crm.example/hooks/orders", "order.paid", 502, "HTTP 502", 3, 3),
    ("https://mailer.example/webhooks/in", "account.created", None, "timeout: ReadTimeout", 1, 7),
    ("https://mailer.example/webhooks/in", "account.created", None, "timeout: ReadTimeout", 2, 8),
    ("https://accounting.example/api/hook", "payout.settled", 401, "HTTP 401", 1, 30),
    ("https://accounting.example/api/hook", "payout.settled", 401, "HTTP 401", 2, 31),
    ("https://crm.example/hooks/orders", "order.refunded", 503, "HTTP 503", 1, 75),
    ("https://partner-tickets.example/scan", "ticket.scanned", 404, "HTTP 404", 5, 24 * 6),
]
HOST_MAX_ATTEMPTS = 5


def generate_host_webhook_failures(*, now: datetime, seed: int = 7) -> Iterator[dict[str, Any]]:
    """webhook.failed events as the host platform publishes them."""
    for n, (endpoint, event_type, status, error, attempt, hours) in enumerate(HOST_WEBHOOK_FAILURES):
        properties = {"endpoint": endpoint, "eventType": event_type, "error": error, "attempt": attempt,
                      "maxAttempts": HOST_MAX_ATTEMPTS} | ({"statusCode": status} if status is not None else {})  # fmt: skip
        yield {"type": "webhook.failed", "event_id": f"demo-{seed}-hook-{n}", "properties": properties,
               "occurred_at": now.replace(microsecond=0) - timedelta(hours=hours, minutes=7 * n)}  # fmt: skip


@dataclass(frozen=True)
class Attempt:
    """One attempt at the host platform's webhook, minutes after the request."""

    minutes: float
    status_code: int | None
    error: str | None
    duration_ms: int


# What became of the retry requests' webhooks: the expired card's died, the processing error's came through.
DEAD_ATTEMPTS = [Attempt(0, None, "ConnectError: connection refused", 12), Attempt(1, 503, "HTTP 503", 87),
                 Attempt(3, 503, "HTTP 503", 91), Attempt(9, None, "timeout: ReadTimeout", 10_000),
                 Attempt(25, 503, "HTTP 503", 84)]  # fmt: skip
RETRIED_ATTEMPTS = [Attempt(0, 500, "HTTP 500", 143), Attempt(1, None, "timeout: ReadTimeout", 10_000), Attempt(4, 200, None, 96)]


@dataclass(frozen=True)
class Act:
    """What happened to one failed payment, hours before now."""

    reason: str  # why it failed; it failed two hours before the first act
    requested_hours_ago: float | None  # a retry requested then (None: none)
    resolved_hours_ago: float | None  # resolved then (None: not resolved)
    attempts: list[Attempt] | None  # what became of the retry request's webhook (None: still pending)
    requested_note: str = ""
    resolved_note: str = ""


ACT_AMOUNT_MINOR = 4500  # two workshop tickets and a fee
ACTS = [
    Act("card_declined", None, 20, None, resolved_note="The customer paid with another card."),
    Act("expired_card", 30, None, DEAD_ATTEMPTS, requested_note="The customer updated the card's expiry date."),
    Act("processing_error", 50, 46, RETRIED_ATTEMPTS, requested_note="The processor had an outage; retry it.",
        resolved_note="The host platform's retry went through."),
    Act("insufficient_funds", 0, None, None, requested_note="The customer asked us to charge the card again."),
]


def act_event_id(act: Act, seed: int = 7) -> str:
    return f"demo-{seed}-failed-{act.reason}"


def generate_acted_failures(*, now: datetime, seed: int = 7) -> Iterator[dict[str, Any]]:
    """The failed payments ACTS are about, each two hours before the first act on it."""
    for n, act in enumerate(ACTS):
        hours = max(h for h in (act.requested_hours_ago, act.resolved_hours_ago) if h is not None) + 2
        yield {"type": "payment.failed", "event_id": act_event_id(act, seed), "user_id": f"ticket-buyer-acted-{n}",
               "occurred_at": now.replace(microsecond=0) - timedelta(hours=hours), "amount_minor": ACT_AMOUNT_MINOR,
               "currency": "EUR", "properties": {"reason": act.reason, "orderId": f"T-ACT-{n + 1}"}}  # fmt: skip
