"""The support desk: one search box over transactions, orders and organizations, ticket
lookup with manual overrides, and platform admins' internal notes on an organization.

Platform admins search every organization (or the one they name); organization admins only
their own. A query is matched exactly against a transaction's id (the event id that recorded
it), an order id, a ticket's id or a code a scanner read, and against organization names
exactly or as a prefix, without regard to case. A query that is an email address finds the
orders its buyer paid (`buyer_email`): it is hashed as ingestion hashed properties.buyerEmail
(app/services/buyer_emails.py) and matched exactly, since only the hash is stored. A ticket
is known from its scans (ticket.scanned and ticket.scan_failed events) and from support's
overrides; its status is the latest successful scan or override, unless its order was refunded.
A refund a platform admin issues is recorded in the ledger at once, as order.refunded records
one, and kept in admin_refunds with status `requested` until the host platform executes it.
Overrides, refunds and notes are written with their audit entry in the same transaction.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.auth import Viewer, administered_scope, platform_admin_scope
from app.database import connection
from app.errors import BadInput, NotFound, trimmed_text
from app.services import buyer_emails
from app.services.accounts import audit
from app.services.accounts.audit import Actor
from app.services.notifications import enqueue_notification
from app.services.notifications.kinds import REFUND_REQUESTED
from app.settings import get_settings

MAX_QUERY = 200
MAX_HITS = 100
MAX_NOTE = 5000
MAX_TICKET_ID = 200
MAX_REASON = 500
VALID, USED, REFUNDED = "valid", "used", "refunded"

TRANSACTION_ID = "transaction_id"
ORDER_ID = "order_id"
ORGANIZATION_NAME = "organization_name"
BUYER_EMAIL = "buyer_email"
TICKET = "ticket"

# One statement: each arm reads one index (event id, order id, buyer email hash, lower(name); a
# ticket's id or scanned code through events_scan_ticket and events_scan_code, whose type list
# the ticket arm repeats literally); the organization filter is a no-op for platform admins who
# name none. $5 is the query's email hash, NULL (no probe matches) when the query is not an
# email address. The ticket arm gives one row per ticket, its id (or the code, when no scan
# named the ticket) in the id column: `_hit` moves it to ticket_id.
SEARCH = """
(SELECT 'transaction_id' AS matched, t.organization_id, o.name, t.event_id, t.order_id, t.type, t.status,
        t.amount_minor, t.currency, t.occurred_at
 FROM transactions t JOIN organizations o ON o.id = t.organization_id
 WHERE t.event_id = $1 AND ($2::uuid IS NULL OR t.organization_id = $2)
 ORDER BY t.occurred_at DESC LIMIT $3)
UNION ALL
(SELECT 'order_id', t.organization_id, o.name, t.event_id, t.order_id, t.type, t.status,
        t.amount_minor, t.currency, t.occurred_at
 FROM transactions t JOIN organizations o ON o.id = t.organization_id
 WHERE t.order_id = $1 AND ($2::uuid IS NULL OR t.organization_id = $2)
 ORDER BY t.occurred_at DESC LIMIT $3)
UNION ALL
(SELECT 'buyer_email', t.organization_id, o.name, t.event_id, t.order_id, t.type, t.status,
        t.amount_minor, t.currency, t.occurred_at
 FROM transactions t JOIN organizations o ON o.id = t.organization_id
 WHERE t.buyer_email_hash = $5 AND ($2::uuid IS NULL OR t.organization_id = $2)
 ORDER BY t.occurred_at DESC LIMIT $3)
UNION ALL
(SELECT 'organization_name', o.id, o.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL
 FROM organizations o
 WHERE lower(o.name) LIKE $4 ESCAPE '\\' AND ($2::uuid IS NULL OR o.id = $2)
 ORDER BY o.name LIMIT $3)
