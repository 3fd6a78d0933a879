"""Per-profile facts written by the worker: the profile event log and the rollups (hour,
day and month grains; `bucket_start` is the bucket's start in the organization's zone).

None of these tables has a one-column key: each model's docstring names the real key and
`unique_together` carries it. Tortoise's primary key is one column of it, so filter by the
whole key; an instance's save() or delete() would reach every row sharing that column."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import NOW, FixedCharField, TextKeyField


class ProfileEvent(Model):
    """What happened on a profile, as its provider sees it; partitioned by month.

    Real key: (organization_id, profile_id, occurred_at, event_id)."""

    organization_id = fields.UUIDField()
    profile_id = fields.UUIDField()
    occurred_at = fields.DatetimeField()
    event_id = TextKeyField(primary_key=True)
    kind = fields.TextField()
    visitor_id = fields.TextField(null=True)
    session_id = fields.TextField(null=True)
    country = FixedCharField(max_length=2, null=True)
    city = fields.TextField(null=True)
    device_type = fields.TextField(null=True)
    browser = fields.TextField(null=True)
    os = fields.TextField(null=True)
    referrer_domain = fields.TextField(null=True)
    utm_source = fields.TextField(null=True)
    is_gov = fields.BooleanField(db_default=False)
    amount_minor = fields.BigIntField(null=True)
    currency = FixedCharField(max_length=3, null=True)
    engagement_ms = fields.IntField(null=True)

    class Meta:
        table = "profile_events"
        unique_together = (("organization_id", "profile_id", "occurred_at", "event_id"),)


class ProfileRollup(Model):
    """Counters and visitor sketches (HyperLogLog images) per profile per bucket.

    Real key: (organization_id, profile_id, grain, bucket_start)."""

    organization_id = fields.UUIDField()
    profile_id = fields.UUIDField()
    grain = fields.TextField()  # hour | day | month
    bucket_start = fields.DatetimeField(primary_key=True)
    views = fields.BigIntField(db_default=0)
    inquiries = fields.BigIntField(db_default=0)
    conversions = fields.BigIntField(db_default=0)
    engagement_ms = fields.BigIntField(db_default=0)
    favorites = fields.BigIntField(db_default=0)  # net of unfavorites (0022)
    shares = fields.BigIntField(db_default=0)
    clicks = fields.BigIntField(db_default=0)
    visitors_hll = fields.BinaryField(null=True)
    inquirers_hll = fields.BinaryField(null=True)
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "profile_rollups"
        unique_together = (("organization_id", "profile_id", "grain", "bucket_start"),)


class ProfileRevenueRollup(Model):
    """Money per profile per bucket, per source and currency (never converted).

    Real key: (organization_id, profile_id, grain, bucket_start, source, currency)."""

    organization_id = fields.UUIDField()
    profile_id = fields.UUIDField()
    grain = fields.TextField()
    bucket_start = fields.DatetimeField(primary_key=True)
    source = fields.TextField()
    currency = FixedCharField(max_length=3)
    amount_minor = fields.BigIntField(db_default=0)
    transactions = fields.BigIntField(db_default=0)

    class Meta:
        table = "profile_revenue_rollups"
        unique_together = (("organization_id", "profile_id", "grain", "bucket_start", "source", "currency"),)


class ProfileReferrerRollup(Model):
    """Views per profile per bucket and referring domain.

    Real key: (organization_id, profile_id, grain, bucket_start, referrer)."""

    organization_id = fields.UUIDField()
    profile_id = fields.UUIDField()
    grain = fields.TextField()
    bucket_start = fields.DatetimeField(primary_key=True)
    referrer = fields.TextField()
    views = fields.BigIntField(db_default=0)

    class Meta:
        table = "profile_referrer_rollups"
        unique_together = (("organization_id", "profile_id", "grain", "bucket_start", "referrer"),)
