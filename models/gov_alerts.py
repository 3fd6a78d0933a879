"""Gov alerts: a profile view from a government or law-enforcement network, once per view."""

from __future__ import annotations

from tortoise import fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.models import Model


class GovAlert(Model):
    """Written by the worker in the batch's transaction; the event id makes it exactly-once."""

    event_id = fields.CharField(max_length=128, primary_key=True)
    organization_id = fields.UUIDField()
    profile_id = fields.UUIDField()
    occurred_at = fields.DatetimeField()
    raised_at = fields.DatetimeField()
    confidence = fields.FloatField()
    threshold = fields.FloatField()
    network_name = fields.TextField(null=True)
    asn = fields.BigIntField(null=True)
    country = fields.CharField(max_length=2, null=True)
    city = fields.TextField(null=True)
    device_type = fields.TextField(null=True)
    browser = fields.TextField(null=True)
    os = fields.TextField(null=True)
    reasons = ArrayField("text")
    signals = ArrayField("text")

    class Meta:
        table = "gov_alerts"
