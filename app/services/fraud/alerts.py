"""Fraud alerts: listing them (newest first, by cursor), working them, their audit trail.

Workflow: open -> investigating -> dismissed | resolved (open may close directly);
closed alerts are final. Every raise, status change and note is in `fraud_alert_audit`.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from app.auth import Viewer, administered_by, administered_scope
from app.database import connection, transaction
from app.errors import BadInput, NotFound, parse_id
from app.live_messages import FraudAlertMessage
from app.services.fraud.rules import FRAUD_REFUSAL, KINDS, RISKS

ACTIVE = ("open", "investigating")
TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"investigating", "dismissed", "resolved"}),
    "investigating": frozenset({"dismissed", "resolved"}),
    "dismissed": frozenset(),
    "resolved": frozenset(),
}
NOTE_MAX_CHARS = 4000
PAGE_DEFAULT = 50
PAGE_MAX = 200


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


async def alert_stream_scope(*, viewer: Viewer, organization_id: Any = None) -> uuid.UUID | None:
    """The organization a live subscriber follows; None: every organization (platform admins)."""
    return await administered_scope(viewer, organization_id, refusal=FRAUD_REFUSAL)


ALERT_COLUMNS = (
    "organization_id, id, rule_id, rule_name, kind, risk, subject, status, details, evidence, triggered_at,"
    " last_triggered_at, raised_at, updated_at"
)


def alert_message(row: Mapping[str, Any]) -> FraudAlertMessage:
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


def _representable(since: datetime | None) -> datetime | None:
    """`since` in UTC. An instant of year 1 with a positive offset falls before year 1 in UTC,
    which no datetime holds: it is before every alert, so it filters nothing."""
    if since is None or since.tzinfo is None:
        return since
    try:
        return since.astimezone(UTC)
    except OverflowError:
        if since.year <= 1:
            return None
        raise BadInput("since is out of range", field="since") from None


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
    since = _representable(since)
    async with connection() as conn:
        rows = await conn.fetch(_LIST_ALERTS, org, *filters, since, cursor_at, cursor_id, first + 1)
    alerts = [alert_message(r) for r in rows[:first]]
    more = len(rows) > first
    return AlertPage(alerts=alerts, end_cursor=_cursor(alerts[-1]) if alerts else None, has_next_page=more)


async def _visible_alert(
    conn: asyncpg.Connection, viewer: Viewer, alert_id: Any, *, lock: bool = False
) -> FraudAlertMessage:
    own = administered_by(viewer, refusal=FRAUD_REFUSAL)
    aid = parse_id(alert_id, "alert", "id")
    row = await conn.fetchrow(
        f"SELECT {ALERT_COLUMNS} FROM fraud_alerts WHERE id = $1 AND ($2::uuid IS NULL OR organization_id = $2)"
        + (" FOR UPDATE" if lock else ""),
        aid,
        own,
    )
    if row is None:
        raise NotFound("alert not found", field="id")
    return alert_message(row)


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
