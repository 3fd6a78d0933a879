"""Failed payments as the API shows them: rows, statistics and their admin state."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry

from schema.common import ResolvedRange


@strawberry.enum(description="What admins did about a failed payment.")
class FailedPaymentStatus(Enum):
    OPEN = strawberry.enum_value("open", description="Nobody acted on it yet.")
    RETRY_REQUESTED = strawberry.enum_value(
        "retry_requested", description="The host platform was asked to retry it (payment.retry_requested notification)."
    )
    RESOLVED = strawberry.enum_value("resolved", description="Marked resolved: nothing more to do.")


@strawberry.enum(description="A rolling window ending now.")
class FailedPaymentWindow(Enum):
    LAST_24_HOURS = strawberry.enum_value("last_24_hours", description="The 24 hours before now.")
    LAST_7_DAYS = strawberry.enum_value("last_7_days", description="The 7 days (168 hours) before now.")
    LAST_30_DAYS = strawberry.enum_value("last_30_days", description="The 30 days before now.")


@strawberry.type(description="A payment that failed (a payment.failed event) and what admins did about it.")
class FailedPayment:
    organization_id: strawberry.ID = strawberry.field(description="Its organization.")
    organization_name: str = strawberry.field(description="Its organization's name.")
    transaction_id: str = strawberry.field(description="Its transaction id: the payment.failed event's id.")
    occurred_at: datetime = strawberry.field(description="When it failed.")
    amount_minor: int | None = strawberry.field(description="The amount tried, integer minor units; null if not reported.")
    currency: str | None = strawberry.field(description="ISO 4217 code of the amount; null if not reported.")
    reason: str = strawberry.field(description="Why it failed (properties.reason, e.g. card_declined); \"unknown\" if not reported.")
    order_id: str | None = strawberry.field(description="The order it was for (properties.orderId), if reported.")
    customer_id: str | None = strawberry.field(description="Who paid: u:<userId>, a:<anonymousId>, or a cookie-less visitor hash.")
    status: FailedPaymentStatus = strawberry.field(description="Open, retry requested or resolved.")
    note: str | None = strawberry.field(description="The reason the admin gave for the latest act; null while open.")
    retry_requested_by: str | None = strawberry.field(description="Who asked the host platform to retry it.")
    retry_requested_at: datetime | None = strawberry.field(description="When the retry was requested.")
    resolved_by: str | None = strawberry.field(description="Who marked it resolved.")
    resolved_at: datetime | None = strawberry.field(description="When it was marked resolved.")


@strawberry.type(description="A page of failed payments, newest first.")
class FailedPaymentPage:
    range: ResolvedRange = strawberry.field(description="The range read, after presets were resolved.")
    payments: list[FailedPayment] = strawberry.field(description="The failed payments.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page; null when there is none.")


@strawberry.type(description="Failed and successful payments in one rolling window.")
class FailedPaymentWindowFigures:
    window: FailedPaymentWindow = strawberry.field(description="The window.")
    failed: int = strawberry.field(description="payment.failed events in the window.")
    successful: int = strawberry.field(
        description="Sales that went through in the window (bookings, gifts, subscriptions, orders, marketplace purchases; "
        "completed or refunded since; not pending)."
    )
    failure_rate: float | None = strawberry.field(description="failed / (failed + successful); null when there was no payment.")


@strawberry.type(description="How many failed payments of one reason.")
class FailedPaymentReasonCount:
    reason: str = strawberry.field(description="The reason (\"unknown\" when none was reported).")
    count: int = strawberry.field(description="Failed payments with it.")


@strawberry.type(description="How many failed payments stand in one admin status.")
class FailedPaymentStatusCount:
    status: FailedPaymentStatus = strawberry.field(description="The status.")
    count: int = strawberry.field(description="Failed payments in it.")


@strawberry.type(description="Failed payments of the last 24 hours, 7 and 30 days, and why they failed.")
class FailedPaymentStats:
    organization_id: strawberry.ID | None = strawberry.field(description="The organization; null for every organization.")
    windows: list[FailedPaymentWindowFigures] = strawberry.field(description="Counts and failure rate per window, shortest first.")
    by_reason: list[FailedPaymentReasonCount] = strawberry.field(description="The last 30 days by reason, most frequent first.")
    by_status: list[FailedPaymentStatusCount] = strawberry.field(description="The last 30 days by admin status (every status).")
