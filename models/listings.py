"""Ticketed events (listings) recorded by the worker (migration 0023)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import TextKeyField


class Listing(Model):
    """A listing's latest published details and the first start and end reported. Real key:
    (organization_id, listing_id)."""

    organization_id = fields.UUIDField()
    listing_id = TextKeyField(primary_key=True)
    title = fields.TextField(null=True)
    starts_at = fields.DatetimeField(null=True)
    ends_at = fields.DatetimeField(null=True)
    published_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)

    class Meta:
        table = "listings"
        unique_together = (("organization_id", "listing_id"),)
