"""Failed payments: what failed, why, how often against the payments that went through, and
what admins did about each (resolved it, or asked the host platform to retry it).

A failed payment is a `payment.failed` event: its event id is its transaction id, its reason
is `properties.reason` (short text such as card_declined, insufficient_funds, expired_card,
fraud_suspected, processing_error; checked at ingestion; missing reads as "unknown"), its
customer the event's visitor id (u:<userId>, a:<anonymousId>, ...), its amount and currency
the event's when it carried them. Reading the events rather than the ledger keeps failures
that carried no amount (the ledger records none of those).

The failure rate of a window is failed / (failed + successful): successful payments are the
ledger's sales that went through in the window (bookings, gifts, subscriptions, orders,
marketplace purchases; completed or refunded since; not pending, not affiliate commissions,
not refunds). Windows are rolling: the last 24 hours, 7 days, 30 days before now.

Admin state (`failed_payment_states`, migration 0023): no row is OPEN. Rules a client sees:
- resolve: OPEN or RETRY_REQUESTED -> RESOLVED; a resolved payment cannot be resolved again.
- request retry: OPEN -> RETRY_REQUESTED, with a `payment.retry_requested` notification to the
  organization's channels in the same transaction (the host platform's webhook retries it); a
  resolved payment cannot be retried, and a retry cannot be requested twice (resolve it once
  the host platform reports back, or publish a new payment.failed if the retry failed).
Both need a reason (1..500 characters) and write an audit entry in the same transaction.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.auth import Viewer, administered_scope
from app.database import connection, transaction
from app.errors import BadInput, NotFound, trimmed_text
from app.services.accounts import audit
from app.services.accounts.audit import Actor
from app.services.notifications import enqueue_notification
from app.services.notifications.kinds import PAYMENT_RETRY_REQUESTED
from app.timebuckets import RangeSpec, TimeRange, resolve_range, utcnow
from app.vocabulary import PAYMENT_FAILED

REASON_MAX_CHARS = 64
UNKNOWN_REASON = "unknown"
MAX_NOTE = 500
MAX_PAGE = 100
MAX_TRANSACTION_ID = 128
OPEN, RETRY_REQUESTED, RESOLVED = "open", "retry_requested", "resolved"
STATUSES = (OPEN, RETRY_REQUESTED, RESOLVED)
WINDOWS: dict[str, timedelta] = {
    "last_24_hours": timedelta(hours=24),
    "last_7_days": timedelta(days=7),
    "last_30_days": timedelta(days=30),
}
SUCCESSFUL_TYPES = ("booking", "gift", "subscription", "order")
ADMIN_REFUSAL = "failed payments need an organization admin token"


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """payment.failed's properties.reason, when present, is short printable text: the report
    groups by it. (field, reason) of a bad one, None when fine."""
    if event_type != PAYMENT_FAILED or not isinstance(properties, Mapping) or properties.get("reason") is None:
        return None
    reason = properties["reason"]
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_MAX_CHARS or not reason.isprintable():
        return "properties.reason", f"properties.reason must be printable text of 1 to {REASON_MAX_CHARS} characters, e.g. card_declined"
    return None


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class FailedPayment:
    organization_id: uuid.UUID
    organization_name: str
    transaction_id: str  # the payment.failed event's id
    occurred_at: datetime
    amount_minor: int | None
    currency: str | None
    reason: str
    order_id: str | None
    customer_id: str | None
    status: str
    note: str | None  # the admin's reason for the latest act
    retry_requested_by: str | None
    retry_requested_at: datetime | None
    resolved_by: str | None
    resolved_at: datetime | None


@dataclass(frozen=True, slots=True)
class FailedPaymentPage:
    time_range: TimeRange
    payments: list[FailedPayment]
    end_cursor: str | None  # pass as `after` for the next page; None: no more


# One index range per organization (events_type_time), whichever organizations are read.
FAILED = f"""
SELECT e.organization_id, o.name, e.event_id, e.occurred_at, e.amount_minor, e.currency::text,
       COALESCE(NULLIF(e.properties ->> 'reason', ''), '{UNKNOWN_REASON}') AS reason, e.properties ->> 'orderId',
       e.visitor_id, COALESCE(s.status, '{OPEN}') AS status, s.note, s.retry_requested_by, s.retry_requested_at,
       s.resolved_by, s.resolved_at
