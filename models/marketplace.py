"""The services marketplace's rollups (migration 0015), written by the worker from
service.executed, marketplace.searched, marketplace.viewed and marketplace.converted events;
the service (app/services/marketplace/) reads and writes them with SQL.

The tables have no one-column key: each docstring names the real key and `unique_together`
carries it. Tortoise's primary key is one column of it, so filter by the whole key."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import NOW


class ServiceRollup(Model):
    """Executions, errors and a KLL latency sketch per service and category per bucket.

    Real key: (organization_id, grain, bucket_start, service_id, category)."""

    organization_id = fields.UUIDField()
    grain = fields.TextField()  # hour | day | month
    bucket_start = fields.DatetimeField(primary_key=True)
    service_id = fields.TextField()
    category = fields.TextField(db_default="")  # '' for executions without a category
    executions = fields.BigIntField(db_default=0)
    errors = fields.BigIntField(db_default=0)
    latency_sum_ms = fields.FloatField(db_default=0)
    latency_kll = fields.BinaryField(null=True)
    error_codes = fields.JSONField(db_default={})
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "service_rollups"
        unique_together = (("organization_id", "grain", "bucket_start", "service_id", "category"),)


class MarketplaceRollup(Model):
    """Searches (by query), views and conversions (by service) per category per bucket.

    Real key: (organization_id, grain, bucket_start, kind, key, category, currency)."""

    organization_id = fields.UUIDField()
    grain = fields.TextField()  # hour | day | month
    bucket_start = fields.DatetimeField(primary_key=True)
    kind = fields.TextField()  # search | view | conversion
    key = fields.TextField()  # the normalized query, or the service id
    category = fields.TextField(db_default="")
    currency = fields.TextField(db_default="")  # conversions only
    events = fields.BigIntField(db_default=0)
    zero_results = fields.BigIntField(db_default=0)
    amount_minor = fields.BigIntField(db_default=0)

    class Meta:
        table = "marketplace_rollups"
        unique_together = (("organization_id", "grain", "bucket_start", "kind", "key", "category", "currency"),)
