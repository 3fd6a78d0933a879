"""Fraud rules, alerts, profile and the live alert feed (thin: convert, call, map)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from app.auth import Access
from app.live_messages import FraudAlertMessage
from app.services import fraud as service
from app.services.accounts import audit
from resolvers.common import RangeArg, follow_channel, from_bus, guarded, to_range_spec, to_resolved_range, viewer_of
from schema.fraud import (
    FraudAlert,
    FraudAlertAuditEntry,
    FraudAlertDetail,
    FraudAlertPage,
    FraudAlertStatus,
    FraudRisk,
    FraudRiskCount,
    FraudRule,
    FraudRuleKind,
    OrganizationFraudProfile,
)

OrganizationArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="The organization; platform admins name one, org admins may omit it (theirs)."),
]
RuleIdArg = Annotated[strawberry.ID, strawberry.argument(name="id", description="The rule.")]
AlertIdArg = Annotated[strawberry.ID, strawberry.argument(name="id", description="The alert.")]


def _id(value: object) -> strawberry.ID:
    return strawberry.ID(str(value))


def to_rule(rule: service.Rule) -> FraudRule:
    return FraudRule(
        id=_id(rule.id), organization_id=_id(rule.organization_id), kind=FraudRuleKind(rule.kind), name=rule.name,
        params=rule.params, risk=FraudRisk(rule.risk), enabled=rule.enabled, created_by=rule.created_by,
        created_at=rule.created_at, updated_by=rule.updated_by, updated_at=rule.updated_at,
    )  # fmt: skip


def _status(value: str | None) -> FraudAlertStatus | None:
    return FraudAlertStatus(value) if value is not None else None


def to_audit(entry: service.AuditEntry) -> FraudAlertAuditEntry:
    return FraudAlertAuditEntry(
        at=entry.at, action=entry.action, actor=entry.actor, actor_role=entry.actor_role,
        from_status=_status(entry.from_status), to_status=_status(entry.to_status), note=entry.note,
    )  # fmt: skip


def fraud_alert_of(alert: FraudAlertMessage) -> FraudAlert:
    """The one FraudAlert mapper: listed, in a detail, and live."""
    return FraudAlert(
        id=_id(alert.id), organization_id=_id(alert.organization_id), rule_id=_id(alert.rule_id),
        rule_name=alert.rule_name, kind=FraudRuleKind(alert.kind), risk=FraudRisk(alert.risk), subject=alert.subject,
        status=FraudAlertStatus(alert.status), details=alert.details, evidence=list(alert.evidence),
        triggered_at=alert.triggered_at, last_triggered_at=alert.last_triggered_at, raised_at=alert.raised_at,
        updated_at=alert.updated_at,
    )  # fmt: skip


def to_detail(detail: service.AlertDetail) -> FraudAlertDetail:
    return FraudAlertDetail(alert=fraud_alert_of(detail.alert), audit=[to_audit(e) for e in detail.audit])


def _value(choice: FraudAlertStatus | FraudRisk | FraudRuleKind | None) -> str | None:
    return choice.value if choice is not None else None


# --------------------------------------------------------------------------- queries


async def fraud_rules(info: Info, organization_id: OrganizationArg = None) -> list[FraudRule]:
    return [to_rule(r) for r in await service.list_rules(viewer=viewer_of(info), organization_id=organization_id)]


async def fraud_alerts(
    info: Info,
    organization_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(description="Only this organization's alerts; platform admins see every organization without it."),
    ] = None,
    status: Annotated[FraudAlertStatus | None, strawberry.argument(description="Only alerts in this status.")] = None,
    risk: Annotated[FraudRisk | None, strawberry.argument(description="Only alerts of this risk.")] = None,
    kind: Annotated[FraudRuleKind | None, strawberry.argument(description="Only alerts of this rule kind.")] = None,
    since: Annotated[datetime | None, strawberry.argument(description="Only alerts raised at or after this instant.")] = None,
    first: Annotated[int, strawberry.argument(description="Page size (1..200).")] = service.PAGE_DEFAULT,
    after: Annotated[str | None, strawberry.argument(description="endCursor of the previous page.")] = None,
) -> FraudAlertPage:
    page = await service.list_alerts(
        viewer=viewer_of(info), organization_id=organization_id, status=_value(status), risk=_value(risk),
        kind=_value(kind), since=since, first=first, after=after,
    )  # fmt: skip
    alerts = [fraud_alert_of(a) for a in page.alerts]
    return FraudAlertPage(alerts=alerts, end_cursor=page.end_cursor, has_next_page=page.has_next_page)


async def fraud_alert(info: Info, alert_id: AlertIdArg) -> FraudAlertDetail:
    return to_detail(await service.get_alert(viewer=viewer_of(info), alert_id=alert_id))


async def organization_fraud_profile(
    info: Info, range_: RangeArg, organization_id: OrganizationArg = None
) -> OrganizationFraudProfile:
    found = await service.organization_profile(
        viewer=viewer_of(info), organization_id=organization_id, time_range=to_range_spec(range_)
    )
    return OrganizationFraudProfile(
        organization_id=_id(found.organization_id), range=to_resolved_range(found.range), orders=found.orders,
        refunds=found.refunds, refund_rate=found.refund_rate, payment_attempts=found.payment_attempts,
        failed_payments=found.failed_payments, failed_payment_rate=found.failed_payment_rate,
        account_age_days=found.account_age_days,
        open_alerts=[FraudRiskCount(risk=FraudRisk(risk), count=n) for risk, n in found.open_alerts.items()],
    )  # fmt: skip


# --------------------------------------------------------------------------- mutations


async def create_fraud_rule(
    info: Info,
    kind: Annotated[FraudRuleKind, strawberry.argument(description="What the rule looks for.")],
    name: Annotated[str, strawberry.argument(description="A name, unique in the organization.")],
    params: Annotated[JSON, strawberry.argument(description="Thresholds of the kind, e.g. {\"threshold\": 3, \"windowMinutes\": 60}.")],
    risk: Annotated[FraudRisk, strawberry.argument(description="Risk of the alerts it raises.")],
    organization_id: OrganizationArg = None,
    enabled: Annotated[bool, strawberry.argument(description="Start enabled (default) or disabled.")] = True,
) -> FraudRule:
    rule = await service.create_rule(
        viewer=viewer_of(info), organization_id=organization_id, kind=kind.value, name=name, params=params,
        risk=risk.value, enabled=enabled,
    )  # fmt: skip
    return to_rule(rule)


async def update_fraud_rule(
    info: Info,
    rule_id: RuleIdArg,
    name: Annotated[str | None, strawberry.argument(description="New name; omit to keep.")] = None,
    params: Annotated[
        JSON | None, strawberry.argument(description="Params to change, merged over the current ones; omit to keep.")
    ] = None,
    risk: Annotated[FraudRisk | None, strawberry.argument(description="New risk; omit to keep.")] = None,
    enabled: Annotated[bool | None, strawberry.argument(description="false disables, true enables; omit to keep.")] = None,
) -> FraudRule:
    rule = await service.update_rule(
        viewer=viewer_of(info), rule_id=rule_id, name=name, params=params, risk=_value(risk), enabled=enabled
    )
    return to_rule(rule)


async def delete_fraud_rule(info: Info, rule_id: RuleIdArg) -> strawberry.ID:
    return _id(await service.delete_rule(viewer=viewer_of(info), rule_id=rule_id))


async def update_fraud_alert(
    info: Info,
    alert_id: AlertIdArg,
    status: Annotated[FraudAlertStatus, strawberry.argument(description="The new status.")],
    note: Annotated[str | None, strawberry.argument(description="Why; kept in the audit trail.")] = None,
) -> FraudAlertDetail:
    return to_detail(await service.update_alert(viewer=viewer_of(info), alert_id=alert_id, status=status.value, note=note))


async def add_fraud_alert_note(
    info: Info,
    alert_id: AlertIdArg,
    note: Annotated[str, strawberry.argument(description="The note (up to 4,000 characters).")],
) -> FraudAlertDetail:
    return to_detail(await service.add_note(viewer=viewer_of(info), alert_id=alert_id, note=note))


# --------------------------------------------------------------------------- live


async def fraud_alerts_live(
    info: Info,
    organization_id: Annotated[
        strawberry.ID | None,
        strawberry.argument(description="Follow this organization; platform admins follow every organization without it."),
    ] = None,
) -> AsyncGenerator[FraudAlert, None]:
    org = await service.alert_stream_scope(viewer=viewer_of(info), organization_id=organization_id)
    channel = FraudAlertMessage.channel_of(str(org) if org is not None else None)
    async for alert in follow_channel(info, channel, from_bus(FraudAlertMessage, fraud_alert_of)):
        yield alert


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The fraud domain's reads, merged into the root by schema.root."""

    fraud_rules: list[FraudRule] = guarded(
        Access.ORG_ADMINS, fraud_rules,
        "An organization's fraud rules.",
    )
    fraud_alerts: FraudAlertPage = guarded(
        Access.ORG_ADMINS, fraud_alerts,
        "Fraud alerts, newest first, filtered (organization admins: theirs; platform admins: any organization).",
    )
    fraud_alert: FraudAlertDetail = guarded(Access.ORG_ADMINS, fraud_alert, "One fraud alert with its audit trail.")
    organization_fraud_profile: OrganizationFraudProfile = guarded(
        Access.ORG_ADMINS, organization_fraud_profile,
        "Orders, refund rate, failed payment rate, account age and open alerts of an organization over a range.",
    )