FROM organizations o
CROSS JOIN LATERAL (
    SELECT organization_id, event_id, occurred_at, amount_minor, currency, properties, visitor_id FROM events
    WHERE organization_id = o.id AND type = '{PAYMENT_FAILED}' AND occurred_at >= $2 AND occurred_at < $3
) e
LEFT JOIN failed_payment_states s ON s.organization_id = e.organization_id AND s.event_id = e.event_id
"""
PAGE = f"""
SELECT * FROM ({FAILED} WHERE ($1::uuid IS NULL OR o.id = $1)) f
WHERE ($4::text IS NULL OR f.reason = $4) AND ($5::text IS NULL OR f.status = $5)
  AND ($6::timestamptz IS NULL OR (f.occurred_at, f.organization_id, f.event_id) < ($6, $7::uuid, $8::text))
ORDER BY f.occurred_at DESC, f.organization_id DESC, f.event_id DESC
LIMIT $9
"""
ONE = f"{FAILED} WHERE o.id = $1 AND e.event_id = $4"


def _payment(row: asyncpg.Record) -> FailedPayment:
    return FailedPayment(*row)


async def _scope(viewer: Viewer, organization_id: Any) -> uuid.UUID | None:
    return await administered_scope(viewer, organization_id, refusal=ADMIN_REFUSAL)


async def resolved_range(conn: asyncpg.Connection, org: uuid.UUID | None, spec: RangeSpec) -> TimeRange:
    """Presets in the organization's time zone; in UTC across every organization."""
    zone = await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", org) if org is not None else None
    return resolve_range(spec, zone or "UTC")


async def failed_payments(
    *, viewer: Viewer, organization_id: Any, time_range: RangeSpec, reason: str | None = None, status: str | None = None,
    first: int = 20, after: str | None = None,
) -> FailedPaymentPage:  # fmt: skip
    """Newest first, paged by cursor: platform admins every organization's (or the one they
    name), organization admins their own."""
    org = await _scope(viewer, organization_id)
    if reason is not None and not 1 <= len(reason) <= REASON_MAX_CHARS:
        raise BadInput(f"failureReason must be 1 to {REASON_MAX_CHARS} characters", field="failureReason")
    if status is not None and status not in STATUSES:
        raise BadInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    if not 1 <= first <= MAX_PAGE:
        raise BadInput(f"first must be between 1 and {MAX_PAGE}", field="first")
    at, last_org, last_id = _cursor(after) if after else (None, None, None)
    async with connection() as conn:
        span = await resolved_range(conn, org, time_range)
        rows = await conn.fetch(PAGE, org, span.start, span.end, reason, status, at, last_org, last_id, first + 1)
    found = [_payment(row) for row in rows[:first]]
    return FailedPaymentPage(span, found, _cursor_of(found[-1]) if len(rows) > first else None)


def _cursor_of(payment: FailedPayment) -> str:
    raw = f"{payment.occurred_at.isoformat()}|{payment.organization_id}|{payment.transaction_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _cursor(after: str) -> tuple[datetime, uuid.UUID, str]:
    try:
        at, org, event_id = base64.urlsafe_b64decode(after.encode()).decode().split("|", 2)
        return datetime.fromisoformat(at), uuid.UUID(org), event_id
    except (ValueError, UnicodeDecodeError):
        raise BadInput("after must be a cursor from a previous page", field="after") from None


@dataclass(frozen=True, slots=True)
class WindowFigures:
    window: str  # a key of WINDOWS
    failed: int
    successful: int

    @property
    def failure_rate(self) -> float | None:
        """failed / (failed + successful); None when there was no payment at all."""
        total = self.failed + self.successful
        return self.failed / total if total else None


