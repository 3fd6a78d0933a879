"""Notification channels, their deliveries and every delivery attempt (migration 0016).
Reference tables: organization_id is null for the platform's own channels."""

from __future__ import annotations

from tortoise import fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.fields.db_defaults import SqlDefault
from tortoise.models import Model

from models.fields import NOW

EMPTY_TEXTS = SqlDefault("'{}'::text[]")


class NotificationChannel(Model):
    """A webhook (url, signing secret) or an email channel (recipients) and the kinds it receives."""

    id = fields.UUIDField(primary_key=True)
    organization_id = fields.UUIDField(null=True)  # null: a platform channel
    kind = fields.TextField()  # webhook | email
    name = fields.TextField()
    url = fields.TextField(null=True)
    secret = fields.TextField(null=True)
    recipients = ArrayField("text", db_default=EMPTY_TEXTS)
    kinds = ArrayField("text")
    enabled = fields.BooleanField(db_default=True)
    created_at = fields.DatetimeField(db_default=NOW)
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "notification_channels"


class NotificationDelivery(Model):
    """One notification for one channel; its id is the webhook-id of every attempt."""

    id = fields.UUIDField(primary_key=True)
    organization_id = fields.UUIDField(null=True)
    channel_id = fields.UUIDField()
    kind = fields.TextField()
    payload = fields.JSONField()
    status = fields.TextField(db_default="pending")  # pending | delivered | dead
    attempts = fields.IntField(db_default=0)
    max_attempts = fields.IntField()
    next_attempt_at = fields.DatetimeField(db_default=NOW)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(db_default=NOW)
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "notification_deliveries"


class NotificationAttempt(Model):
    """One try at a delivery. Real key: (delivery_id, number)."""

    delivery_id = fields.UUIDField(primary_key=True)
    number = fields.IntField()
    organization_id = fields.UUIDField(null=True)
    attempted_at = fields.DatetimeField()
    status_code = fields.IntField(null=True)
    error = fields.TextField(null=True)
    duration_ms = fields.IntField()
    response_excerpt = fields.TextField(null=True)

    class Meta:
        table = "notification_attempts"
        unique_together = (("delivery_id", "number"),)


class NotificationWindow(Model):
    """A window that raised its once-per-window notification. Real key: (organization_id, kind, window_start)."""

    organization_id = fields.UUIDField(primary_key=True)
    kind = fields.TextField()
    window_start = fields.DatetimeField()
    count = fields.IntField()
    created_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "notification_windows"
        unique_together = (("organization_id", "kind", "window_start"),)
