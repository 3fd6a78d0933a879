"""Fraud rules engine: rules are data per organization, the worker evaluates them, people
work the alerts.

Rules (`fraud_rules`): a kind, validated params, a risk level, enabled or not. New
organizations get DEFAULT_RULES (a trigger in migration 0004 inserts the same set).
Platform admins and an organization's admins create, update, disable and delete them.

Evaluation (`evaluate_batch`, inside the worker's claiming transaction, so alerts and the
outbox "processed" mark commit together): for each claimed event of a fraud type and each
enabled rule of its kind in its organization, one set-based statement per kind looks at
the stored `events` up to the triggering event's time:

- failed_payments: more than `threshold` payment.failed of one actor in `windowMinutes`.
- refund_rate: among the organization's last `orders` order.paid (at least `minOrders`),
  the share refunded (order.refunded with the same properties.orderId) is above
  `maxRatePercent`; triggered by refunds.
- accounts_per_ip: more than `threshold` account.created from one IP in `windowMinutes`.
- ticket_multi_device: one properties.ticketId scanned on more than `maxDevices` devices
  (properties.deviceId, else device type/browser/OS from the user agent).
- bulk_purchase: one actor's order.paid quantities (properties.quantity, default 1) in
  `windowMinutes` add up to more than `maxQuantity` (so does a single large order).

The actor is the event's visitor id: `u:<userId>`, else `a:<anonymousId>`, else the
cookie-less hash. Evidence is the ids of the events in the window that made the rule fire.
There is at most one active (open or investigating) alert per rule and subject: a new
trigger appends its evidence and refreshes details and last_triggered_at; once the alert is
dismissed or resolved, the next trigger raises a new one.

Workflow: open -> investigating -> dismissed | resolved (open may close directly);
closed alerts are final. Every raise, status change and note is in `fraud_alert_audit`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from app.auth import (
    Viewer,
    administered_by,
    administered_organization,
    administered_scope,
)
from app.consumers import Batch, Consumer
from app.database import connection, transaction
from app.errors import BadInput, NotFound
from app.live_messages import FraudAlertMessage
from app.runners import QueryRunner, Tenant
from app.services.claimed_events import CLAIMED_EVENTS, keys_of
from app.timebuckets import RangeSpec, TimeRange, resolve_range, utcnow
from app.vocabulary import (
    ACCOUNT_CREATED,
    FRAUD_EVENT_TYPES,
    ORDER_PAID,
    ORDER_REFUNDED,
    PAYMENT_FAILED,
    TICKET_SCANNED,
)

FAILED_PAYMENTS = "failed_payments"
REFUND_RATE = "refund_rate"
ACCOUNTS_PER_IP = "accounts_per_ip"
TICKET_MULTI_DEVICE = "ticket_multi_device"
BULK_PURCHASE = "bulk_purchase"
RISKS = ("low", "medium", "high")
ACTIVE = ("open", "investigating")
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"investigating", "dismissed", "resolved"}),
    "investigating": frozenset({"dismissed", "resolved"}),
    "dismissed": frozenset(),
    "resolved": frozenset(),
}
NAME_MAX_CHARS = 200
NOTE_MAX_CHARS = 4000
PAGE_DEFAULT = 50
PAGE_MAX = 200
# An alert keeps the ids of the latest events that made it fire: an active alert (an
# organization's refund rate, say) can keep firing for weeks, and its row must not grow without end.
EVIDENCE_LIMIT = 1000
WORKER_ACTOR = ("worker", "system")  # (actor, role) recorded for alerts the worker raises


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


# --------------------------------------------------------------------------- results


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


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    action: str
    actor: str
    actor_role: str
    from_status: str | None
    to_status: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class AlertDetail:
    """One alert (as listed and pushed live) with its audit trail."""

    alert: FraudAlertMessage
    audit: list[AuditEntry]


@dataclass(frozen=True, slots=True)
class AlertPage:
    alerts: list[FraudAlertMessage]
    end_cursor: str | None
    has_next_page: bool


@dataclass(frozen=True, slots=True)
class FraudProfile:
    organization_id: uuid.UUID
    range: TimeRange
    orders: int
    refunds: int
    payment_attempts: int
    failed_payments: int
    account_age_days: int
    open_alerts: dict[str, int]

    @property
    def refund_rate(self) -> float:
        return self.refunds / self.orders if self.orders else 0.0

    @property
    def failed_payment_rate(self) -> float:
        return self.failed_payments / self.payment_attempts if self.payment_attempts else 0.0


# --------------------------------------------------------------------------- scoping


def _parse_id(value: Any, what: str, field_name: str) -> uuid.UUID:
    """A malformed id is as unknown as a foreign one."""
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} not found", field=field_name) from None


FRAUD_REFUSAL = "fraud rules and alerts need an organization admin or platform admin token"


# --------------------------------------------------------------------------- rules


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


def _rule(row: Mapping[str, Any]) -> Rule:
    return Rule(
        id=row["id"], organization_id=row["organization_id"], kind=row["kind"], name=row["name"],
        params=orjson.loads(row["params"]), risk=row["risk"], enabled=row["enabled"],
        created_by=row["created_by"], created_at=row["created_at"], updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )  # fmt: skip


RULE_COLUMNS = "organization_id, id, kind, name, params, risk, enabled, created_by, created_at, updated_by, updated_at"


async def list_rules(*, viewer: Viewer, organization_id: Any = None) -> list[Rule]:
    """An organization's rules by name; platform admins name the organization."""
    org = await administered_organization(viewer, organization_id, refusal=FRAUD_REFUSAL)
    async with connection() as conn:
        rows = await conn.fetch(f"SELECT {RULE_COLUMNS} FROM fraud_rules WHERE organization_id = $1 ORDER BY name, id", org)
    return [_rule(r) for r in rows]


