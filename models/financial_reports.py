"""Invoices the worker records from invoice.issued / invoice.paid. Created by migration 0007;
app/services/financial_reports.py writes them with SQL and reports the outstanding ones."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import NOW, TextKeyField


class Invoice(Model):
    """One invoice of an organization. The first issue fills the issue columns, the first
    payment the paid columns; a payment that arrives first waits with the issue columns NULL.

    Real key: (organization_id, invoice_id); Tortoise knows it by `invoice_id`."""

    organization_id = fields.UUIDField()
    invoice_id = TextKeyField(primary_key=True)
    amount_minor = fields.BigIntField(null=True)
    currency = fields.TextField(null=True)
    due_date = fields.DateField(null=True)
    issued_at = fields.DatetimeField(null=True)
    issued_event_id = fields.TextField(null=True)
    paid_at = fields.DatetimeField(null=True)
    paid_event_id = fields.TextField(null=True)
    paid_amount_minor = fields.BigIntField(null=True)
    paid_currency = fields.TextField(null=True)
    recorded_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "invoices"
        unique_together = (("organization_id", "invoice_id"),)
