"""The support desk: search, tickets, refunds and organization notes (thin: call the support service, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import support as service
from resolvers.common import address_of, guarded, viewer_of
from schema.support import (
    AdminRefund,
    AdminRefundStatus,
    OrganizationNote,
    ScanErrorType,
    SupportHit,
    SupportMatch,
    Ticket,
    TicketOverride,
    TicketOverrideStatus,
    TicketScan,
    TicketStatus,
)

OrgArg = Annotated[strawberry.ID | None, strawberry.argument(description="Only this organization (platform admins; org admins: theirs).")]
NeededOrgArg = Annotated[strawberry.ID, strawberry.argument(description="The organization.")]


def to_hit(hit: service.SupportHit) -> SupportHit:
    return SupportHit(
        matched=SupportMatch(hit.matched), organization_id=strawberry.ID(str(hit.organization_id)),
        organization_name=hit.organization_name, transaction_id=hit.transaction_id, order_id=hit.order_id, type=hit.type, status=hit.status, amount_minor=hit.amount_minor, currency=hit.currency,
        occurred_at=hit.occurred_at, ticket_id=hit.ticket_id,
    )  # fmt: skip


def to_note(note: service.OrganizationNote) -> OrganizationNote:
    return OrganizationNote(
        id=strawberry.ID(str(note.id)), organization_id=strawberry.ID(str(note.organization_id)), author=note.author,
        body=note.body, created_at=note.created_at,
    )  # fmt: skip


async def support_search(
    info: Info,
    query: Annotated[str, strawberry.argument(
        description="A transaction id, order id, buyer email (exact, any case), ticket id or scanned code, or"
        " organization name (1..200 characters)."
    )],
    organization_id: OrgArg = None,
    limit: Annotated[int, strawberry.argument(description="At most this many per kind of match (1..100).")] = 20,
) -> list[SupportHit]:
    hits = await service.support_search(viewer=viewer_of(info), query=query, organization_id=organization_id, limit=limit)
    return [to_hit(hit) for hit in hits]


def to_ticket(found: service.Ticket) -> Ticket:
    return Ticket(
        organization_id=strawberry.ID(str(found.organization_id)), ticket_id=found.ticket_id, status=TicketStatus(found.status),
        order_id=found.order_id, listing_id=found.listing_id, listing_title=found.listing_title,
        scans=[TicketScan(event_id=s.event_id, at=s.at, device_id=s.device_id, code=s.code, message=s.message,
                          error_type=ScanErrorType(s.error_type) if s.error_type else None) for s in found.scans],
        overrides=[TicketOverride(status=TicketOverrideStatus(o.status), reason=o.reason, actor=o.actor, at=o.at)
                   for o in found.overrides],
    )  # fmt: skip


TicketArg = Annotated[str, strawberry.argument(description="The ticket's id or code.")]


async def ticket(info: Info, organization_id: NeededOrgArg, ticket_id: TicketArg) -> Ticket:
    return to_ticket(await service.ticket(viewer=viewer_of(info), organization_id=organization_id, ticket_id=ticket_id))


async def override_ticket(
    info: Info, organization_id: NeededOrgArg, ticket_id: TicketArg,
    status: Annotated[TicketOverrideStatus, strawberry.argument(description="USED to mark it used, VALID to reactivate it.")],
    reason: Annotated[str, strawberry.argument(description="Why (1..500 characters); kept in the audit log.")],
) -> Ticket:  # fmt: skip
    found = await service.override_ticket(
        viewer=viewer_of(info), organization_id=organization_id, ticket_id=ticket_id, status=status.value, reason=reason,
        address=address_of(info),
    )  # fmt: skip
    return to_ticket(found)


def to_refund(refund: service.AdminRefund) -> AdminRefund:
    return AdminRefund(
        id=strawberry.ID(str(refund.id)), organization_id=strawberry.ID(str(refund.organization_id)),
        transaction_id=refund.sale_event_id, refund_transaction_id=refund.refund_event_id, order_id=refund.order_id,
        amount_minor=refund.amount_minor, service_fee_minor=refund.service_fee_minor, currency=refund.currency,
        reason=refund.reason, issued_by=refund.issued_by, status=AdminRefundStatus(refund.status), created_at=refund.created_at,
    )  # fmt: skip


async def issue_refund(
    info: Info, organization_id: NeededOrgArg,
    transaction_id: Annotated[str, strawberry.argument(description="The sale to refund (its transaction id, the event id).")],
    refund_service_fee: Annotated[bool, strawberry.argument(description="Refund its service fee too.")],
    reason: Annotated[str, strawberry.argument(description="Why (1..500 characters); kept in the ledger and the audit log.")],
    amount_minor: Annotated[int | None, strawberry.argument(description="A partial refund, integer minor units; omit to refund what is left.")] = None,
) -> AdminRefund:  # fmt: skip
    refund = await service.issue_refund(
        viewer=viewer_of(info), organization_id=organization_id, transaction_id=transaction_id, amount_minor=amount_minor,
        refund_service_fee=refund_service_fee, reason=reason, address=address_of(info),
    )  # fmt: skip
    return to_refund(refund)


async def organization_notes(info: Info, organization_id: NeededOrgArg) -> list[OrganizationNote]:
    return [to_note(n) for n in await service.organization_notes(viewer=viewer_of(info), organization_id=organization_id)]


async def add_organization_note(
    info: Info, organization_id: NeededOrgArg,
    body: Annotated[str, strawberry.argument(description="The note (1..5000 characters).")],
) -> OrganizationNote:  # fmt: skip
    note = await service.add_organization_note(
        viewer=viewer_of(info), organization_id=organization_id, body=body, address=address_of(info)
    )
    return to_note(note)


async def delete_organization_note(
    info: Info, organization_id: NeededOrgArg, id: Annotated[strawberry.ID, strawberry.argument(description="The note.")]  # noqa: A002
) -> strawberry.ID:
    deleted = await service.delete_organization_note(
        viewer=viewer_of(info), organization_id=organization_id, note_id=id, address=address_of(info)
    )
    return strawberry.ID(str(deleted))


@strawberry.type
class Query:
    """The support desk's reads, merged into the root by schema.root."""

    support_search: list[SupportHit] = guarded(
        Access.ORG_ADMINS, support_search,
        "Find transactions by their id, order id or buyer email, tickets by their id or a scanned code, and organizations"
        " by name: platform admins across organizations (or in the one named), organization admins in theirs.",
    )  # fmt: skip
    ticket: Ticket = guarded(
        Access.ORG_ADMINS, ticket,
        "A ticket (by its id or a scanned code): status (valid, used, refunded), order, event, scans (failed ones too)"
        " and manual overrides.",
    )  # fmt: skip
    organization_notes: list[OrganizationNote] = guarded(
        Access.PLATFORM_ADMINS, organization_notes, "Internal notes on an organization, newest first."
    )


@strawberry.type
class Mutation:
    """The support desk's writes, merged into the root by schema.root."""

    override_ticket: Ticket = guarded(
        Access.ORG_ADMINS, override_ticket,
        "Mark a ticket used or reactivate it, with a reason (audited); a refunded ticket cannot be changed.",
    )  # fmt: skip
    issue_refund: AdminRefund = guarded(
        Access.PLATFORM_ADMINS, issue_refund,
        "Refund a sale in full or in part, its service fee or not, with a reason: recorded in the ledger at once, audited as"
        " REFUND_ISSUED_BY_ADMIN, and kept as REQUESTED until the host platform executes it.",
    )  # fmt: skip
    add_organization_note: OrganizationNote = guarded(
        Access.PLATFORM_ADMINS, add_organization_note, "Add an internal note on an organization (audited)."
    )
    delete_organization_note: strawberry.ID = guarded(
        Access.PLATFORM_ADMINS, delete_organization_note,
        "Delete an internal note; the audit entry keeps what it said. Returns its id.",
    )  # fmt: skip