UNION ALL
(SELECT 'ticket', e.organization_id, o.name, COALESCE(e.properties ->> 'ticketId', e.properties ->> 'code'),
        max(e.properties ->> 'orderId'), NULL, NULL, NULL, NULL, max(e.occurred_at)
 FROM events e JOIN organizations o ON o.id = e.organization_id
 WHERE e.type IN ('ticket.scanned', 'ticket.scan_failed')
   AND (e.properties ->> 'ticketId' = $1 OR e.properties ->> 'code' = $1) AND ($2::uuid IS NULL OR e.organization_id = $2)
 GROUP BY e.organization_id, o.name, 4 ORDER BY max(e.occurred_at) DESC LIMIT $3)
"""


@dataclass(frozen=True)
class SupportHit:
    """One thing the query matched: a transaction (by its id or its order) or an
    organization (by its name)."""

    matched: str
    organization_id: uuid.UUID
    organization_name: str
    transaction_id: str | None
    order_id: str | None
    type: str | None
    status: str | None
    amount_minor: int | None
    currency: str | None
    occurred_at: datetime | None
    ticket_id: str | None = None


def _hit(row: Any) -> SupportHit:
    fields = tuple(row)
    if fields[0] == TICKET:
        return SupportHit(TICKET, *fields[1:3], None, *fields[4:], ticket_id=fields[3])
    return SupportHit(*fields)


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


async def support_search(*, viewer: Viewer, query: str, organization_id: Any = None, limit: int = 20) -> list[SupportHit]:
    """Transactions first (by id, then by order, then by buyer email; newest first), then
    organizations by name, then tickets by id or scanned code (latest scanned first, with
    their status)."""
    org = await administered_scope(viewer, organization_id, refusal="the support search needs an organization admin token")
    text = trimmed_text(query, field="query", limit=MAX_QUERY)
    if not 1 <= limit <= MAX_HITS:
        raise BadInput(f"limit must be between 1 and {MAX_HITS}", field="limit")
    async with connection() as conn:
        rows = await conn.fetch(SEARCH, text, org, limit, _like_prefix(text), buyer_emails.hash_of_query(text, get_settings()))
        return [await _with_ticket_status(conn, _hit(row)) for row in rows[:limit]]


async def _with_ticket_status(conn: Any, hit: SupportHit) -> SupportHit:
    """A ticket hit carries the ticket's status, as the ticket lookup gives it."""
    if hit.matched != TICKET or hit.ticket_id is None:
        return hit
    found = await _read_ticket(conn, hit.organization_id, hit.ticket_id)
    return dataclasses.replace(hit, status=found.status) if found is not None else hit


# --------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class OrganizationNote:
    id: uuid.UUID
    organization_id: uuid.UUID
    author: str
    body: str
    created_at: datetime


async def _organization(viewer: Viewer, organization_id: Any) -> uuid.UUID:
    org = await platform_admin_scope(viewer, organization_id, refusal="organization notes need a platform admin token")
    if org is None:
        raise BadInput("name the organization", field="organizationId")
    return org


NOTE_COLUMNS = "id, organization_id, author, body, created_at"


async def organization_notes(*, viewer: Viewer, organization_id: Any) -> list[OrganizationNote]:
    """Newest first."""
    org = await _organization(viewer, organization_id)
    async with connection() as conn:
        rows = await conn.fetch(
            f"SELECT {NOTE_COLUMNS} FROM organization_notes WHERE organization_id = $1 ORDER BY created_at DESC, id", org
        )
    return [OrganizationNote(*row) for row in rows]


async def add_organization_note(
    *, viewer: Viewer, organization_id: Any, body: str, address: str | None
) -> OrganizationNote:
    org = await _organization(viewer, organization_id)
    text = trimmed_text(body, field="body", limit=MAX_NOTE)
    async with connection() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO organization_notes (organization_id, author, author_user_id, body) VALUES ($1, $2, $3, $4)"
            f" RETURNING {NOTE_COLUMNS}", org, viewer.subject, viewer.user_id, text,
        )  # fmt: skip
        note = OrganizationNote(*row)
        await audit.record(
            conn, action=audit.ORGANIZATION_NOTE_ADDED, actor=Actor.of(viewer, address), organization_id=org,
            target=str(note.id), after={"body": text},
        )  # fmt: skip
    return note


