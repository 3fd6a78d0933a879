"""The money ledger the worker writes from domain events, payouts, and exchange rates.
Created by migration 0006; the service (app/services/revenue/) reads and writes them with
SQL. Amounts are integer minor units; currencies are ISO 4217 codes in `text` columns."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import NOW, TextKeyField


class Transaction(Model):
    """One money event: a sale, a refund (negative amount), a failed payment.

    Real key: (organization_id, event_id); Tortoise knows it by `event_id`."""

    organization_id = fields.UUIDField()
    event_id = TextKeyField(primary_key=True)
    type = fields.TextField()  # booking | gift | subscription | affiliate | order
    status = fields.TextField()  # pending | completed | refunded | failed
    is_refund = fields.BooleanField(db_default=False)
    refund_of = fields.TextField(null=True)
    profile_id = fields.UUIDField(null=True)
    partner_profile_id = fields.UUIDField(null=True)
    split_percent = fields.SmallIntField(null=True)
    customer_id = fields.TextField(null=True)
    amount_minor = fields.BigIntField()
    currency = fields.TextField()
    platform_fee_minor = fields.BigIntField(db_default=0)
    service_fee_minor = fields.BigIntField(db_default=0)
    processor_fee_minor = fields.BigIntField(db_default=0)
    category = fields.TextField(null=True)
    order_id = fields.TextField(null=True)
    occurred_at = fields.DatetimeField()
    recorded_at = fields.DatetimeField(db_default=NOW)
    metadata = fields.JSONField(db_default={})
    creator_id = fields.TextField(null=True)  # who earns the sale (marketplaces)
    buyer_email_hash = fields.TextField(null=True)  # keyed hash of properties.buyerEmail (migration 0025)

    class Meta:
        table = "transactions"
        unique_together = (("organization_id", "event_id"),)


class Payout(Model):
    """A settled payout (payout.settled), kept to reconcile against the ledger.

    Real key: (organization_id, event_id); Tortoise knows it by `event_id`."""

    organization_id = fields.UUIDField()
    event_id = TextKeyField(primary_key=True)
    payout_id = fields.TextField(null=True)
    profile_id = fields.UUIDField(null=True)
    amount_minor = fields.BigIntField()
    currency = fields.TextField()
    occurred_at = fields.DatetimeField()
    recorded_at = fields.DatetimeField(db_default=NOW)
    metadata = fields.JSONField(db_default={})

    class Meta:
        table = "payouts"
        unique_together = (("organization_id", "event_id"),)


class ExchangeRate(Model):
    """1 unit of `currency` = `rate` units of the organization's reporting currency.

    Real key: (organization_id, currency); Tortoise knows it by `currency`."""

    organization_id = fields.UUIDField()
    currency = TextKeyField(primary_key=True)
    rate = fields.DecimalField(max_digits=24, decimal_places=12)
    updated_by = fields.TextField()
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "exchange_rates"
        unique_together = (("organization_id", "currency"),)
