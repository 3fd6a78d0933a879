"""Gov alerts: a profile view from a government or law-enforcement network, once per view.
Written with SQL by the worker through app/services/gov_alerts.py."""

from __future__ import annotations

from tortoise import fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.models import Model

from models.fields import NOW, FixedCharField, RealField, TextKeyField


class GovAlert(Model):
    """Written in the batch's transaction; the view's event id makes it exactly-once.

    Real key: (organization_id, event_id); Tortoise knows it by `event_id`."""

    organization_id = fields.UUIDField()
    event_id = TextKeyField(primary_key=True)
    profile_id = fields.UUIDField()
    occurred_at = fields.DatetimeField()  # when the view happened
    raised_at = fields.DatetimeField(db_default=NOW)
    confidence = RealField()
    threshold = RealField()  # the organization's threshold at the time
    network_name = fields.TextField(null=True)
    asn = fields.BigIntField(null=True)
    country = FixedCharField(max_length=2, null=True)
    city = fields.TextField(null=True)
    device_type = fields.TextField(null=True)
    browser = fields.TextField(null=True)
    os = fields.TextField(null=True)
    reasons = ArrayField("text")
    signals = ArrayField("text")

    class Meta:
        table = "gov_alerts"
        unique_together = (("organization_id", "event_id"),)
