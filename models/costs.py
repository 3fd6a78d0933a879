"""Cost entries and their audit trail. Created by migration 0006; the service
(app/services/costs.py) reads and writes them with SQL."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Cost(Model):
    """One cost an organization (or one of its profiles) had on a date."""

    id = fields.UUIDField(primary_key=True)
    organization_id = fields.UUIDField()
    profile_id = fields.UUIDField(null=True)
    category = fields.TextField()
    amount_minor = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    incurred_on = fields.DateField()
    description = fields.TextField(default="")
    created_by = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_by = fields.TextField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "costs"


class CostAudit(Model):
    """Who created, changed or deleted a cost entry, with the entry before and after."""

    id = fields.BigIntField(primary_key=True, generated=True)
    organization_id = fields.UUIDField()
    cost_id = fields.UUIDField()
    action = fields.TextField()
    actor = fields.TextField()
    actor_role = fields.TextField()
    before = fields.JSONField(null=True)
    after = fields.JSONField(null=True)
    at = fields.DatetimeField()

    class Meta:
        table = "cost_audit"
