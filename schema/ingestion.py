"""Event ingestion: what clients send and what they are told back."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON


@strawberry.input(description="Where the event came from; used for attribution, device and geo enrichment.")
class EventContextInput:
    ip: str | None = strawberry.field(default=None, description="Client IP (IPv4 or IPv6). Defaults to the caller's address only for the REST beacon endpoints.")
    user_agent: str | None = strawberry.field(default=None, description="The browser's User-Agent header.")
    url: str | None = strawberry.field(default=None, description="Page URL; UTM parameters are read from its query string.")
    referrer: str | None = strawberry.field(default=None, description="document.referrer of the page.")
    utm_source: str | None = strawberry.field(default=None, description="Overrides utm_source from the URL.")
    utm_medium: str | None = strawberry.field(default=None, description="Overrides utm_medium from the URL.")
    utm_campaign: str | None = strawberry.field(default=None, description="Overrides utm_campaign from the URL.")
    utm_term: str | None = strawberry.field(default=None, description="Overrides utm_term from the URL.")
    utm_content: str | None = strawberry.field(default=None, description="Overrides utm_content from the URL.")
    dnt: bool | None = strawberry.field(default=None, description="The browser sent Do-Not-Track: the event is counted anonymously or dropped, as the server is configured.")


@strawberry.input(description="One analytics event. `type` is any name; the names in the README's event vocabulary (e.g. profile.viewed) drive profile analytics.")
class TrackEventInput:
    type: str = strawberry.field(description="Event name, e.g. profile.viewed, profile.inquiry, signup.")
    event_id: str | None = strawberry.field(default=None, description="Client idempotency key (max 128 chars): a repeat is reported as a duplicate and never counted twice.")
    profile_id: strawberry.ID | None = strawberry.field(default=None, description="The profile the event is about.")
    occurred_at: datetime | None = strawberry.field(default=None, description="When it happened, ISO 8601 with a UTC offset (times without one are rejected); defaults to now; at most one hour in the future.")
    anonymous_id: str | None = strawberry.field(default=None, description="Device or cookie id of an anonymous visitor.")
    user_id: str | None = strawberry.field(default=None, description="Your id of a signed-in user.")
    session_id: str | None = strawberry.field(default=None, description="Your session id; when absent pulsegraph assigns one (30 minutes of inactivity or 24 hours end a session).")
    engagement_ms: int | None = strawberry.field(default=None, description="Time the visitor spent on the page, sent by a page-leave beacon.")
    amount_minor: int | None = strawberry.field(default=None, description="For money events (gift.purchased, booking.completed, subscription.charged; service or org admin tokens only): amount in integer minor units.")
    currency: str | None = strawberry.field(default=None, description="For money events (service or org admin tokens only): ISO 4217 code.")
    properties: JSON | None = strawberry.field(default=None, description="Free-form JSON object (max 8 KB).")
    context: EventContextInput | None = strawberry.field(default=None, description="Where the event came from.")


@strawberry.enum(description="Domain events other services publish about what happened on the platform.")
class DomainEventType(Enum):
    PROFILE_VIEWED = strawberry.enum_value("profile.viewed", description="Someone opened a profile.")
    PROFILE_INQUIRY = strawberry.enum_value("profile.inquiry", description="Someone contacted a profile.")
    GIFT_PURCHASED = strawberry.enum_value("gift.purchased", description="A gift was bought for a profile (needs amountMinor and currency).")
    BOOKING_COMPLETED = strawberry.enum_value("booking.completed", description="A booking with a profile was completed (needs amountMinor and currency).")
    SUBSCRIPTION_CHARGED = strawberry.enum_value("subscription.charged", description="A subscription to a profile was charged (needs amountMinor and currency).")
    ORDER_PAID = strawberry.enum_value("order.paid", description="An order was paid (needs amountMinor and currency; properties.orderId, optional properties.quantity and properties.listingId for tickets).")
    ORDER_REFUNDED = strawberry.enum_value("order.refunded", description="An order was refunded (needs amountMinor and currency; properties.orderId of the paid order).")
    PAYMENT_FAILED = strawberry.enum_value("payment.failed", description="A payment attempt failed (amountMinor and currency optional; properties.reason, e.g. card_declined, up to 64 characters).")
    ACCOUNT_CREATED = strawberry.enum_value("account.created", description="A user account was created (send context.ip).")
    TICKET_SCANNED = strawberry.enum_value("ticket.scanned", description="A ticket was scanned (properties.ticketId, properties.deviceId or context.userAgent; optional orderId, code, and listingId: the ticketed event).")
    TICKET_SCAN_FAILED = strawberry.enum_value("ticket.scan_failed", description="A scan let nobody in (properties.errorType: invalid_code, already_used or network; properties.deviceId; properties.ticketId and/or code; optional orderId, listingId, message).")
    AFFILIATE_COMMISSION = strawberry.enum_value("affiliate.commission", description="An affiliate commission was earned (needs amountMinor and currency; profileId optional).")
    PAYOUT_SETTLED = strawberry.enum_value("payout.settled", description="A payout was settled (needs amountMinor and currency; properties.payoutId, profileId optional).")
    INVOICE_ISSUED = strawberry.enum_value("invoice.issued", description="An invoice was issued to the organization (needs amountMinor, currency, properties.invoiceId and properties.dueDate YYYY-MM-DD).")
    INVOICE_PAID = strawberry.enum_value("invoice.paid", description="An invoice was paid in full (needs amountMinor, currency and properties.invoiceId).")
    USER_IDENTIFIED = strawberry.enum_value("user.identified", description="A user signed in on a device: links anonymousId to userId (needs both); properties.$set / $set_once set person properties.")
    SERVICE_EXECUTED = strawberry.enum_value("service.executed", description="A service ran once (properties.serviceId, latencyMs, success; optional executionId, errorCode when it failed, category).")
    MARKETPLACE_SEARCHED = strawberry.enum_value("marketplace.searched", description="A marketplace search (properties.query, resultsCount; optional category).")
    MARKETPLACE_VIEWED = strawberry.enum_value("marketplace.viewed", description="A service's page was viewed (properties.serviceId; optional category).")
    MARKETPLACE_CONVERTED = strawberry.enum_value("marketplace.converted", description="A service was bought (needs amountMinor and currency; properties.serviceId, orderId; optional category, creatorId, takeRateBps).")
    PROFILE_FAVORITED = strawberry.enum_value("profile.favorited", description="Someone made a profile a favorite.")
    PROFILE_UNFAVORITED = strawberry.enum_value("profile.unfavorited", description="Someone removed a profile from their favorites.")
    PROFILE_SHARED = strawberry.enum_value("profile.shared", description="Someone shared a profile.")
    PROFILE_CLICKED = strawberry.enum_value("profile.clicked", description="Someone clicked one of a profile's links (properties.target names it).")
    LISTING_PUBLISHED = strawberry.enum_value("listing.published", description="A ticketed event was published or changed (properties.listingId, title, startsAt and endsAt as ISO 8601 with offset).")
    LISTING_STARTED = strawberry.enum_value("listing.started", description="A ticketed event went live (properties.listingId).")
    LISTING_ENDED = strawberry.enum_value("listing.ended", description="A ticketed event ended (properties.listingId).")
    WEBHOOK_FAILED = strawberry.enum_value("webhook.failed", description="One of the host platform's own webhooks failed (service token; properties.endpoint, optional eventType, statusCode, error, attempt, maxAttempts).")


@strawberry.input(description="A domain event published by a backend service; idempotent by `eventId`.")
class DomainEventInput:
    event_id: str = strawberry.field(description="The publishing service's unique id of the event (idempotency key).")
    type: DomainEventType = strawberry.field(description="What happened.")
    profile_id: strawberry.ID | None = strawberry.field(default=None, description="The profile it happened to; required for profile event types.")
    occurred_at: datetime | None = strawberry.field(default=None, description="When it happened; defaults to now.")
    anonymous_id: str | None = strawberry.field(default=None, description="Anonymous visitor id, if known.")
    user_id: str | None = strawberry.field(default=None, description="Signed-in user id, if known.")
    session_id: str | None = strawberry.field(default=None, description="Session id, if known.")
    amount_minor: int | None = strawberry.field(default=None, description="Money events: amount in integer minor units.")
    currency: str | None = strawberry.field(default=None, description="Money events: ISO 4217 code.")
    properties: JSON | None = strawberry.field(default=None, description="Free-form JSON object (max 8 KB).")
    context: EventContextInput | None = strawberry.field(default=None, description="Where the event came from.")


@strawberry.type(description="An event that was not stored, and why.")
class RejectedEvent:
    index: int = strawberry.field(description="Position of the event in the submitted list (0-based).")
    field: str | None = strawberry.field(description="The offending input field, e.g. occurredAt.")
    reason: str = strawberry.field(description="What was wrong with it.")


@strawberry.type(description="What happened to a submitted batch. Valid events are stored even when others are rejected.")
class TrackResult:
    accepted: int = strawberry.field(description="New events stored durably.")
    duplicates: int = strawberry.field(description="Events whose eventId was already stored; not counted again.")
    dropped: int = strawberry.field(description="Events dropped on purpose (Do-Not-Track with drop mode).")
    rejected: list[RejectedEvent] = strawberry.field(description="Invalid events, with index and reason.")
    event_ids: list[str] = strawberry.field(
        description="Ids of the accepted events, in submission order (server-generated where no eventId was sent): retry with these to stay idempotent."
    )
