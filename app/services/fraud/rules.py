"""Fraud rules: data per organization, which the worker evaluates (`evaluation`).

Rules (`fraud_rules`): a kind, validated params, a risk level, enabled or not. New
organizations get DEFAULT_RULES (a trigger in migration 0004 inserts the same set).
Platform admins and an organization's admins create, update, disable and delete them.

What each kind looks for, and so what its params mean, is in `evaluation`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.expressions import RawSQL
from tortoise.transactions import in_transaction

from app.auth import Viewer, administered_by, administered_organization
from app.errors import BadInput, NotFound, parse_id
from app.vocabulary import ACCOUNT_CREATED, ORDER_PAID, ORDER_REFUNDED, PAYMENT_FAILED, TICKET_SCANNED
from models.fraud import FraudRule as FraudRuleRow

FAILED_PAYMENTS = "failed_payments"
REFUND_RATE = "refund_rate"
ACCOUNTS_PER_IP = "accounts_per_ip"
TICKET_MULTI_DEVICE = "ticket_multi_device"
BULK_PURCHASE = "bulk_purchase"
RISKS = ("low", "medium", "high")
NAME_MAX_CHARS = 200


@dataclass(frozen=True, slots=True)
class Param:
    low: int
    high: int


WINDOW = Param(1, 43_200)  # up to 30 days
RULE_PARAMS: dict[str, dict[str, Param]] = {
    FAILED_PAYMENTS: {"threshold": Param(1, 100_000), "windowMinutes": WINDOW},
    REFUND_RATE: {"orders": Param(1, 100_000), "maxRatePercent": Param(0, 99), "minOrders": Param(1, 100_000)},
    ACCOUNTS_PER_IP: {"threshold": Param(1, 100_000), "windowMinutes": WINDOW},
    TICKET_MULTI_DEVICE: {"maxDevices": Param(1, 1000)},
    BULK_PURCHASE: {"maxQuantity": Param(1, 10_000_000), "windowMinutes": WINDOW},
}
KINDS = tuple(RULE_PARAMS)
# The event type that makes each kind look again.
TRIGGER_TYPE = {
    FAILED_PAYMENTS: PAYMENT_FAILED,
    REFUND_RATE: ORDER_REFUNDED,
    ACCOUNTS_PER_IP: ACCOUNT_CREATED,
    TICKET_MULTI_DEVICE: TICKET_SCANNED,
    BULK_PURCHASE: ORDER_PAID,
}
# Mirrors pulsegraph_default_fraud_rules() in models/migrations/0004_fraud.sql.
DEFAULT_RULES: tuple[tuple[str, str, dict[str, int], str], ...] = (
    (FAILED_PAYMENTS, "Repeated failed payments", {"threshold": 3, "windowMinutes": 60}, "medium"),
    (REFUND_RATE, "High refund rate", {"orders": 50, "maxRatePercent": 20, "minOrders": 10}, "high"),
    (ACCOUNTS_PER_IP, "Many accounts from one IP", {"threshold": 3, "windowMinutes": 60}, "medium"),
    (TICKET_MULTI_DEVICE, "Ticket scanned on several devices", {"maxDevices": 1}, "high"),
    (BULK_PURCHASE, "Unusual bulk purchase", {"maxQuantity": 20, "windowMinutes": 60}, "low"),
)


@dataclass(frozen=True, slots=True)
class Rule:
    id: uuid.UUID
    organization_id: uuid.UUID
    kind: str
    name: str
    params: dict[str, Any]
    risk: str
    enabled: bool
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime


FRAUD_REFUSAL = "fraud rules and alerts need an organization admin or platform admin token"


def validate_params(kind: str, params: Any) -> dict[str, int]:
    """Every key known, every value an integer in range, so the worker's SQL can trust them."""
    spec = RULE_PARAMS[kind]
    if not isinstance(params, Mapping):
        raise BadInput("params must be a JSON object", field="params")
    for key in params:
        if key not in spec:
            raise BadInput(f"{kind} has no parameter {str(key)[:64]!r}; expected {', '.join(spec)}", field=f"params.{str(key)[:64]}")
    checked: dict[str, int] = {}
    for name, bounds in spec.items():
        value = params.get(name)
        if type(value) is not int or not bounds.low <= value <= bounds.high:
            raise BadInput(
                f"params.{name} must be an integer from {bounds.low} to {bounds.high}", field=f"params.{name}"
            )
        checked[name] = value
    if kind == REFUND_RATE and checked["minOrders"] > checked["orders"]:
        raise BadInput("params.minOrders cannot exceed params.orders", field="params.minOrders")
    return checked