async def create_rule(
    *, viewer: Viewer, organization_id: Any = None, kind: str, name: str, params: Any, risk: str, enabled: bool = True
) -> Rule:
    """Thresholds are data: a new rule applies to the next event the worker processes."""
    org = await administered_organization(viewer, organization_id, refusal=FRAUD_REFUSAL)
    values = (_kind(kind), _name(name))
    checked = validate_params(kind, params)
    actor, _ = viewer.actor
    async with connection() as conn:
        try:
            row = await conn.fetchrow(
                f"INSERT INTO fraud_rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $8, now())"
                f" RETURNING {RULE_COLUMNS}",
                org, uuid.uuid4(), *values, orjson.dumps(checked).decode(), _risk(risk), bool(enabled), actor,
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise BadInput(f"a rule named {values[1]!r} already exists", field="name") from None
    return _rule(row)


async def _visible_rule(conn: asyncpg.Connection, viewer: Viewer, rule_id: Any) -> Rule:
    own = administered_by(viewer, refusal=FRAUD_REFUSAL)
    rid = _parse_id(rule_id, "rule", "id")
    row = await conn.fetchrow(
        f"SELECT {RULE_COLUMNS} FROM fraud_rules WHERE id = $1 AND ($2::uuid IS NULL OR organization_id = $2) FOR UPDATE",
        rid,
        own,
    )
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
    async with transaction() as conn:
        rule = await _visible_rule(conn, viewer, rule_id)
        if params is not None and not isinstance(params, Mapping):
            raise BadInput("params must be a JSON object", field="params")
        merged = validate_params(rule.kind, {**rule.params, **(params or {})})
        try:
            row = await conn.fetchrow(
                f"UPDATE fraud_rules SET name = $3, params = $4, risk = $5, enabled = $6, updated_by = $7, updated_at = now()"
                f" WHERE organization_id = $1 AND id = $2 RETURNING {RULE_COLUMNS}",
                rule.organization_id,
                rule.id,
                _name(name) if name is not None else rule.name,
                orjson.dumps(merged).decode(),
                _risk(risk) if risk is not None else rule.risk,
                rule.enabled if enabled is None else bool(enabled),
                actor,
            )
        except asyncpg.UniqueViolationError:
            raise BadInput(f"a rule named {name!r} already exists", field="name") from None
    return _rule(row)


async def delete_rule(*, viewer: Viewer, rule_id: Any) -> uuid.UUID:
    """Its alerts stay (they carry the rule's kind, name and risk); nothing new is raised."""
    async with transaction() as conn:
        rule = await _visible_rule(conn, viewer, rule_id)
        await conn.execute("DELETE FROM fraud_rules WHERE organization_id = $1 AND id = $2", rule.organization_id, rule.id)
    return rule.id


# --------------------------------------------------------------------------- evaluation

# Claimed events of one type, joined with the enabled rules of one kind in their organization.
_TRIGGERS = """
WITH rt AS (
    SELECT e.organization_id, e.occurred_at, e.event_id, e.visitor_id, e.user_id, e.properties,
           COALESCE(host(e.ip), e.ip_hash) AS ip_key, r.id AS rule_id, r.params
    FROM {claimed_events}
    JOIN fraud_rules r ON r.organization_id = e.organization_id AND r.kind = '{kind}' AND r.enabled
    WHERE e.type = '{type}'
)
"""
_WINDOW = "x.occurred_at > rt.occurred_at - make_interval(mins => (rt.params->>'windowMinutes')::int) AND x.occurred_at <= rt.occurred_at"
_EVIDENCE = "array_agg(x.event_id ORDER BY x.occurred_at, x.event_id) AS evidence"

_RULE_SQL: dict[str, str] = {
    FAILED_PAYMENTS: f"""
SELECT rt.organization_id, rt.rule_id, 'actor:' || rt.visitor_id AS subject, rt.occurred_at AS triggered_at, w.evidence,
       jsonb_build_object('actor', COALESCE(rt.user_id, rt.visitor_id), 'failedPayments', w.n,
                          'threshold', rt.params->'threshold', 'windowMinutes', rt.params->'windowMinutes') AS details
FROM rt CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(*) AS n FROM events x
    WHERE x.organization_id = rt.organization_id AND x.visitor_id = rt.visitor_id AND x.type = '{PAYMENT_FAILED}' AND {_WINDOW}
) w
WHERE rt.visitor_id IS NOT NULL AND w.n > (rt.params->>'threshold')::int
""",
    ACCOUNTS_PER_IP: f"""
SELECT rt.organization_id, rt.rule_id, 'ip:' || rt.ip_key AS subject, rt.occurred_at AS triggered_at, w.evidence,
       jsonb_build_object('ip', rt.ip_key, 'accounts', w.n,
                          'threshold', rt.params->'threshold', 'windowMinutes', rt.params->'windowMinutes') AS details
FROM rt CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(*) AS n FROM events x
    WHERE x.organization_id = rt.organization_id AND x.type = '{ACCOUNT_CREATED}' AND {_WINDOW}
      AND COALESCE(host(x.ip), x.ip_hash) = rt.ip_key
) w
WHERE rt.ip_key IS NOT NULL AND w.n > (rt.params->>'threshold')::int
""",
    BULK_PURCHASE: f"""
SELECT rt.organization_id, rt.rule_id, 'actor:' || rt.visitor_id AS subject, rt.occurred_at AS triggered_at, w.evidence,
       jsonb_build_object('actor', COALESCE(rt.user_id, rt.visitor_id), 'quantity', w.quantity, 'orders', w.n,
                          'maxQuantity', rt.params->'maxQuantity', 'windowMinutes', rt.params->'windowMinutes') AS details
FROM rt CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(*) AS n,
           sum(CASE WHEN jsonb_typeof(x.properties->'quantity') = 'number'
                    THEN (x.properties->>'quantity')::numeric ELSE 1 END) AS quantity
    FROM events x
    WHERE x.organization_id = rt.organization_id AND x.visitor_id = rt.visitor_id AND x.type = '{ORDER_PAID}' AND {_WINDOW}
) w
WHERE rt.visitor_id IS NOT NULL AND w.quantity > (rt.params->>'maxQuantity')::int
""",
    TICKET_MULTI_DEVICE: f"""
SELECT rt.organization_id, rt.rule_id, 'ticket:' || (rt.properties->>'ticketId') AS subject,
       rt.occurred_at AS triggered_at, w.evidence,
       jsonb_build_object('ticketId', rt.properties->>'ticketId', 'devices', to_jsonb(w.devices), 'scans', w.n,
                          'maxDevices', rt.params->'maxDevices') AS details
FROM rt CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(*) AS n,
           array_agg(DISTINCT d.device ORDER BY d.device) FILTER (WHERE d.device IS NOT NULL) AS devices
    FROM events x CROSS JOIN LATERAL (
        SELECT NULLIF(COALESCE(NULLIF(x.properties->>'deviceId', ''), concat_ws('/', x.device_type, x.browser, x.os)), '')
               AS device
    ) d
    WHERE x.organization_id = rt.organization_id AND x.type = '{TICKET_SCANNED}'
      AND (x.properties->>'ticketId') = (rt.properties->>'ticketId') AND x.occurred_at <= rt.occurred_at
) w
WHERE rt.properties->>'ticketId' IS NOT NULL AND cardinality(w.devices) > (rt.params->>'maxDevices')::int
""",
    REFUND_RATE: f"""
SELECT rt.organization_id, rt.rule_id, 'organization' AS subject, rt.occurred_at AS triggered_at, f.evidence,
       jsonb_build_object('orders', s.n, 'refunds', f.refunded, 'ratePercent', round(100.0 * f.refunded / s.n, 1),
                          'maxRatePercent', rt.params->'maxRatePercent', 'sampleOrders', rt.params->'orders') AS details
FROM rt
CROSS JOIN LATERAL (
    SELECT array_agg(p.order_id) AS orders, count(*) AS n, min(p.occurred_at) AS since
    FROM (
        SELECT x.properties->>'orderId' AS order_id, x.occurred_at FROM events x
        WHERE x.organization_id = rt.organization_id AND x.type = '{ORDER_PAID}' AND x.occurred_at <= rt.occurred_at
        ORDER BY x.occurred_at DESC LIMIT (rt.params->>'orders')::int
    ) p
) s
CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(DISTINCT x.properties->>'orderId') AS refunded FROM events x
    WHERE x.organization_id = rt.organization_id AND x.type = '{ORDER_REFUNDED}'
      AND x.occurred_at >= s.since AND x.occurred_at <= rt.occurred_at AND (x.properties->>'orderId') = ANY(s.orders)
) f
WHERE s.n >= (rt.params->>'minOrders')::int AND f.refunded * 100 > (rt.params->>'maxRatePercent')::int * s.n
""",
}

# One active alert per (rule, subject): a conflict extends it. Rows arrive grouped (one per
# key) and sorted, so concurrent workers lock in one order.
_UPSERT_ALERTS = f"""
INSERT INTO fraud_alerts AS a (organization_id, id, rule_id, kind, rule_name, risk, subject, details, evidence,
                               triggered_at, last_triggered_at)
SELECT u.organization_id, gen_random_uuid(), u.rule_id, r.kind, r.name, r.risk, u.subject, u.details,
       ARRAY(SELECT jsonb_array_elements_text(u.evidence)), u.triggered_at, u.last_triggered_at
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::jsonb[], $7::jsonb[])
     AS u(organization_id, rule_id, subject, triggered_at, last_triggered_at, evidence, details)
JOIN fraud_rules r ON r.organization_id = u.organization_id AND r.id = u.rule_id
ORDER BY u.organization_id, u.rule_id, u.subject
ON CONFLICT (organization_id, rule_id, subject) WHERE status IN ('open', 'investigating') DO UPDATE SET
    evidence = ARRAY(SELECT t.id FROM (
                         SELECT v.id, min(v.n) AS n FROM unnest(a.evidence || EXCLUDED.evidence) WITH ORDINALITY AS v(id, n)
                         GROUP BY v.id ORDER BY min(v.n) DESC LIMIT {EVIDENCE_LIMIT}) t
                     ORDER BY t.n),
    details = CASE WHEN EXCLUDED.last_triggered_at >= a.last_triggered_at THEN EXCLUDED.details ELSE a.details END,
    last_triggered_at = GREATEST(a.last_triggered_at, EXCLUDED.last_triggered_at),
    updated_at = clock_timestamp()
RETURNING a.*, (a.xmax = 0) AS inserted
"""

_AUDIT_RAISED = """
INSERT INTO fraud_alert_audit (organization_id, alert_id, action, actor, actor_role, to_status)
SELECT o, a, 'raised', $3, $4, 'open' FROM unnest($1::uuid[], $2::uuid[]) AS k(o, a)
"""


@dataclass(slots=True)
class _Hit:
    """What the rules found for one (organization, rule, subject) in a batch."""

    triggered_at: datetime
    last_triggered_at: datetime
    evidence: dict[str, None]  # ordered set
    details: str


async def evaluate_batch(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> list[FraudAlertMessage]:
    """Raise or extend alerts for a claimed batch, in the caller's transaction; returns them for publishing."""
    triggers = [r for r in rows if r["type"] in FRAUD_EVENT_TYPES]
    if not triggers:
        return []
    keys = keys_of(triggers)
    present = {r["type"] for r in triggers}
    hits: dict[tuple[uuid.UUID, uuid.UUID, str], _Hit] = {}
    for kind, sql in _RULE_SQL.items():
        if TRIGGER_TYPE[kind] in present:
            query = _TRIGGERS.format(claimed_events=CLAIMED_EVENTS, kind=kind, type=TRIGGER_TYPE[kind]) + sql
            for found in await conn.fetch(query, *keys):
                _add_hit(hits, found)
    if not hits:
        return []
    return await _store_hits(conn, hits)


def _add_hit(hits: dict[tuple[uuid.UUID, uuid.UUID, str], _Hit], found: Mapping[str, Any]) -> None:
    key = (found["organization_id"], found["rule_id"], found["subject"])
    at = found["triggered_at"]
    hit = hits.get(key)
    if hit is None:
        hits[key] = _Hit(at, at, dict.fromkeys(found["evidence"]), found["details"])
        return
    hit.evidence.update(dict.fromkeys(found["evidence"]))
    hit.triggered_at = min(hit.triggered_at, at)
    if at >= hit.last_triggered_at:
        hit.last_triggered_at, hit.details = at, found["details"]


async def _store_hits(
    conn: asyncpg.Connection, hits: dict[tuple[uuid.UUID, uuid.UUID, str], _Hit]
) -> list[FraudAlertMessage]:
    ordered = sorted(hits.items(), key=lambda item: (str(item[0][0]), str(item[0][1]), item[0][2]))
    records = await conn.fetch(
        _UPSERT_ALERTS,
        [k[0] for k, _ in ordered],
        [k[1] for k, _ in ordered],
        [k[2] for k, _ in ordered],
        [h.triggered_at for _, h in ordered],
        [h.last_triggered_at for _, h in ordered],
        [orjson.dumps(list(h.evidence)[-EVIDENCE_LIMIT:]).decode() for _, h in ordered],
        [h.details for _, h in ordered],
    )
    raised = [r for r in records if r["inserted"]]
    if raised:
        await conn.execute(
            _AUDIT_RAISED, [r["organization_id"] for r in raised], [r["id"] for r in raised], *WORKER_ACTOR
        )
    return [_alert(r) for r in records]


# --------------------------------------------------------------------------- live alerts


async def alert_stream_scope(*, viewer: Viewer, organization_id: Any = None) -> uuid.UUID | None:
    """The organization a live subscriber follows; None: every organization (platform admins)."""
    return await administered_scope(viewer, organization_id, refusal=FRAUD_REFUSAL)


# --------------------------------------------------------------------------- alerts

ALERT_COLUMNS = (
    "organization_id, id, rule_id, rule_name, kind, risk, subject, status, details, evidence, triggered_at,"
    " last_triggered_at, raised_at, updated_at"
)


def _alert(row: Mapping[str, Any]) -> FraudAlertMessage:
    return FraudAlertMessage(
        id=row["id"], organization_id=row["organization_id"], rule_id=row["rule_id"], rule_name=row["rule_name"],
        kind=row["kind"], risk=row["risk"], subject=row["subject"], status=row["status"],
        details=orjson.loads(row["details"]), evidence=tuple(row["evidence"]), triggered_at=row["triggered_at"],
        last_triggered_at=row["last_triggered_at"], raised_at=row["raised_at"], updated_at=row["updated_at"],
    )  # fmt: skip


def _audit_entry(row: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        at=row["at"], action=row["action"], actor=row["actor"], actor_role=row["actor_role"],
        from_status=row["from_status"], to_status=row["to_status"], note=row["note"],
    )  # fmt: skip


async def _with_audit(conn: asyncpg.Connection, alert: FraudAlertMessage) -> AlertDetail:
    rows = await conn.fetch(
        "SELECT at, action, actor, actor_role, from_status, to_status, note FROM fraud_alert_audit"
        " WHERE organization_id = $1 AND alert_id = $2 ORDER BY id",
        alert.organization_id,
        alert.id,
    )
    return AlertDetail(alert, [_audit_entry(row) for row in rows])


def _cursor(alert: FraudAlertMessage) -> str:
    return base64.urlsafe_b64encode(f"{alert.raised_at.isoformat()}|{alert.id}".encode()).decode()


def _after(cursor: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    if cursor is None:
        return None, None
    try:
        raised, alert_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(raised), uuid.UUID(alert_id)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadInput("after is not a cursor returned by fraudAlerts", field="after") from None


def _choice(value: str | None, allowed: Sequence[str], name: str) -> str | None:
    if value is not None and value not in allowed:
        raise BadInput(f"{name} must be one of {', '.join(allowed)}", field=name)
    return value


_LIST_ALERTS = f"""
SELECT {ALERT_COLUMNS} FROM fraud_alerts
WHERE ($1::uuid IS NULL OR organization_id = $1)
  AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR risk = $3) AND ($4::text IS NULL OR kind = $4)
  AND ($5::timestamptz IS NULL OR raised_at >= $5)
  AND ($6::timestamptz IS NULL OR (raised_at, id) < ($6, $7::uuid))
ORDER BY raised_at DESC, id DESC
LIMIT $8
"""


async def list_alerts(
    *,
    viewer: Viewer,
    organization_id: Any = None,
    status: str | None = None,
    risk: str | None = None,
    kind: str | None = None,
    since: datetime | None = None,
    first: int = PAGE_DEFAULT,
    after: str | None = None,
) -> AlertPage:
    """Newest first; platform admins see every organization unless they name one."""
    org = await administered_scope(viewer, organization_id, refusal=FRAUD_REFUSAL)
    if not 1 <= first <= PAGE_MAX:
        raise BadInput(f"first must be from 1 to {PAGE_MAX}", field="first")
    filters = (_choice(status, tuple(TRANSITIONS), "status"), _choice(risk, RISKS, "risk"), _choice(kind, KINDS, "kind"))
    cursor_at, cursor_id = _after(after)
    async with connection() as conn:
        rows = await conn.fetch(_LIST_ALERTS, org, *filters, since, cursor_at, cursor_id, first + 1)
    alerts = [_alert(r) for r in rows[:first]]
    more = len(rows) > first
    return AlertPage(alerts=alerts, end_cursor=_cursor(alerts[-1]) if alerts else None, has_next_page=more)


async def _visible_alert(
    conn: asyncpg.Connection, viewer: Viewer, alert_id: Any, *, lock: bool = False
) -> FraudAlertMessage:
    own = administered_by(viewer, refusal=FRAUD_REFUSAL)
    aid = _parse_id(alert_id, "alert", "id")
    row = await conn.fetchrow(
        f"SELECT {ALERT_COLUMNS} FROM fraud_alerts WHERE id = $1 AND ($2::uuid IS NULL OR organization_id = $2)"
        + (" FOR UPDATE" if lock else ""),
        aid,
        own,
    )
    if row is None:
        raise NotFound("alert not found", field="id")
    return _alert(row)


async def get_alert(*, viewer: Viewer, alert_id: Any) -> AlertDetail:
    """One alert with its audit trail."""
    async with connection() as conn:
        return await _with_audit(conn, await _visible_alert(conn, viewer, alert_id))


def _note(value: str | None, *, required: bool) -> str | None:
    note = value.strip() if isinstance(value, str) else None
    if not note:
        if required:
            raise BadInput("note must not be empty", field="note")
        return None
    if len(note) > NOTE_MAX_CHARS:
        raise BadInput(f"note is longer than {NOTE_MAX_CHARS} characters", field="note")
    return note


async def update_alert(*, viewer: Viewer, alert_id: Any, status: str, note: str | None = None) -> AlertDetail:
    """Move an alert along its workflow; the change and its note go into the audit trail."""
    text = _note(note, required=False)
    actor, role = viewer.actor
    async with transaction() as conn:
        alert = await _visible_alert(conn, viewer, alert_id, lock=True)
        if status not in TRANSITIONS.get(alert.status, ()):
            allowed = ", ".join(sorted(TRANSITIONS[alert.status])) or "nothing (it is closed)"
            raise BadInput(f"an alert that is {alert.status} can move to {allowed}, not {status}", field="status")
        await conn.execute(
            "UPDATE fraud_alerts SET status = $3, updated_at = clock_timestamp() WHERE organization_id = $1 AND id = $2",
            alert.organization_id, alert.id, status,
        )  # fmt: skip
        await _audit(conn, alert, "status", actor, role, alert.status, status, text)
    return await get_alert(viewer=viewer, alert_id=alert.id)


async def add_note(*, viewer: Viewer, alert_id: Any, note: str) -> AlertDetail:
    """Notes are allowed in every status, closed ones included: investigations outlive alerts."""
    text = _note(note, required=True)
    actor, role = viewer.actor
    async with transaction() as conn:
        alert = await _visible_alert(conn, viewer, alert_id, lock=True)
        await _audit(conn, alert, "note", actor, role, None, None, text)
    return await get_alert(viewer=viewer, alert_id=alert.id)


async def _audit(
    conn: asyncpg.Connection,
    alert: FraudAlertMessage,
    action: str,
    actor: str,
    role: str,
    old: str | None,
    new: str | None,
    note: str | None,
) -> None:
    await conn.execute(
        "INSERT INTO fraud_alert_audit (organization_id, alert_id, action, actor, actor_role, from_status, to_status, note)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        alert.organization_id, alert.id, action, actor, role, old, new, note,
    )  # fmt: skip


# --------------------------------------------------------------------------- profile

_PROFILE_COUNTS = f"""
SELECT count(*) FILTER (WHERE type = '{ORDER_PAID}') AS orders,
       count(*) FILTER (WHERE type = '{ORDER_REFUNDED}') AS refunds,
       count(*) FILTER (WHERE type = '{PAYMENT_FAILED}') AS failed
FROM events
WHERE organization_id = $1 AND type = ANY($2::text[]) AND occurred_at >= $3 AND occurred_at < $4
"""


class FraudProfileQuery(QueryRunner[uuid.UUID, None, FraudProfile]):
    """Commerce health of an organization over a range, and its alerts still being worked on."""

    kind = "organization_fraud_profile"

    async def scope(self) -> uuid.UUID:
        return await administered_organization(self.viewer, self.inputs.get("organization_id"), refusal=FRAUD_REFUSAL)

    def tenant(self, org: uuid.UUID) -> Tenant:
        return Tenant(org)

    async def fetch(self, org: uuid.UUID, plan: None) -> FraudProfile:
        return await _fraud_profile(org, self.inputs["time_range"])


async def organization_profile(*, viewer: Viewer, organization_id: Any = None, time_range: RangeSpec) -> FraudProfile:
    return await FraudProfileQuery(viewer=viewer, organization_id=organization_id, time_range=time_range).run()


async def _fraud_profile(org: uuid.UUID, time_range: RangeSpec) -> FraudProfile:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT timezone, created_at FROM organizations WHERE id = $1", org)
        if row is None:
            raise NotFound("organization not found", field="organizationId")
        span = resolve_range(time_range, row["timezone"])
        counts = await conn.fetchrow(_PROFILE_COUNTS, org, [ORDER_PAID, ORDER_REFUNDED, PAYMENT_FAILED], span.start, span.end)
        open_alerts = await conn.fetch(
            "SELECT risk, count(*) AS n FROM fraud_alerts WHERE organization_id = $1 AND status = ANY($2::text[])"
            " GROUP BY risk",
            org,
            list(ACTIVE),
        )
    by_risk = {r["risk"]: r["n"] for r in open_alerts}
    return FraudProfile(
        organization_id=org, range=span, orders=counts["orders"], refunds=counts["refunds"],
        payment_attempts=counts["orders"] + counts["failed"], failed_payments=counts["failed"],
        account_age_days=max(0, (utcnow() - row["created_at"].astimezone(UTC)).days),
        open_alerts={risk: by_risk.get(risk, 0) for risk in RISKS},
    )  # fmt: skip


class FraudConsumer(Consumer):
    """The fraud rules over a batch's commerce events; alerts to their organization and the platform."""

    name = "fraud"
    event_types = FRAUD_EVENT_TYPES

    async def apply(
        self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch
    ) -> list[FraudAlertMessage]:
        return await evaluate_batch(conn, rows)

    def channels(self, batch: Batch) -> set[str]:
        return {channel for alert in batch.effects[self.name] for channel in alert.channels}

    def feed(self, batch: Batch, followed: Collection[str]) -> list[FraudAlertMessage]:
        return batch.effects[self.name]