@dataclass(frozen=True, slots=True)
class FailedPaymentStats:
    organization_id: uuid.UUID | None
    windows: list[WindowFigures]
    by_reason: list[tuple[str, int]]  # the last 30 days, most frequent first
    by_status: list[tuple[str, int]]  # the last 30 days, every status


SUCCESSFUL = f"""
SELECT count(*) FILTER (WHERE t.occurred_at >= $2), count(*) FILTER (WHERE t.occurred_at >= $3),
       count(*) FILTER (WHERE t.occurred_at >= $4)
FROM organizations o
CROSS JOIN LATERAL (
    SELECT occurred_at FROM transactions
    WHERE organization_id = o.id AND occurred_at >= $4 AND NOT is_refund AND status IN ('completed', 'refunded')
      AND type = ANY('{{{",".join(SUCCESSFUL_TYPES)}}}'::text[])
) t
WHERE ($1::uuid IS NULL OR o.id = $1)
"""
# The last 30 days counted in one pass: per window (the empty grouping set), per reason, per status.
FAILED_COUNTS = f"""
SELECT GROUPING(f.reason) = 0 AS by_reason, GROUPING(f.status) = 0 AS by_status, f.reason, f.status,
       count(*) FILTER (WHERE f.occurred_at >= $4), count(*) FILTER (WHERE f.occurred_at >= $5), count(*)
FROM ({FAILED} WHERE ($1::uuid IS NULL OR o.id = $1)) f
GROUP BY GROUPING SETS ((f.reason), (f.status), ())
"""


async def failed_payment_stats(*, viewer: Viewer, organization_id: Any = None) -> FailedPaymentStats:
    """Counts and failure rates over the last 24 hours, 7 and 30 days; reasons and statuses of
    the last 30 days."""
    return await stats_of(await _scope(viewer, organization_id))


async def stats_of(org: uuid.UUID | None) -> FailedPaymentStats:
    """`failed_payment_stats` of one organization, or of every one (None), for whoever was
    let in: the API after its scope check, the metrics endpoint behind its token."""
    now = utcnow()
    day, week, month = (now - span for span in WINDOWS.values())
    async with connection() as conn:
        successful = await conn.fetchrow(SUCCESSFUL, org, day, week, month)
        counted = await conn.fetch(FAILED_COUNTS, org, month, now + timedelta(days=1), day, week)
    [total] = [row for row in counted if not row["by_reason"] and not row["by_status"]]
    windows = [WindowFigures(name, total[4 + i], successful[i]) for i, name in enumerate(WINDOWS)]
    reasons = sorted(((r["reason"], r[6]) for r in counted if r["by_reason"]), key=lambda item: (-item[1], item[0]))
    statuses = {r["status"]: r[6] for r in counted if r["by_status"]}
    return FailedPaymentStats(org, windows, reasons, [(status, statuses.get(status, 0)) for status in STATUSES])


# --------------------------------------------------------------------------- acting


UPSERT = """
INSERT INTO failed_payment_states AS s (organization_id, event_id, status, actor, note, at, retry_requested_by,
                                        retry_requested_at, resolved_by, resolved_at)
VALUES ($1, $2, $3, $4, $5, now(),
        CASE WHEN $3 = 'retry_requested' THEN $4 END, CASE WHEN $3 = 'retry_requested' THEN now() END,
        CASE WHEN $3 = 'resolved' THEN $4 END, CASE WHEN $3 = 'resolved' THEN now() END)
ON CONFLICT (organization_id, event_id) DO UPDATE SET
    status = EXCLUDED.status, actor = EXCLUDED.actor, note = EXCLUDED.note, at = EXCLUDED.at,
    retry_requested_by = COALESCE(EXCLUDED.retry_requested_by, s.retry_requested_by),
    retry_requested_at = COALESCE(EXCLUDED.retry_requested_at, s.retry_requested_at),
    resolved_by = COALESCE(EXCLUDED.resolved_by, s.resolved_by),
    resolved_at = COALESCE(EXCLUDED.resolved_at, s.resolved_at)
"""
# Wide enough for any event the ingestion window accepts.
_EVER = (datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC))