async def delete_organization_note(*, viewer: Viewer, organization_id: Any, note_id: Any, address: str | None) -> uuid.UUID:
    """Returns the deleted note's id; the audit entry keeps what it said."""
    org = await _organization(viewer, organization_id)
    try:
        wanted = uuid.UUID(str(note_id))
    except ValueError:
        raise NotFound("note not found", field="id") from None
    async with connection() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"DELETE FROM organization_notes WHERE organization_id = $1 AND id = $2 RETURNING {NOTE_COLUMNS}", org, wanted
        )
        if row is None:
            raise NotFound("note not found", field="id")
        note = OrganizationNote(*row)
        await audit.record(
            conn, action=audit.ORGANIZATION_NOTE_DELETED, actor=Actor.of(viewer, address), organization_id=org,
            target=str(note.id), before={"body": note.body, "author": note.author, "created_at": note.created_at.isoformat()},
        )  # fmt: skip
    return note.id


# --------------------------------------------------------------------------- tickets


@dataclass(frozen=True)
class TicketScan:
    """A scan at the door: a successful one (ticket.scanned, no error type) or a failed one
    (ticket.scan_failed, with its error type)."""

    event_id: str
    at: datetime
    device_id: str | None
    error_type: str | None = None
    code: str | None = None
    message: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_type is None


@dataclass(frozen=True)
class TicketOverride:
    status: str
    reason: str
    actor: str
    at: datetime


@dataclass(frozen=True)
class Ticket:
    organization_id: uuid.UUID
    ticket_id: str
    status: str
    order_id: str | None
    scans: list[TicketScan]
    overrides: list[TicketOverride]
    listing_id: str | None = None
    listing_title: str | None = None


# A ticket's scans, successful and failed, by its id or by the code scanned (events_scan_ticket
# and events_scan_code, 0024). The type list must stay literal for those partial indexes.
SCANS = """
SELECT event_id, occurred_at, properties ->> 'deviceId', properties ->> 'orderId',
       CASE WHEN type = 'ticket.scan_failed' THEN properties ->> 'errorType' END, properties ->> 'code',
       properties ->> 'message', properties ->> 'listingId'
FROM events
WHERE organization_id = $1 AND type IN ('ticket.scanned', 'ticket.scan_failed')
  AND (properties ->> 'ticketId' = $2 OR properties ->> 'code' = $2)
ORDER BY occurred_at, event_id
"""
LISTING_TITLE = """
SELECT properties ->> 'title' FROM events
WHERE organization_id = $1 AND type = 'listing.published' AND properties ->> 'listingId' = $2
ORDER BY occurred_at DESC, event_id DESC LIMIT 1
"""
OVERRIDES = """
SELECT status, reason, actor, at FROM ticket_overrides WHERE organization_id = $1 AND ticket_id = $2 ORDER BY at, id
"""
REFUNDED_ORDER = "SELECT EXISTS (SELECT 1 FROM transactions WHERE organization_id = $1 AND order_id = $2 AND is_refund)"


def status_of(scans: list[TicketScan], overrides: list[TicketOverride], refunded: bool) -> str:
    """Refunded wins; otherwise the latest override, unless a successful scan came after it.
    A failed scan let nobody in: it changes nothing."""
    if refunded:
        return REFUNDED
    entered = [scan for scan in scans if scan.succeeded]
    last_scan = entered[-1].at if entered else None
    if overrides and (last_scan is None or overrides[-1].at >= last_scan):
        return overrides[-1].status
    return USED if entered else VALID


async def _read_ticket(conn: Any, org: uuid.UUID, ticket_id: str) -> Ticket | None:
    scan_rows = await conn.fetch(SCANS, org, ticket_id)
    overrides = [TicketOverride(*row) for row in await conn.fetch(OVERRIDES, org, ticket_id)]
    if not scan_rows and not overrides:
        return None
    scans = [TicketScan(row[0], row[1], row[2], row[4], row[5], row[6]) for row in scan_rows]
    order_id = next((row[3] for row in scan_rows if row[3]), None)
    listing_id = next((row[7] for row in reversed(scan_rows) if row[7]), None)
    refunded = bool(order_id) and bool(await conn.fetchval(REFUNDED_ORDER, org, order_id))
    title = await conn.fetchval(LISTING_TITLE, org, listing_id) if listing_id else None
    return Ticket(org, ticket_id, status_of(scans, overrides, refunded), order_id, scans, overrides, listing_id, title)


