"""Notification channels and deliveries (thin: read the request, call the notification
services, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services.notifications import channels, deliveries
from app.services.notifications.kinds import KINDS
from resolvers.accounts import address_of, settings_of
from resolvers.common import guarded, optional_id, viewer_of
from schema.notifications import (
    DeliveryAttempt,
    DeliveryPage,
    DeliveryStatus,
    NotificationChannel,
    NotificationChannelKind,
    NotificationChannelWithSecret,
    NotificationDelivery,
    NotificationKind,
    WebhookHealth,
)

OrgArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(
        description="The organization; left out: your organization (organization admins) or the platform's own channels "
        "(platform admins)."
    ),
]
ChannelIdArg = Annotated[strawberry.ID, strawberry.argument(description="The channel.")]
DeliveryIdArg = Annotated[strawberry.ID, strawberry.argument(description="The delivery.")]
KindsArg = Annotated[list[str], strawberry.argument(description="The notification kinds it receives (see notificationKinds).")]
UrlArg = Annotated[
    str | None,
    strawberry.argument(description="Webhooks: an https URL whose host resolves to public addresses only."),
]
RecipientsArg = Annotated[list[str] | None, strawberry.argument(description="Email channels: 1..20 addresses.")]
NameArg = Annotated[str, strawberry.argument(description="A name to tell it apart (1..100 characters).")]


def to_channel(channel: channels.Channel) -> NotificationChannel:
    return NotificationChannel(
        id=strawberry.ID(str(channel.id)), organization_id=optional_id(channel.organization_id),
        kind=NotificationChannelKind(channel.kind), name=channel.name, url=channel.url, recipients=list(channel.recipients),
        kinds=list(channel.kinds), enabled=channel.enabled, created_at=channel.created_at, updated_at=channel.updated_at,
    )  # fmt: skip


def to_channel_with_secret(new: channels.NewChannel) -> NotificationChannelWithSecret:
    return NotificationChannelWithSecret(channel=to_channel(new.channel), secret=new.secret)


def to_delivery(delivery: deliveries.Delivery) -> NotificationDelivery:
    return NotificationDelivery(
        id=strawberry.ID(str(delivery.id)), organization_id=optional_id(delivery.organization_id),
        channel_id=strawberry.ID(str(delivery.channel_id)), kind=delivery.kind, payload=delivery.payload,
        status=DeliveryStatus(delivery.status), attempt_count=delivery.attempts, max_attempts=delivery.max_attempts,
        next_attempt_at=delivery.next_attempt_at, last_error=delivery.last_error, created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        attempts=[DeliveryAttempt(number=a.number, attempted_at=a.attempted_at, status_code=a.status_code, error=a.error,
                                  duration_ms=a.duration_ms, response_excerpt=a.response_excerpt) for a in delivery.attempt_log],
    )  # fmt: skip


# -- reads ----------------------------------------------------------------------------------


async def notification_kinds(info: Info) -> list[NotificationKind]:
    return [NotificationKind(name=name, description=text) for name, text in KINDS.items()]


async def notification_channels(info: Info, organization_id: OrgArg = None) -> list[NotificationChannel]:
    found = await channels.notification_channels(viewer=viewer_of(info), organization_id=organization_id)
    return [to_channel(c) for c in found]


EveryOrganizationArg = Annotated[
    bool,
    strawberry.argument(description="Platform admins: every organization's deliveries and the platform channels' together "
                        "(without organizationId)."),
]


async def deliveries_(
    info: Info,
    organization_id: OrgArg = None,
    status: Annotated[DeliveryStatus | None, strawberry.argument(description="Only deliveries in this state.")] = None,
    channel_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this channel's.")] = None,
    first: Annotated[int, strawberry.argument(description="At most this many (1..100).")] = 20,
    after: Annotated[str | None, strawberry.argument(description="The endCursor of the previous page.")] = None,
    every_organization: EveryOrganizationArg = False,
) -> DeliveryPage:
    page = await deliveries.deliveries(
        viewer=viewer_of(info), organization_id=organization_id, status=status.value if status else None,
        channel_id=channel_id, first=first, after=after, every_organization=every_organization,
    )  # fmt: skip
    return DeliveryPage(deliveries=[to_delivery(d) for d in page.deliveries], end_cursor=page.end_cursor)


async def webhook_health(info: Info, organization_id: OrgArg = None, every_organization: EveryOrganizationArg = False) -> WebhookHealth:
    health = await deliveries.webhook_health(
        viewer=viewer_of(info), organization_id=organization_id, every_organization=every_organization
    )
    return WebhookHealth(
        failed_last_24h=health.failed_last_24h, delivered_last_24h=health.delivered_last_24h, pending=health.pending,
        pending_retries=health.pending_retries, dead=health.dead, oldest_pending_at=health.oldest_pending_at,
    )  # fmt: skip


# -- writes ---------------------------------------------------------------------------------


async def create_notification_channel(
    info: Info,
    kind: Annotated[NotificationChannelKind, strawberry.argument(description="Webhook or email.")],
    name: NameArg,
    kinds: KindsArg,
    organization_id: OrgArg = None,
    url: UrlArg = None,
    recipients: RecipientsArg = None,
    enabled: Annotated[bool, strawberry.argument(description="False: create it paused.")] = True,
) -> NotificationChannelWithSecret:
    new = await channels.create_channel(
        viewer=viewer_of(info), organization_id=organization_id, kind=kind.value, name=name, url=url,
        recipients=recipients, kinds=kinds, enabled=enabled, address=address_of(info), settings=settings_of(info),
    )  # fmt: skip
    return to_channel_with_secret(new)


async def update_notification_channel(
    info: Info,
    id: ChannelIdArg,  # noqa: A002 - the GraphQL argument's name
    name: Annotated[str | None, strawberry.argument(description="A new name.")] = None,
    url: UrlArg = None,
    recipients: RecipientsArg = None,
    kinds: Annotated[list[str] | None, strawberry.argument(description="The kinds it receives from now on.")] = None,
    enabled: Annotated[bool | None, strawberry.argument(description="Pause (false) or resume (true).")] = None,
) -> NotificationChannel:
    changed = await channels.update_channel(
        viewer=viewer_of(info), channel_id=id, name=name, url=url, recipients=recipients, kinds=kinds, enabled=enabled,
        address=address_of(info), settings=settings_of(info),
    )  # fmt: skip
    return to_channel(changed)


async def delete_notification_channel(info: Info, id: ChannelIdArg) -> bool:  # noqa: A002
    return await channels.delete_channel(viewer=viewer_of(info), channel_id=id, address=address_of(info))


async def rotate_channel_secret(info: Info, id: ChannelIdArg) -> NotificationChannelWithSecret:  # noqa: A002
    return to_channel_with_secret(await channels.rotate_secret(viewer=viewer_of(info), channel_id=id, address=address_of(info)))


async def send_test_notification(info: Info, id: ChannelIdArg) -> NotificationDelivery:  # noqa: A002
    sent = await deliveries.send_test(viewer=viewer_of(info), channel_id=id, address=address_of(info), settings=settings_of(info))
    return to_delivery(sent)


async def retry_delivery(info: Info, id: DeliveryIdArg) -> NotificationDelivery:  # noqa: A002
    return to_delivery(await deliveries.retry_delivery(viewer=viewer_of(info), delivery_id=id, address=address_of(info)))


# -- the domain's fields --------------------------------------------------------------------


@strawberry.type
class Query:
    """The notifications domain's reads, merged into the root by schema.root."""

    notification_kinds: list[NotificationKind] = guarded(
        Access.ANYONE, notification_kinds, "The notification kinds a channel may receive."
    )
    notification_channels: list[NotificationChannel] = guarded(
        Access.ORG_ADMINS, notification_channels, "Notification channels: an organization's, or the platform's own."
    )
    deliveries: DeliveryPage = guarded(
        Access.ORG_ADMINS, deliveries_,
        "Notification deliveries with every attempt, newest first: an organization's, the platform channels', or"
        " (platform admins, everyOrganization) all of them.",
    )  # fmt: skip
    webhook_health: WebhookHealth = guarded(
        Access.ORG_ADMINS, webhook_health,
        "Our webhooks' health: failed in 24 h, pending retries, dead: an organization's, the platform channels', or"
        " (platform admins, everyOrganization) all of them together.",
    )  # fmt: skip


