"""The outbox: the durable queue the worker drains, and the idempotency ledger."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class OutboxEntry(Model):
    seq = fields.BigIntField(primary_key=True, generated=True)
    organization_id = fields.UUIDField()
    event_id = fields.TextField()
    occurred_at = fields.DatetimeField()
    type = fields.TextField()
    received_at = fields.DatetimeField()
    processed_at = fields.DatetimeField(null=True)

    class Meta:
        table = "outbox"