async def _ticket_scope(viewer: Viewer, organization_id: Any, ticket_id: str) -> tuple[uuid.UUID, str]:
    org = await administered_scope(viewer, organization_id, refusal="ticket lookup needs an organization admin token")
    if org is None:
        raise BadInput("name the organization", field="organizationId")
    return org, trimmed_text(ticket_id, field="ticketId", limit=MAX_TICKET_ID)


async def ticket(*, viewer: Viewer, organization_id: Any, ticket_id: str) -> Ticket:
    """A ticket with its status, order, event (listing), scans (failed ones too) and overrides,
    by its id or a code scanned for it; NOT_FOUND when it was never scanned nor overridden
    (nothing is known of it)."""
    org, text = await _ticket_scope(viewer, organization_id, ticket_id)
    async with connection() as conn:
        found = await _read_ticket(conn, org, text)
    if found is None:
        raise NotFound("ticket not found", field="ticketId")
    return found


async def override_ticket(
    *, viewer: Viewer, organization_id: Any, ticket_id: str, status: str, reason: str, address: str | None
) -> Ticket:
    """Mark a ticket used or reactivate it, with the reason; a refunded ticket stays refunded."""
    org, text = await _ticket_scope(viewer, organization_id, ticket_id)
    why = trimmed_text(reason, field="reason", limit=MAX_REASON)
    if status not in (VALID, USED):
        raise BadInput("status must be valid or used", field="status")
    async with connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1::text || $2))", str(org), text)
        before = await _read_ticket(conn, org, text)
        if before is not None and before.status == REFUNDED:
            raise BadInput("the ticket's order was refunded: it cannot be marked used or reactivated", field="status")
        await conn.execute(
            "INSERT INTO ticket_overrides (organization_id, ticket_id, status, reason, actor) VALUES ($1, $2, $3, $4, $5)",
            org, text, status, why, viewer.subject,
        )  # fmt: skip
        after = await _read_ticket(conn, org, text)
        assert after is not None
        await audit.record(
            conn, action=audit.TICKET_OVERRIDDEN, actor=Actor.of(viewer, address), organization_id=org, target=text,
            before={"status": before.status if before else None}, after={"status": after.status}, reason=why,
        )  # fmt: skip
    return after


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True)
class AdminRefund:
    id: uuid.UUID
    organization_id: uuid.UUID
    sale_event_id: str
    refund_event_id: str
    order_id: str | None
    amount_minor: int
    service_fee_minor: int
    currency: str
    reason: str
    issued_by: str
    status: str
    created_at: datetime


SALE = """
SELECT event_id, type, status, profile_id, partner_profile_id, split_percent, customer_id, amount_minor, currency,
       service_fee_minor, category, order_id, creator_id, buyer_email_hash
FROM transactions
WHERE organization_id = $1 AND event_id = $2 AND NOT is_refund AND status IN ('completed', 'refunded')
FOR UPDATE
"""
REFUNDED_SO_FAR = """
SELECT COALESCE(-sum(amount_minor), 0)::bigint, COALESCE(sum(service_fee_minor), 0)::bigint
FROM transactions WHERE organization_id = $1 AND refund_of = $2 AND is_refund
"""
REFUND_ROW = """
INSERT INTO transactions (organization_id, event_id, type, status, is_refund, refund_of, profile_id, partner_profile_id,
                          split_percent, customer_id, amount_minor, currency, service_fee_minor, category, order_id,
                          occurred_at, metadata, creator_id, buyer_email_hash)
VALUES ($1, $2, $3, 'refunded', true, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, now(), $14::jsonb, $15, $16)
"""
ADMIN_REFUND = """
INSERT INTO admin_refunds (organization_id, id, sale_event_id, refund_event_id, order_id, amount_minor, service_fee_minor,
                           currency, reason, issued_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id, organization_id, sale_event_id, refund_event_id, order_id, amount_minor, service_fee_minor, currency, reason,
          issued_by, status, created_at
"""


