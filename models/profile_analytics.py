"""Per-profile facts written by the worker: the profile event log and the rollups."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class ProfileEvent(Model):
    event_id = fields.CharField(max_length=128, primary_key=True)
    organization_id = fields.UUIDField()
    profile_id = fields.UUIDField()
    occurred_at = fields.DatetimeField()
    kind = fields.TextField()
    visitor_id = fields.TextField(null=True)
    session_id = fields.TextField(null=True)
    country = fields.CharField(max_length=2, null=True)
    city = fields.TextField(null=True)
    device_type = fields.TextField(null=True)
    browser = fields.TextField(null=True)
    os = fields.TextField(null=True)
    referrer_domain = fields.TextField(null=True)
    utm_source = fields.TextField(null=True)
    is_gov = fields.BooleanField(default=False)
    amount_minor = fields.BigIntField(null=True)
    currency = fields.CharField(max_length=3, null=True)
    engagement_ms = fields.IntField(null=True)

    class Meta:
        table = "profile_events"


class ProfileRollup(Model):
    """Counters and visitor sketches per profile per hour or day (org time zone)."""

    bucket_start = fields.DatetimeField(primary_key=True)
    organization_id = fields.UUIDField()
    profile_id = fields.UUIDField()
    grain = fields.CharField(max_length=4)
    views = fields.BigIntField(default=0)
    inquiries = fields.BigIntField(default=0)
    conversions = fields.BigIntField(default=0)
    engagement_ms = fields.BigIntField(default=0)
    visitors_hll = fields.BinaryField(null=True)
    inquirers_hll = fields.BinaryField(null=True)
    updated_at = fields.DatetimeField()

    class Meta:
        table = "profile_rollups"
