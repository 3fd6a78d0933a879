"""The admin state of failed payments (migration 0023); the service
(app/services/failed_payments.py) reads and writes it with SQL."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import NOW, TextKeyField


class FailedPaymentState(Model):
    """What admins last did about one failed payment (a payment.failed event): a retry
    requested from the host platform, or resolved. No row: open.

    Real key: (organization_id, event_id); Tortoise knows it by `event_id`."""

    organization_id = fields.UUIDField()
    event_id = TextKeyField(primary_key=True)
    status = fields.TextField()  # retry_requested | resolved
    actor = fields.TextField()  # who acted last
    note = fields.TextField()  # their reason
    at = fields.DatetimeField(db_default=NOW)
    retry_requested_by = fields.TextField(null=True)
    retry_requested_at = fields.DatetimeField(null=True)
    resolved_by = fields.TextField(null=True)
    resolved_at = fields.DatetimeField(null=True)

    class Meta:
        table = "failed_payment_states"
        unique_together = (("organization_id", "event_id"),)
