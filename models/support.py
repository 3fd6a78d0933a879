"""The support desk's tables (migration 0018): internal notes on an organization."""

from __future__ import annotations

from tortoise import fields
from tortoise.fields.db_defaults import SqlDefault
from tortoise.models import Model

from models.fields import NOW


class OrganizationNote(Model):
    """A platform admin's internal note on an organization; organization members never see
    it. Real key: (organization_id, id)."""

    organization_id = fields.UUIDField()
    id = fields.UUIDField(primary_key=True, db_default=SqlDefault("gen_random_uuid()"))
    author = fields.TextField()
    author_user_id = fields.UUIDField(null=True)
    body = fields.TextField()
    created_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "organization_notes"
        unique_together = (("organization_id", "id"),)
