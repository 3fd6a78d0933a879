"""Failed payments: the list, the statistics, resolving one and asking the host platform to
retry one (thin: call the service, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import failed_payments as service
from resolvers.common import RangeArg, address_of, guarded, optional_id, to_range_spec, to_resolved_range, viewer_of
from schema.failed_payments import (
    FailedPayment,
    FailedPaymentPage,
    FailedPaymentReasonCount,
    FailedPaymentStats,
    FailedPaymentStatus,
    FailedPaymentStatusCount,
    FailedPaymentWindow,
    FailedPaymentWindowFigures,
)

OrgArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="Only this organization (platform admins; none: every organization). Org admins: theirs."),
]
NeededOrgArg = Annotated[strawberry.ID, strawberry.argument(description="The organization of the payment.")]
TransactionArg = Annotated[str, strawberry.argument(description="The failed payment's transaction id (the payment.failed event id).")]
ReasonArg = Annotated[str, strawberry.argument(description="Why (1..500 characters); kept with the payment and in the audit log.")]


def to_payment(payment: service.FailedPayment) -> FailedPayment:
    return FailedPayment(
        organization_id=strawberry.ID(str(payment.organization_id)), organization_name=payment.organization_name,
        transaction_id=payment.transaction_id, occurred_at=payment.occurred_at, amount_minor=payment.amount_minor,
        currency=payment.currency, reason=payment.reason, order_id=payment.order_id, customer_id=payment.customer_id,
        status=FailedPaymentStatus(payment.status), note=payment.note, retry_requested_by=payment.retry_requested_by,
        retry_requested_at=payment.retry_requested_at, resolved_by=payment.resolved_by, resolved_at=payment.resolved_at,
    )  # fmt: skip


async def failed_payments(
    info: Info, time_range: RangeArg, organization_id: OrgArg = None,
    failure_reason: Annotated[str | None, strawberry.argument(description="Only payments that failed for this reason (e.g. card_declined, or unknown).")] = None,
    status: Annotated[FailedPaymentStatus | None, strawberry.argument(description="Only this admin status.")] = None,
    first: Annotated[int, strawberry.argument(description="Page size (1..100).")] = 20,
    after: Annotated[str | None, strawberry.argument(description="The endCursor of the previous page.")] = None,
) -> FailedPaymentPage:  # fmt: skip
    page = await service.failed_payments(
        viewer=viewer_of(info), organization_id=organization_id, time_range=to_range_spec(time_range), reason=failure_reason,
        status=status.value if status is not None else None, first=first, after=after,
    )  # fmt: skip
    return FailedPaymentPage(
        range=to_resolved_range(page.time_range), payments=[to_payment(p) for p in page.payments], end_cursor=page.end_cursor
    )


async def failed_payment_stats(info: Info, organization_id: OrgArg = None) -> FailedPaymentStats:
    stats = await service.failed_payment_stats(viewer=viewer_of(info), organization_id=organization_id)
    return FailedPaymentStats(
        organization_id=optional_id(stats.organization_id),
        windows=[FailedPaymentWindowFigures(window=FailedPaymentWindow(w.window), failed=w.failed, successful=w.successful,
                                            failure_rate=w.failure_rate) for w in stats.windows],
        by_reason=[FailedPaymentReasonCount(reason=reason, count=count) for reason, count in stats.by_reason],
        by_status=[FailedPaymentStatusCount(status=FailedPaymentStatus(status), count=count) for status, count in stats.by_status],
    )  # fmt: skip


async def resolve_failed_payment(
    info: Info, organization_id: NeededOrgArg, transaction_id: TransactionArg, reason: ReasonArg
) -> FailedPayment:
    payment = await service.resolve_failed_payment(
        viewer=viewer_of(info), organization_id=organization_id, transaction_id=transaction_id, reason=reason,
        address=address_of(info),
    )  # fmt: skip
    return to_payment(payment)


async def request_payment_retry(
    info: Info, organization_id: NeededOrgArg, transaction_id: TransactionArg, reason: ReasonArg
) -> FailedPayment:
    payment = await service.request_payment_retry(
        viewer=viewer_of(info), organization_id=organization_id, transaction_id=transaction_id, reason=reason,
        address=address_of(info),
    )  # fmt: skip
    return to_payment(payment)


@strawberry.type
class Query:
    """Failed payments' reads, merged into the root by schema.root."""

    failed_payments: FailedPaymentPage = guarded(
        Access.ORG_ADMINS, failed_payments,
        "Failed payments (payment.failed events) in the range, newest first, with their reason, customer and admin status;"
        " filter by reason and status, page with first/after.",
    )  # fmt: skip
    failed_payment_stats: FailedPaymentStats = guarded(
        Access.ORG_ADMINS, failed_payment_stats,
        "Failed payments of the last 24 hours, 7 and 30 days with the failure rate (failed / (failed + successful)), and"
        " the last 30 days by reason and by admin status.",
    )  # fmt: skip


@strawberry.type
class Mutation:
    """Failed payments' admin acts, merged into the root by schema.root."""

    resolve_failed_payment: FailedPayment = guarded(
        Access.ORG_ADMINS, resolve_failed_payment,
        "Mark a failed payment resolved, with a reason (audited as failed_payment.resolved); a resolved one stays resolved.",
    )  # fmt: skip
    request_payment_retry: FailedPayment = guarded(
        Access.ORG_ADMINS, request_payment_retry,
        "Ask the host platform to retry an open failed payment, with a reason: a payment.retry_requested notification goes"
        " to the organization's channels (signed webhooks) and the act is audited as failed_payment.retry_requested."
        " A resolved payment, or one whose retry was requested already, is refused.",
    )  # fmt: skip