def _refund_amount(amount_minor: int | None, remaining: int) -> int:
    if remaining <= 0:
        raise BadInput("the transaction is already refunded in full", field="transactionId")
    amount = remaining if amount_minor is None else amount_minor
    if not 1 <= amount <= remaining:
        raise BadInput(f"amountMinor must be between 1 and {remaining} (what is left to refund)", field="amountMinor")
    return amount


async def issue_refund(
    *, viewer: Viewer, organization_id: Any, transaction_id: str, amount_minor: int | None, refund_service_fee: bool,
    reason: str, address: str | None,
) -> AdminRefund:  # fmt: skip
    """Refund a sale in full (no amount) or in part, its service fee with it or not. The
    refund row is the ledger's own kind (negative, at now, linked to the sale, which becomes
    refunded), so revenue, P&L and reports count it as they count order.refunded."""
    org = await platform_admin_scope(viewer, organization_id, refusal="refunds need a platform admin token")
    if org is None:
        raise BadInput("name the organization", field="organizationId")
    why = trimmed_text(reason, field="reason", limit=MAX_REASON)
    async with connection() as conn, conn.transaction():
        sale = await conn.fetchrow(SALE, org, transaction_id)
        if sale is None:
            raise NotFound("transaction not found (a completed sale)", field="transactionId")
        refunded, fee_refunded = await conn.fetchrow(REFUNDED_SO_FAR, org, sale["event_id"])
        amount = _refund_amount(amount_minor, sale["amount_minor"] - refunded)
        fee = sale["service_fee_minor"] - fee_refunded if refund_service_fee else 0
        if refund_service_fee and fee <= 0:
            raise BadInput("the service fee is already refunded, or there is none", field="refundServiceFee")
        refund_id = uuid.uuid4()
        refund_event = f"admin-refund-{refund_id}"
        metadata = {"adminRefundId": str(refund_id), "issuedBy": viewer.subject, "reason": why}
        await conn.execute(
            REFUND_ROW, org, refund_event, sale["type"], sale["event_id"], sale["profile_id"], sale["partner_profile_id"],
            sale["split_percent"], sale["customer_id"], -amount, sale["currency"], fee, sale["category"], sale["order_id"],
            json.dumps(metadata), sale["creator_id"], sale["buyer_email_hash"],
        )  # fmt: skip
        await conn.execute(
            "UPDATE transactions SET status = 'refunded' WHERE organization_id = $1 AND event_id = $2 AND status = 'completed'",
            org, sale["event_id"],
        )  # fmt: skip
        row = await conn.fetchrow(
            ADMIN_REFUND, org, refund_id, sale["event_id"], refund_event, sale["order_id"], amount, fee, sale["currency"], why,
            viewer.subject,
        )  # fmt: skip
        issued = AdminRefund(*row)
        await audit.record(
            conn, action=audit.REFUND_ISSUED_BY_ADMIN, actor=Actor.of(viewer, address), organization_id=org,
            target=sale["event_id"], reason=why,
            before={"status": sale["status"], "refunded_minor": refunded, "service_fee_refunded_minor": fee_refunded},
            after={"status": "refunded", "refunded_minor": refunded + amount, "service_fee_refunded_minor": fee_refunded + fee,
                   "refund_event_id": refund_event, "admin_refund_id": str(refund_id), "currency": sale["currency"]},
        )  # fmt: skip
        # The host platform executes the refund: its webhook channels subscribed to
        # refund.requested get it, durably, in this transaction.
        await enqueue_notification(conn, organization_id=org, kind=REFUND_REQUESTED, payload={
            "refundId": str(issued.id), "transactionId": issued.sale_event_id, "refundEventId": issued.refund_event_id,
            "orderId": issued.order_id, "amountMinor": issued.amount_minor, "serviceFeeMinor": issued.service_fee_minor,
            "currency": issued.currency, "reason": issued.reason,
        })  # fmt: skip
    return issued