def _kind(value: str) -> str:
    if value not in RULE_PARAMS:
        raise BadInput(f"kind must be one of {', '.join(KINDS)}", field="kind")
    return value


def _risk(value: str) -> str:
    if value not in RISKS:
        raise BadInput(f"risk must be one of {', '.join(RISKS)}", field="risk")
    return value


def _name(value: str) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > NAME_MAX_CHARS or not name.isprintable():
        raise BadInput(f"name must be printable text of 1 to {NAME_MAX_CHARS} characters", field="name")
    return name


def _rule(row: FraudRuleRow) -> Rule:
    return Rule(
        id=row.id, organization_id=row.organization_id, kind=row.kind, name=row.name, params=dict(row.params),
        risk=row.risk, enabled=row.enabled, created_by=row.created_by, created_at=row.created_at,
        updated_by=row.updated_by, updated_at=row.updated_at,
    )  # fmt: skip


async def list_rules(*, viewer: Viewer, organization_id: Any = None) -> list[Rule]:
    """An organization's rules by name; platform admins name the organization."""
    org = await administered_organization(viewer, organization_id, refusal=FRAUD_REFUSAL)
    return [_rule(r) for r in await FraudRuleRow.filter(organization_id=org).order_by("name", "id")]


async def create_rule(
    *, viewer: Viewer, organization_id: Any = None, kind: str, name: str, params: Any, risk: str, enabled: bool = True
) -> Rule:
    """Thresholds are data: a new rule applies to the next event the worker processes."""
    org = await administered_organization(viewer, organization_id, refusal=FRAUD_REFUSAL)
    values = (_kind(kind), _name(name))
    checked = validate_params(kind, params)
    actor, _ = viewer.actor
    kind_, name_ = values
    async with in_transaction() as db:
        try:
            stored = await FraudRuleRow.create(
                using_db=db, organization_id=org, id=uuid.uuid4(), kind=kind_, name=name_, params=checked,
                risk=_risk(risk), enabled=bool(enabled), created_by=actor, updated_by=actor,
            )  # fmt: skip
        except IntegrityError:
            raise BadInput(f"a rule named {name_!r} already exists", field="name") from None
        return _rule(await FraudRuleRow.get(organization_id=org, id=stored.id).using_db(db))


async def _visible_rule(db: BaseDBAsyncClient, viewer: Viewer, rule_id: Any) -> Rule:
    """The rule, locked for the change, if the viewer administers its organization."""
    own = administered_by(viewer, refusal=FRAUD_REFUSAL)
    rid = parse_id(rule_id, "rule", "id")
    query = FraudRuleRow.filter(id=rid) if own is None else FraudRuleRow.filter(organization_id=own, id=rid)
    row = await query.select_for_update().using_db(db).first()
    if row is None:
        raise NotFound("rule not found", field="id")
    return _rule(row)


async def update_rule(
    *,
    viewer: Viewer,
    rule_id: Any,
    name: str | None = None,
    params: Any = None,
    risk: str | None = None,
    enabled: bool | None = None,
) -> Rule:
    """Change what is given (None keeps); params given are merged over the current ones, then validated."""
    actor, _ = viewer.actor
    async with in_transaction() as db:
        rule = await _visible_rule(db, viewer, rule_id)
        if params is not None and not isinstance(params, Mapping):
            raise BadInput("params must be a JSON object", field="params")
        merged = validate_params(rule.kind, {**rule.params, **(params or {})})
        changes = {
            "name": _name(name) if name is not None else rule.name, "params": merged,
            "risk": _risk(risk) if risk is not None else rule.risk,
            "enabled": rule.enabled if enabled is None else bool(enabled),
        }  # fmt: skip
        try:
            await FraudRuleRow.filter(organization_id=rule.organization_id, id=rule.id).using_db(db).update(
                **changes, updated_by=actor, updated_at=RawSQL("now()")
            )
        except IntegrityError:
            raise BadInput(f"a rule named {name!r} already exists", field="name") from None
        return _rule(await FraudRuleRow.get(organization_id=rule.organization_id, id=rule.id).using_db(db))


async def delete_rule(*, viewer: Viewer, rule_id: Any) -> uuid.UUID:
    """Its alerts stay (they carry the rule's kind, name and risk); nothing new is raised."""
    async with in_transaction() as db:
        rule = await _visible_rule(db, viewer, rule_id)
        await FraudRuleRow.filter(organization_id=rule.organization_id, id=rule.id).using_db(db).delete()
    return rule.id
