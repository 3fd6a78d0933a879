"""Fraud rules (data, per organization), the alerts the worker raises from them, and the
audit trail of what people did with each alert. Created by migration 0004; the service
(app/services/fraud.py) reads and writes them with SQL."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class FraudRule(Model):
    """One configured rule: its kind picks the evaluation, params its thresholds."""

    id = fields.UUIDField(primary_key=True)
    organization_id = fields.UUIDField()
    kind = fields.TextField()
    name = fields.TextField()
    params = fields.JSONField()
    risk = fields.CharField(max_length=6)
    enabled = fields.BooleanField(default=True)
    created_by = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_by = fields.TextField()
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "fraud_rules"


class FraudAlert(Model):
    """One suspicion about one subject (an actor, an IP, a ticket, the organization)."""

    id = fields.UUIDField(primary_key=True)
    organization_id = fields.UUIDField()
    rule_id = fields.UUIDField()
    kind = fields.TextField()
    rule_name = fields.TextField()
    risk = fields.CharField(max_length=6)
    subject = fields.TextField()
    status = fields.CharField(max_length=13, default="open")
    details = fields.JSONField()
    evidence = fields.JSONField()  # text[] in PostgreSQL: the ids of the events that made the rule fire
    triggered_at = fields.DatetimeField()
    last_triggered_at = fields.DatetimeField()
    raised_at = fields.DatetimeField()
    updated_at = fields.DatetimeField()

    class Meta:
        table = "fraud_alerts"


class FraudAlertAudit(Model):
    """Who did what to an alert, and when: raised, status changes, notes."""

    id = fields.BigIntField(primary_key=True, generated=True)
    organization_id = fields.UUIDField()
    alert_id = fields.UUIDField()
    action = fields.TextField()
    actor = fields.TextField()
    actor_role = fields.TextField()
    from_status = fields.TextField(null=True)
    to_status = fields.TextField(null=True)
    note = fields.TextField(null=True)
    at = fields.DatetimeField()

    class Meta:
        table = "fraud_alert_audit"
