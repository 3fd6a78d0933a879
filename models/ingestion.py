"""Raw events, sessions and the daily visitor salts, all written by the ingestion service
(events with COPY, the rest with SQL); the models are the ORM's view of the schema.

Tortoise needs one primary-key column per model; where the table's key has several columns
the model's docstring names them and `unique_together` carries them. Filter by the whole
key: saving or deleting an instance goes by the Tortoise key alone."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import NOW, FixedCharField, InetField, TextKeyField


class Event(Model):
    """One accepted event, in a table range-partitioned by month on `occurred_at`.

    Real key: (organization_id, occurred_at, event_id); Tortoise knows it by `event_id`."""

    organization_id = fields.UUIDField()
    occurred_at = fields.DatetimeField()
    event_id = TextKeyField(primary_key=True)
    type = fields.TextField()
    profile_id = fields.UUIDField(null=True)
    visitor_id = fields.TextField(null=True)
    user_id = fields.TextField(null=True)
    anonymous_id = fields.TextField(null=True)
    session_id = fields.TextField(null=True)
    properties = fields.JSONField(db_default={})
    amount_minor = fields.BigIntField(null=True)
    currency = FixedCharField(max_length=3, null=True)
    engagement_ms = fields.IntField(null=True)
    ip = InetField(null=True)  # NULL once past the organization's IP retention
    country = FixedCharField(max_length=2, null=True)
    region = fields.TextField(null=True)
    city = fields.TextField(null=True)
    asn = fields.BigIntField(null=True)
    as_org = fields.TextField(null=True)
    user_agent = fields.TextField(null=True)
    device_type = fields.TextField(null=True)
    browser = fields.TextField(null=True)
    os = fields.TextField(null=True)
    url = fields.TextField(null=True)
    referrer = fields.TextField(null=True)
    referrer_domain = fields.TextField(null=True)
    utm_source = fields.TextField(null=True)
    utm_medium = fields.TextField(null=True)
    utm_campaign = fields.TextField(null=True)
    utm_term = fields.TextField(null=True)
    utm_content = fields.TextField(null=True)
    dnt = fields.BooleanField(db_default=False)
    received_at = fields.DatetimeField(db_default=NOW)
    ip_hash = fields.TextField(null=True)  # keyed HMAC once the raw IP is past retention

    class Meta:
        table = "events"
        unique_together = (("organization_id", "occurred_at", "event_id"),)


class Session(Model):
    """A visit: ends after 30 minutes without events or at 24 hours; carries first-touch
    attribution (landing page, referrer, UTM) and the device it started on.

    Real key: (organization_id, id); Tortoise knows it by `id`."""

    organization_id = fields.UUIDField()
    id = TextKeyField(primary_key=True)
    visitor_id = fields.TextField(null=True)
    started_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    event_count = fields.IntField(db_default=0)
    landing_page = fields.TextField(null=True)
    referrer_domain = fields.TextField(null=True)
    utm_source = fields.TextField(null=True)
    utm_medium = fields.TextField(null=True)
    utm_campaign = fields.TextField(null=True)
    device_type = fields.TextField(null=True)
    browser = fields.TextField(null=True)
    os = fields.TextField(null=True)
    country = FixedCharField(max_length=2, null=True)

    class Meta:
        table = "sessions"
        unique_together = (("organization_id", "id"),)


class VisitorSalt(Model):
    """The salt of one day's cookie-less visitor ids; deleted after the day so yesterday's
    ids can no longer be recomputed from an IP and a user agent. Global: one per day."""

    day = fields.DateField(primary_key=True)
    salt = fields.BinaryField()
    created_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "visitor_salts"
