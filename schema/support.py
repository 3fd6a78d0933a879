"""The support desk's GraphQL types: search hits and organization notes."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry


@strawberry.enum(description="What a support search matched.")
class SupportMatch(Enum):
    TRANSACTION_ID = strawberry.enum_value("transaction_id", description="A transaction's id (the event id that recorded it).")
    ORDER_ID = strawberry.enum_value("order_id", description="The order a transaction belongs to.")
    BUYER_EMAIL = strawberry.enum_value(
        "buyer_email", description="The buyer's email (properties.buyerEmail), exactly, in any case; only its hash is stored."
    )
    ORGANIZATION_NAME = strawberry.enum_value("organization_name", description="An organization's name, exactly or as a prefix.")
    TICKET = strawberry.enum_value("ticket", description="A ticket's id, or a code a scanner read, exactly (ticket.scanned and ticket.scan_failed events).")


@strawberry.type(description="One thing a support search found: a transaction, an organization (transaction fields null), or a ticket (ticketId, orderId, status and occurredAt set).")
class SupportHit:
    matched: SupportMatch = strawberry.field(description="What the query matched.")
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    organization_name: str = strawberry.field(description="Its name.")
    transaction_id: str | None = strawberry.field(description="The transaction's id (its event id).")
    order_id: str | None = strawberry.field(description="Its order id, if any.")
    type: str | None = strawberry.field(description="booking, gift, subscription, affiliate or order.")
    status: str | None = strawberry.field(description="A transaction: pending, completed, refunded or failed; a ticket: valid, used or refunded.")
    amount_minor: int | None = strawberry.field(description="Amount in integer minor units (negative: a refund).")
    currency: str | None = strawberry.field(description="ISO 4217 currency of the amount.")
    occurred_at: datetime | None = strawberry.field(description="When it happened (UTC); a ticket: its latest scan.")
    ticket_id: str | None = strawberry.field(description="A ticket: its id, or the code scanned when no scan named the ticket (look it up with `ticket`).")


@strawberry.type(description="A platform admin's internal note on an organization; its members never see it.")
class OrganizationNote:
    id: strawberry.ID = strawberry.field(description="The note's id.")
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    author: str = strawberry.field(description="Who wrote it (user:<id>).")
    body: str = strawberry.field(description="The note.")
    created_at: datetime = strawberry.field(description="When it was written.")


@strawberry.enum(description="A ticket's status.")
class TicketStatus(Enum):
    VALID = strawberry.enum_value("valid", description="May enter: never scanned, or reactivated by support.")
    USED = strawberry.enum_value("used", description="Scanned, or marked used by support.")
    REFUNDED = strawberry.enum_value("refunded", description="Its order was refunded.")


@strawberry.enum(description="What support may set a ticket to.")
class TicketOverrideStatus(Enum):
    VALID = strawberry.enum_value("valid", description="Reactivate it.")
    USED = strawberry.enum_value("used", description="Mark it used.")


@strawberry.enum(description="Why a scan at the door let nobody in.")
class ScanErrorType(Enum):
    INVALID_CODE = strawberry.enum_value("invalid_code", description="The code is no ticket.")
    ALREADY_USED = strawberry.enum_value("already_used", description="The ticket was used before.")
    NETWORK = strawberry.enum_value("network", description="The scanner could not check the ticket.")


@strawberry.type(description="One scan of a ticket at the door: successful (errorType null) or failed.")
class TicketScan:
    event_id: str = strawberry.field(description="The ticket.scanned or ticket.scan_failed event.")
    at: datetime = strawberry.field(description="When it was scanned.")
    device_id: str | None = strawberry.field(description="The scanning device, if it said.")
    error_type: ScanErrorType | None = strawberry.field(description="Why it failed; null: it let the holder in.")
    code: str | None = strawberry.field(description="The code the scanner read, if it said.")
    message: str | None = strawberry.field(description="The scanner's message about a failure, if any.")


@strawberry.type(description="A manual change of a ticket's status by support.")
class TicketOverride:
    status: TicketOverrideStatus = strawberry.field(description="What it was set to.")
    reason: str = strawberry.field(description="Why, as the admin wrote it.")
    actor: str = strawberry.field(description="Who (user:<id>).")
    at: datetime = strawberry.field(description="When.")


@strawberry.type(description="A ticket as support sees it: status, order, scans and overrides.")
class Ticket:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    ticket_id: str = strawberry.field(description="The ticket's id or code.")
    status: TicketStatus = strawberry.field(description="Its status: the latest successful scan or override, unless its order was refunded.")
    order_id: str | None = strawberry.field(description="Its order, as its scans named it.")
    listing_id: str | None = strawberry.field(description="The event it is for (properties.listingId of its latest scan naming one).")
    listing_title: str | None = strawberry.field(description="That event's title, from its latest listing.published (null if never published).")
    scans: list[TicketScan] = strawberry.field(description="Every scan, failed ones too, oldest first.")
    overrides: list[TicketOverride] = strawberry.field(description="Every manual override, oldest first.")


@strawberry.enum(description="Where an admin's refund stands with the host platform.")
class AdminRefundStatus(Enum):
    REQUESTED = strawberry.enum_value("requested", description="In the ledger; the host platform has yet to execute it.")
    EXECUTED = strawberry.enum_value("executed", description="The host platform executed it.")
    FAILED = strawberry.enum_value("failed", description="The host platform could not execute it.")


@strawberry.type(description="A refund an admin issued: in the ledger at once, then executed by the host platform.")
class AdminRefund:
    id: strawberry.ID = strawberry.field(description="The refund's id.")
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    transaction_id: str = strawberry.field(description="The refunded sale (its event id).")
    refund_transaction_id: str = strawberry.field(description="The ledger's refund row (its event id).")
    order_id: str | None = strawberry.field(description="The sale's order, if any.")
    amount_minor: int = strawberry.field(description="Amount refunded, integer minor units (positive).")
    service_fee_minor: int = strawberry.field(description="Service fee refunded with it, integer minor units (0: kept).")
    currency: str = strawberry.field(description="ISO 4217 currency.")
    reason: str = strawberry.field(description="Why, as the admin wrote it.")
    issued_by: str = strawberry.field(description="Who issued it (user:<id>).")
    status: AdminRefundStatus = strawberry.field(description="Where it stands with the host platform.")
    created_at: datetime = strawberry.field(description="When it was issued.")
