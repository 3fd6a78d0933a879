"""System health: API timings per minute and process, and the API processes' pools. Created
by migration 0017; app/services/system_health writes and reads them with SQL."""

from __future__ import annotations

from tortoise import fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.models import Model

from models.fields import TextKeyField


class ApiTiming(Model):
    """One API process's running totals of one GraphQL operation or HTTP route for one
    minute (per organization for GraphQL operations of a tenant's credential), with a
    histogram of durations in fixed log-spaced buckets (app/services/system_health/histogram.py).

    Installation-wide: listed in models/tables.py REFERENCE_TABLES."""

    id = fields.BigIntField(primary_key=True, generated=True)
    minute = fields.DatetimeField()
    process = fields.TextField()
    kind = fields.TextField()  # graphql | http
    name = fields.TextField()
    organization_id = fields.UUIDField(null=True)
    count = fields.BigIntField()
    errors = fields.BigIntField()
    slow = fields.BigIntField()
    total_ms = fields.FloatField()
    max_ms = fields.FloatField()
    buckets = ArrayField(element_type="BIGINT")

    class Meta:
        table = "api_timings"
        unique_together = (("minute", "process", "kind", "name", "organization_id"),)  # NULLS NOT DISTINCT


class ApiProcess(Model):
    """An API process as it last reported itself, with its database pool at that moment."""

    process = TextKeyField(primary_key=True)
    host = fields.TextField()
    pid = fields.IntField()
    started_at = fields.DatetimeField()
    seen_at = fields.DatetimeField()
    pool_min = fields.IntField()
    pool_max = fields.IntField()
    pool_size = fields.IntField()
    pool_in_use = fields.IntField()
    pool_idle = fields.IntField()
    pool_waiting = fields.IntField()

    class Meta:
        table = "api_processes"
