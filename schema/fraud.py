"""Fraud: rules as data, the alerts the worker raises from them, and an organization's fraud profile."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from schema.common import ResolvedRange


@strawberry.enum(description="What a fraud rule looks for; each kind has its own params.")
class FraudRuleKind(Enum):
    FAILED_PAYMENTS = strawberry.enum_value(
        "failed_payments",
        description="More than params.threshold payment.failed of one actor within params.windowMinutes.",
    )
    REFUND_RATE = strawberry.enum_value(
        "refund_rate",
        description="Share of the last params.orders order.paid (at least params.minOrders) refunded above params.maxRatePercent.",
    )
    ACCOUNTS_PER_IP = strawberry.enum_value(
        "accounts_per_ip",
        description="More than params.threshold account.created from one IP within params.windowMinutes.",
    )
    TICKET_MULTI_DEVICE = strawberry.enum_value(
        "ticket_multi_device",
        description="One properties.ticketId scanned on more than params.maxDevices devices (properties.deviceId, else the user agent's device).",
    )
    BULK_PURCHASE = strawberry.enum_value(
        "bulk_purchase",
        description="One actor's order.paid quantities (properties.quantity, default 1) within params.windowMinutes above params.maxQuantity.",
    )


@strawberry.enum(description="How serious an alert is.")
class FraudRisk(Enum):
    LOW = strawberry.enum_value("low", description="Worth a look.")
    MEDIUM = strawberry.enum_value("medium", description="Likely abuse.")
    HIGH = strawberry.enum_value("high", description="Act now.")


@strawberry.enum(description="Where an alert is in its workflow: open -> investigating -> dismissed | resolved.")
class FraudAlertStatus(Enum):
    OPEN = strawberry.enum_value("open", description="Raised, nobody has looked yet.")
    INVESTIGATING = strawberry.enum_value("investigating", description="Someone is on it.")
    DISMISSED = strawberry.enum_value("dismissed", description="Closed: not fraud (final).")
    RESOLVED = strawberry.enum_value("resolved", description="Closed: fraud, dealt with (final).")


@strawberry.type(description="A configured fraud rule of an organization.")
class FraudRule:
    id: strawberry.ID = strawberry.field(description="The rule.")
    organization_id: strawberry.ID = strawberry.field(description="Its organization.")
    kind: FraudRuleKind = strawberry.field(description="What it looks for.")
    name: str = strawberry.field(description="Its name, unique in the organization.")
    params: JSON = strawberry.field(description="Its thresholds, e.g. {\"threshold\": 3, \"windowMinutes\": 60}.")
    risk: FraudRisk = strawberry.field(description="Risk of the alerts it raises.")
    enabled: bool = strawberry.field(description="Disabled rules raise nothing.")
    created_by: str = strawberry.field(description="Who created it (token subject; 'system' for defaults).")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_by: str = strawberry.field(description="Who changed it last.")
    updated_at: datetime = strawberry.field(description="When it was changed last.")


@strawberry.type(description="One thing that happened to an alert.")
class FraudAlertAuditEntry:
    at: datetime = strawberry.field(description="When.")
    action: str = strawberry.field(description="raised, status or note.")
    actor: str = strawberry.field(description="Who: the token subject, or 'worker'.")
    actor_role: str = strawberry.field(description="Their role: admin, org_admin or system.")
    from_status: FraudAlertStatus | None = strawberry.field(description="Status before a status change.")
    to_status: FraudAlertStatus | None = strawberry.field(description="Status after a status change or raise.")
    note: str | None = strawberry.field(description="The note, if any.")


@strawberry.type(description="A suspicion raised by a fraud rule about one subject.")
class FraudAlert:
    id: strawberry.ID = strawberry.field(description="The alert.")
    organization_id: strawberry.ID = strawberry.field(description="Its organization.")
    rule_id: strawberry.ID = strawberry.field(description="The rule that raised it.")
    rule_name: str = strawberry.field(description="The rule's name when it was raised.")
    kind: FraudRuleKind = strawberry.field(description="The rule's kind.")
    risk: FraudRisk = strawberry.field(description="The rule's risk when it was raised.")
    subject: str = strawberry.field(
        description="What it is about: actor:<visitor id>, ip:<address>, ticket:<ticketId> or organization."
    )
    status: FraudAlertStatus = strawberry.field(description="Where it is in the workflow.")
    details: JSON = strawberry.field(description="The numbers that made the rule fire, with its thresholds.")
    evidence: list[str] = strawberry.field(description="Ids of the events that made the rule fire, oldest first (the latest 1,000 when there are more).")
    triggered_at: datetime = strawberry.field(description="Time of the event that first made the rule fire.")
    last_triggered_at: datetime = strawberry.field(description="Time of the latest event that made it fire.")
    raised_at: datetime = strawberry.field(description="When the worker raised it.")
    updated_at: datetime = strawberry.field(description="When it last changed.")


@strawberry.type(description="An alert with its audit trail.")
class FraudAlertDetail:
    alert: FraudAlert = strawberry.field(description="The alert.")
    audit: list[FraudAlertAuditEntry] = strawberry.field(description="Everything that happened to it, oldest first.")


@strawberry.type(description="A page of alerts, newest first.")
class FraudAlertPage:
    alerts: list[FraudAlert] = strawberry.field(description="The alerts of this page.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")
    has_next_page: bool = strawberry.field(description="Whether more alerts follow.")


@strawberry.type(description="Alerts of one risk level.")
class FraudRiskCount:
    risk: FraudRisk = strawberry.field(description="The risk level.")
    count: int = strawberry.field(description="How many.")


@strawberry.type(description="An organization's commerce health over a range, and its alerts being worked on.")
class OrganizationFraudProfile:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    range: ResolvedRange = strawberry.field(description="The range covered.")
    orders: int = strawberry.field(description="order.paid events in the range.")
    refunds: int = strawberry.field(description="order.refunded events in the range.")
    refund_rate: float = strawberry.field(description="refunds / orders (0..1; 0 without orders).")
    payment_attempts: int = strawberry.field(description="Paid orders plus failed payments in the range.")
    failed_payments: int = strawberry.field(description="payment.failed events in the range.")
    failed_payment_rate: float = strawberry.field(description="failedPayments / paymentAttempts (0..1).")
    account_age_days: int = strawberry.field(description="Whole days since the organization was created.")
    open_alerts: list[FraudRiskCount] = strawberry.field(
        description="Alerts open or investigating now, per risk level (every level listed)."
    )