@strawberry.type
class Mutation:
    """The fraud domain's writes, merged into the root by schema.root."""

    create_fraud_rule: FraudRule = guarded(
        Access.ORG_ADMINS, create_fraud_rule,
        "Add a fraud rule with validated params.", audited=audit.FRAUD_RULE_CREATED,
    )
    update_fraud_rule: FraudRule = guarded(
        Access.ORG_ADMINS, update_fraud_rule,
        "Change a fraud rule's name, params, risk, or enable/disable it; applies to the next processed event.", audited=audit.FRAUD_RULE_UPDATED,
    )
    delete_fraud_rule: strawberry.ID = guarded(
        Access.ORG_ADMINS, delete_fraud_rule,
        "Delete a fraud rule (its alerts stay); returns its id.", audited=audit.FRAUD_RULE_DELETED,
    )
    update_fraud_alert: FraudAlertDetail = guarded(
        Access.ORG_ADMINS, update_fraud_alert,
        "Move an alert: open -> investigating -> dismissed | resolved, with an optional note (audited).", audited=audit.FRAUD_ALERT_UPDATED,
    )
    add_fraud_alert_note: FraudAlertDetail = guarded(
        Access.ORG_ADMINS, add_fraud_alert_note,
        "Add a note to an alert's audit trail.", audited=audit.FRAUD_ALERT_NOTE_ADDED,
    )


@strawberry.type
class Subscription:
    """The fraud domain's live updates, merged into the root by schema.root."""

    fraud_alerts: FraudAlert = guarded(
        Access.ORG_ADMINS, fraud_alerts_live,
        "Each fraud alert the worker raises or extends (platform admins: every organization or one; organization admins: theirs).", subscription=True,
    )
