"""Raw events and sessions. Events are written with COPY by the ingestion service; the
models exist for reads and for the ORM's view of the schema. The primary key of `events`
is (organization_id, occurred_at, event_id); Tortoise knows it by `event_id`."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Event(Model):
    event_id = fields.CharField(max_length=128, primary_key=True)
    organization_id = fields.UUIDField()
    occurred_at = fields.DatetimeField()
    type = fields.TextField()
    profile_id = fields.UUIDField(null=True)
    visitor_id = fields.TextField(null=True)
    user_id = fields.TextField(null=True)
    anonymous_id = fields.TextField(null=True)
    session_id = fields.TextField(null=True)
    properties = fields.JSONField(default=dict)
    amount_minor = fields.BigIntField(null=True)
    currency = fields.CharField(max_length=3, null=True)
    engagement_ms = fields.IntField(null=True)
    ip = fields.TextField(null=True)
    ip_hash = fields.TextField(null=True)  # keyed HMAC once the raw IP is past retention
    country = fields.CharField(max_length=2, null=True)
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
    dnt = fields.BooleanField(default=False)
    received_at = fields.DatetimeField()

    class Meta:
        table = "events"


class Session(Model):
    """A visit: ends after 30 minutes without events or at 24 hours; carries first-touch
    attribution (landing page, referrer, UTM) and the device it started on."""

    id = fields.CharField(max_length=128, primary_key=True)
    organization_id = fields.UUIDField()
    visitor_id = fields.TextField(null=True)
    started_at = fields.DatetimeField()
    last_seen_at = fields.DatetimeField()
    event_count = fields.IntField(default=0)
    landing_page = fields.TextField(null=True)
    referrer_domain = fields.TextField(null=True)
    utm_source = fields.TextField(null=True)
    utm_medium = fields.TextField(null=True)
    utm_campaign = fields.TextField(null=True)
    device_type = fields.TextField(null=True)
    browser = fields.TextField(null=True)
    os = fields.TextField(null=True)
    country = fields.CharField(max_length=2, null=True)

    class Meta:
        table = "sessions"
