"""The money ledger the worker writes from domain events, payouts, and exchange rates.
Created by migration 0006; the service (app/services/revenue.py) reads and writes them with SQL."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Transaction(Model):
    """One money event: a sale, a refund (negative amount), a failed payment."""

    organization_id = fields.UUIDField()
    event_id = fields.CharField(max_length=128, primary_key=True)  # with organization_id in PostgreSQL
    type = fields.TextField()
    status = fields.TextField()
    is_refund = fields.BooleanField(default=False)
    refund_of = fields.TextField(null=True)
    profile_id = fields.UUIDField(null=True)
    partner_profile_id = fields.UUIDField(null=True)
    split_percent = fields.SmallIntField(null=True)
    customer_id = fields.TextField(null=True)
    amount_minor = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    platform_fee_minor = fields.BigIntField(default=0)
    service_fee_minor = fields.BigIntField(default=0)
    processor_fee_minor = fields.BigIntField(default=0)
    category = fields.TextField(null=True)
    order_id = fields.TextField(null=True)
    occurred_at = fields.DatetimeField()
    recorded_at = fields.DatetimeField()
    metadata = fields.JSONField()

    class Meta:
        table = "transactions"


class Payout(Model):
    """A settled payout (payout.settled), kept to reconcile against the ledger."""

    organization_id = fields.UUIDField()
    event_id = fields.CharField(max_length=128, primary_key=True)  # with organization_id in PostgreSQL
    payout_id = fields.TextField(null=True)
    profile_id = fields.UUIDField(null=True)
    amount_minor = fields.BigIntField()
    currency = fields.CharField(max_length=3)
    occurred_at = fields.DatetimeField()
    recorded_at = fields.DatetimeField()
    metadata = fields.JSONField()

    class Meta:
        table = "payouts"


class ExchangeRate(Model):
    """1 unit of `currency` = `rate` units of the organization's reporting currency."""

    organization_id = fields.UUIDField()
    currency = fields.CharField(max_length=3, primary_key=True)  # with organization_id in PostgreSQL
    rate = fields.DecimalField(max_digits=24, decimal_places=12)
    updated_by = fields.TextField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "exchange_rates"
