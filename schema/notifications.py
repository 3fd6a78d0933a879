"""Notification channels and their deliveries as the API shows them."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON


@strawberry.enum(description="Where a channel sends.")
class NotificationChannelKind(Enum):
    WEBHOOK = strawberry.enum_value("webhook", description="An https URL, called with a signed POST (Standard Webhooks).")
    EMAIL = strawberry.enum_value("email", description="Email to the channel's recipients, through the installation's SMTP server.")


@strawberry.enum(description="Where a delivery stands.")
class DeliveryStatus(Enum):
    PENDING = strawberry.enum_value("pending", description="Not delivered yet: waiting for its next attempt.")
    DELIVERED = strawberry.enum_value("delivered", description="The receiver accepted it.")
    DEAD = strawberry.enum_value("dead", description="Every attempt failed; retryDelivery tries once more.")


@strawberry.type(description="A destination for notifications: a webhook or an email channel.")
class NotificationChannel:
    id: strawberry.ID = strawberry.field(description="Channel id (UUID).")
    organization_id: strawberry.ID | None = strawberry.field(description="Its organization; null for the platform's own channels.")
    kind: NotificationChannelKind = strawberry.field(description="Webhook or email.")
    name: str = strawberry.field(description="A name to tell it apart.")
    url: str | None = strawberry.field(description="Webhooks: the URL called.")
    recipients: list[str] = strawberry.field(description="Email channels: the addresses mailed.")
    kinds: list[str] = strawberry.field(description="The notification kinds it receives (see notificationKinds).")
    enabled: bool = strawberry.field(description="False: nothing is sent; its pending deliveries wait.")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it last changed.")


@strawberry.type(description="A channel with its signing secret, shown this once.")
class NotificationChannelWithSecret:
    channel: NotificationChannel = strawberry.field(description="The channel.")
    secret: str | None = strawberry.field(
        description="Webhooks: the signing secret (whsec_...), shown only now; receivers verify webhook-signature with it. "
        "Null for email channels."
    )


@strawberry.type(description="A notification kind a channel may receive.")
class NotificationKind:
    name: str = strawberry.field(description="The kind, as channels list it.")
    description: str = strawberry.field(description="What raises it.")


@strawberry.type(description="One attempt at a delivery.")
class DeliveryAttempt:
    number: int = strawberry.field(description="1 for the first attempt.")
    attempted_at: datetime = strawberry.field(description="When it started.")
    status_code: int | None = strawberry.field(description="The receiver's HTTP status (SMTP reply code for email); null if none came.")
    error: str | None = strawberry.field(description="Why it failed; null when it was delivered.")
    duration_ms: int = strawberry.field(description="How long it took, in milliseconds.")
    response_excerpt: str | None = strawberry.field(description="The start of the receiver's answer.")


@strawberry.type(description="One notification for one channel.")
class NotificationDelivery:
    id: strawberry.ID = strawberry.field(description="Delivery id: the webhook-id header of every attempt.")
    organization_id: strawberry.ID | None = strawberry.field(description="Its organization; null for platform channels.")
    channel_id: strawberry.ID = strawberry.field(description="The channel.")
    kind: str = strawberry.field(description="The notification kind.")
    payload: JSON = strawberry.field(description="What it says (the webhook body's data).")
    status: DeliveryStatus = strawberry.field(description="Pending, delivered or dead.")
    attempt_count: int = strawberry.field(description="Attempts made so far (attempt n of maxAttempts).")
    max_attempts: int = strawberry.field(description="Attempts allowed before it is marked dead.")
    next_attempt_at: datetime | None = strawberry.field(description="Pending: when it is tried next.")
    last_error: str | None = strawberry.field(description="The last failed attempt's error.")
    created_at: datetime = strawberry.field(description="When the notification was raised.")
    delivered_at: datetime | None = strawberry.field(description="When the receiver accepted it.")
    attempts: list[DeliveryAttempt] = strawberry.field(description="Every attempt, first first.")


@strawberry.type(description="A page of deliveries, newest first.")
class DeliveryPage:
    deliveries: list[NotificationDelivery] = strawberry.field(description="The deliveries.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page; null when there is none.")


@strawberry.type(description="Whether notifications are getting through: an organization's, or the platform channels'.")
class WebhookHealth:
    failed_last_24h: int = strawberry.field(description="Deliveries with at least one failed attempt in the last 24 hours.")
    delivered_last_24h: int = strawberry.field(description="Deliveries the receiver accepted in the last 24 hours.")
    pending: int = strawberry.field(description="Deliveries not delivered yet, first attempts included.")
    pending_retries: int = strawberry.field(description="Pending deliveries waiting for a retry after a failed attempt.")
    dead: int = strawberry.field(description="Deliveries whose every attempt failed (retryDelivery tries once more).")
    oldest_pending_at: datetime | None = strawberry.field(description="When the longest-waiting pending delivery was raised.")