@strawberry.type
class Mutation:
    """The notifications domain's writes, merged into the root by schema.root."""

    create_notification_channel: NotificationChannelWithSecret = guarded(
        Access.ORG_ADMINS, create_notification_channel,
        "A webhook (https URL; its signing secret is shown once) or email channel receiving the kinds named. "
        "Platform admins leaving organizationId out create a platform channel.",
    )  # fmt: skip
    update_notification_channel: NotificationChannel = guarded(
        Access.ORG_ADMINS, update_notification_channel, "Rename, re-point, change the kinds of, pause or resume a channel."
    )
    delete_notification_channel: bool = guarded(
        Access.ORG_ADMINS, delete_notification_channel, "Delete a channel with its deliveries."
    )
    rotate_channel_secret: NotificationChannelWithSecret = guarded(
        Access.ORG_ADMINS, rotate_channel_secret,
        "A new signing secret for a webhook channel, shown once; deliveries not yet sent are signed with it.",
    )  # fmt: skip
    send_test_notification: NotificationDelivery = guarded(
        Access.ORG_ADMINS, send_test_notification, "Queue a `test` notification to this channel, whatever kinds it receives."
    )
    retry_delivery: NotificationDelivery = guarded(
        Access.ORG_ADMINS, retry_delivery,
        "Try a delivery now: a pending one skips its wait, a dead one gets one more attempt.",
    )  # fmt: skip