async def _checked(viewer: Viewer, organization_id: Any, transaction_id: str, reason: str) -> tuple[uuid.UUID, str, str]:
    """The organization (named: acts are on one organization's payment), the transaction id and the reason."""
    org = await _scope(viewer, organization_id)
    if org is None:
        raise BadInput("name the organization", field="organizationId")
    why = trimmed_text(reason, field="reason", limit=MAX_NOTE)
    wanted = trimmed_text(transaction_id, field="transactionId", limit=MAX_TRANSACTION_ID)
    return org, wanted, why


async def _locked_payment(conn: asyncpg.Connection, org: uuid.UUID, transaction_id: str) -> FailedPayment:
    """The failed payment, with two acts on it taking turns."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text || '/failed/' || $2))", str(org), transaction_id)
    row = await conn.fetchrow(ONE, org, *_EVER, transaction_id)
    if row is None:
        raise NotFound("failed payment not found (the event id of a payment.failed)", field="transactionId")
    return _payment(row)


async def _record(conn: asyncpg.Connection, *, viewer: Viewer, address: str | None, org: uuid.UUID, action: str,
                  before: FailedPayment, status: str, why: str) -> FailedPayment:  # fmt: skip
    await conn.execute(UPSERT, org, before.transaction_id, status, viewer.subject, why)
    after = _payment(await conn.fetchrow(ONE, org, *_EVER, before.transaction_id))
    await audit.record(
        conn, action=action, actor=Actor.of(viewer, address), organization_id=org, target=before.transaction_id,
        before={"status": before.status}, after={"status": after.status}, reason=why,
    )  # fmt: skip
    return after


async def resolve_failed_payment(
    *, viewer: Viewer, organization_id: Any, transaction_id: str, reason: str, address: str | None
) -> FailedPayment:
    """Mark a failed payment resolved (open, or after a retry was requested)."""
    org, wanted, why = await _checked(viewer, organization_id, transaction_id, reason)
    async with transaction() as conn:
        before = await _locked_payment(conn, org, wanted)
        if before.status == RESOLVED:
            raise BadInput("this failed payment is resolved already", field="transactionId")
        return await _record(conn, viewer=viewer, address=address, org=org, action=audit.FAILED_PAYMENT_RESOLVED,
                             before=before, status=RESOLVED, why=why)  # fmt: skip


async def request_payment_retry(
    *, viewer: Viewer, organization_id: Any, transaction_id: str, reason: str, address: str | None
) -> FailedPayment:
    """Ask the host platform to retry an open failed payment: its webhook channels subscribed
    to payment.retry_requested get the request, durably, in this transaction."""
    org, wanted, why = await _checked(viewer, organization_id, transaction_id, reason)
    async with transaction() as conn:
        before = await _locked_payment(conn, org, wanted)
        if before.status == RESOLVED:
            raise BadInput("a resolved failed payment cannot be retried", field="transactionId")
        if before.status == RETRY_REQUESTED:
            raise BadInput("a retry was requested already: resolve it once the host platform reports back", field="transactionId")
        after = await _record(conn, viewer=viewer, address=address, org=org, action=audit.FAILED_PAYMENT_RETRY_REQUESTED,
                              before=before, status=RETRY_REQUESTED, why=why)  # fmt: skip
        await enqueue_notification(conn, organization_id=org, kind=PAYMENT_RETRY_REQUESTED, payload=retry_payload(after))
    return after


def retry_payload(payment: FailedPayment) -> dict[str, Any]:
    """What the host platform needs to retry the payment, and who asked why."""
    return {
        "organizationId": str(payment.organization_id), "transactionId": payment.transaction_id,
        "orderId": payment.order_id, "customerId": payment.customer_id, "amountMinor": payment.amount_minor,
        "currency": payment.currency, "failureReason": payment.reason, "failedAt": payment.occurred_at.isoformat(),
        "requestedBy": payment.retry_requested_by, "requestedAt": payment.retry_requested_at.isoformat()
        if payment.retry_requested_at else None, "reason": payment.note,
    }  # fmt: skip
