"""The audit log: who did what in which role, when, from which address, to what, what it
was before and after, and why.

Sign-ins (and failed ones), invitations, role changes, removals, password resets, the
creation and revocation of keys, and changes to notification channels (with test sends and
manual retries of deliveries) are recorded here, in the transaction that does them where
there is one; so is every other admin mutation (resolvers.common.guarded names its action),
and the support desk's acts with the reason the admin must give. Organization admins read
their organization's entries, platform admins every entry. The sign-in limiter counts recent failures here too, so every API process sees the
same count.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from openpyxl import Workbook

from app.auth import Viewer, administered_scope
from app.database import connection
from app.errors import BadInput
from app.services.pnl import CSV_TYPE, XLSX_TYPE, ExportFile
from app.timebuckets import utcnow

SIGN_IN = "sign_in"
SIGN_IN_FAILED = "sign_in.failed"
SIGN_OUT = "sign_out"
REFRESH_REUSED = "refresh_token.reused"
INVITATION_CREATED = "invitation.created"
INVITATION_ACCEPTED = "invitation.accepted"
INVITATION_REVOKED = "invitation.revoked"
MEMBER_ROLE_CHANGED = "member.role_changed"
MEMBER_REMOVED = "member.removed"
PASSWORD_RESET_CREATED = "password_reset.created"
PASSWORD_RESET = "password.reset"
USER_CREATED = "user.created"
KEY_CREATED = "key.created"
KEY_REVOKED = "key.revoked"
CHANNEL_CREATED = "notification_channel.created"
CHANNEL_UPDATED = "notification_channel.updated"
CHANNEL_DELETED = "notification_channel.deleted"
CHANNEL_SECRET_ROTATED = "notification_channel.secret_rotated"
TEST_NOTIFICATION_SENT = "notification.test_sent"
DELIVERY_RETRIED = "notification_delivery.retried"
# admin mutations of the other domains
COHORT_CREATED = "cohort.created"
COHORT_UPDATED = "cohort.updated"
COHORT_DELETED = "cohort.deleted"
COST_CREATED = "cost.created"
COST_UPDATED = "cost.updated"
COST_DELETED = "cost.deleted"
EXPERIMENT_CREATED = "experiment.created"
EXPERIMENT_UPDATED = "experiment.updated"
EXPERIMENT_STATUS_CHANGED = "experiment.status_changed"
EXPERIMENT_DELETED = "experiment.deleted"
FRAUD_RULE_CREATED = "fraud_rule.created"
FRAUD_RULE_UPDATED = "fraud_rule.updated"
FRAUD_RULE_DELETED = "fraud_rule.deleted"
FRAUD_ALERT_UPDATED = "fraud_alert.updated"
FRAUD_ALERT_NOTE_ADDED = "fraud_alert.note_added"
GOV_ALERT_SETTINGS_UPDATED = "gov_alert_settings.updated"
ORGANIZATION_SUSPENDED = "organization.suspended"
ORGANIZATION_REINSTATED = "organization.reinstated"
ORGANIZATION_SETTINGS_UPDATED = "organization_settings.updated"
SUBJECT_DATA_DELETED = "subject_data.deleted"
MONEY_SETTINGS_UPDATED = "money_settings.updated"
# the support desk
TICKET_OVERRIDDEN = "ticket.overridden"
REFUND_ISSUED_BY_ADMIN = "REFUND_ISSUED_BY_ADMIN"
ORGANIZATION_NOTE_ADDED = "organization_note.added"
ORGANIZATION_NOTE_DELETED = "organization_note.deleted"
# invoices (platform admins)
INVOICE_MARKED_PAID = "invoice.marked_paid"
INVOICE_REMINDER_SENT = "invoice.reminder_sent"
# failed payments (app/services/failed_payments.py)
FAILED_PAYMENT_RESOLVED = "failed_payment.resolved"
FAILED_PAYMENT_RETRY_REQUESTED = "failed_payment.retry_requested"
ACTIONS = (
    SIGN_IN, SIGN_IN_FAILED, SIGN_OUT, REFRESH_REUSED, INVITATION_CREATED, INVITATION_ACCEPTED, INVITATION_REVOKED,
    MEMBER_ROLE_CHANGED, MEMBER_REMOVED, PASSWORD_RESET_CREATED, PASSWORD_RESET, USER_CREATED, KEY_CREATED, KEY_REVOKED,
    CHANNEL_CREATED, CHANNEL_UPDATED, CHANNEL_DELETED, CHANNEL_SECRET_ROTATED, TEST_NOTIFICATION_SENT, DELIVERY_RETRIED,
    COHORT_CREATED, COHORT_UPDATED, COHORT_DELETED, COST_CREATED, COST_UPDATED, COST_DELETED, EXPERIMENT_CREATED,
    EXPERIMENT_UPDATED, EXPERIMENT_STATUS_CHANGED, EXPERIMENT_DELETED, FRAUD_RULE_CREATED, FRAUD_RULE_UPDATED,
    FRAUD_RULE_DELETED, FRAUD_ALERT_UPDATED, FRAUD_ALERT_NOTE_ADDED, GOV_ALERT_SETTINGS_UPDATED, ORGANIZATION_SUSPENDED,
    ORGANIZATION_REINSTATED, ORGANIZATION_SETTINGS_UPDATED, SUBJECT_DATA_DELETED, MONEY_SETTINGS_UPDATED,
    TICKET_OVERRIDDEN, REFUND_ISSUED_BY_ADMIN, ORGANIZATION_NOTE_ADDED, ORGANIZATION_NOTE_DELETED, INVOICE_MARKED_PAID,
    INVOICE_REMINDER_SENT, FAILED_PAYMENT_RESOLVED, FAILED_PAYMENT_RETRY_REQUESTED,
)  # fmt: skip
MAX_PAGE = 500
MAX_EXPORT = 100_000

INSERT = """
INSERT INTO audit_log (organization_id, actor, actor_user_id, address, action, target, details, role, before, after, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8, $9::jsonb, $10::jsonb, $11)
"""


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: a viewer's subject and user, and the request's address."""

    subject: str
    user_id: uuid.UUID | None = None
    address: str | None = None
    role: str | None = None

    @classmethod
    def of(cls, viewer: Viewer, address: str | None) -> Actor:
        role = viewer.role.value if viewer.role is not None else None
        return cls(subject=viewer.subject, user_id=viewer.user_id, address=address, role=role)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


async def record(
    conn: asyncpg.Connection | None,
    *,
    action: str,
    actor: Actor,
    organization_id: uuid.UUID | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
    before: Any = None,
    after: Any = None,
    reason: str | None = None,
) -> None:
    """Add one entry, in the caller's transaction when it passes its connection."""
    args = (
        organization_id, actor.subject, actor.user_id, actor.address, action, target, json.dumps(details or {}, default=str),
        actor.role, _json(before), _json(after), reason,
    )  # fmt: skip
    if conn is not None:
        await conn.execute(INSERT, *args)
        return
    async with connection() as own:
        await own.execute(INSERT, *args)


LAST_RECORDED = """
SELECT after FROM audit_log
WHERE organization_id IS NOT DISTINCT FROM $1 AND target = $2 AND split_part(action, '.', 1) = $3 AND after IS NOT NULL
ORDER BY id DESC
LIMIT 1
"""


async def last_recorded(*, organization_id: uuid.UUID | None, target: str | None, action: str) -> Any:
    """The object as the log last recorded it (the `after` of the newest entry about the same
    target in the same domain): an update's or deletion's `before`, for objects only admins
    change. None when the log has not seen it."""
    if target is None:
        return None
    async with connection() as conn:
        found = await conn.fetchval(LAST_RECORDED, organization_id, target, action.split(".", 1)[0])
    return json.loads(found) if found is not None else None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    organization_id: uuid.UUID | None
    actor: str
    actor_user_id: uuid.UUID | None
    address: str | None
    action: str
    target: str | None
    details: dict[str, Any]
    role: str | None = None
    before: Any = None
    after: Any = None
    reason: str | None = None


PAGE = """
SELECT id, at, organization_id, actor, actor_user_id, address, action, target, details, role, before, after, reason
FROM audit_log
WHERE ($1::uuid IS NULL OR organization_id = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::bigint IS NULL OR id < $3)
  AND ($5::text IS NULL OR actor = $5)
  AND ($6::text IS NULL OR target = $6)
  AND ($7::timestamptz IS NULL OR at >= $7)
  AND ($8::timestamptz IS NULL OR at < $8)
ORDER BY id DESC
LIMIT $4
"""


@dataclass(frozen=True)
class AuditFilter:
    """What an audit query narrows to; every part is optional."""

    organization_id: Any = None
    action: str | None = None
    actor: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def audit_log(
    *, viewer: Viewer, filters: AuditFilter = AuditFilter(), before: int | None = None, limit: int = 100
) -> list[AuditEntry]:
    """Newest first, paged by `before` (an entry id). Organization admins see their
    organization's entries; platform admins every entry, or one organization's."""
    if not 1 <= limit <= MAX_PAGE:
        raise BadInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    return await _entries(viewer=viewer, filters=filters, before=before, limit=limit)


async def _entries(*, viewer: Viewer, filters: AuditFilter, before: int | None, limit: int) -> list[AuditEntry]:
    org = await administered_scope(viewer, filters.organization_id, refusal="the audit log needs an organization admin token")
    if filters.action is not None and filters.action not in ACTIONS:
        raise BadInput(f"action {filters.action!r} is not one of {', '.join(ACTIONS)}", field="action")
    for name, text in (("actor", filters.actor), ("target", filters.target)):
        if text is not None and "\x00" in text:  # PostgreSQL text cannot hold NUL
            raise BadInput(f"{name} cannot contain the NUL character", field=name)
    for name, instant in (("from", filters.since), ("to", filters.until)):
        if instant is not None and instant.utcoffset() is None:
            raise BadInput(f"{name} needs a UTC offset, e.g. 2026-12-01T00:00:00Z", field=name)
    if filters.since is not None and filters.until is not None and filters.since >= filters.until:
        raise BadInput("from must be before to", field="range")
    async with connection() as conn:
        rows = await conn.fetch(
            PAGE, org, filters.action, before, limit, filters.actor, filters.target, filters.since, filters.until
        )
    return [_entry(row) for row in rows]


def _entry(row: asyncpg.Record) -> AuditEntry:
    values = dict(row)
    values["details"] = json.loads(values["details"])
    for name in ("before", "after"):
        values[name] = json.loads(values[name]) if values[name] is not None else None
    return AuditEntry(**values)


EXPORT_COLUMNS = ("id", "at", "organization_id", "actor", "role", "address", "action", "target", "reason", "before", "after", "details")


async def export(*, viewer: Viewer, filters: AuditFilter, fmt: str) -> ExportFile:
    """Every matching entry (up to MAX_EXPORT), newest first, as RFC 4180 CSV or one XLSX
    sheet: the same scope and filters as the log itself."""
    entries = await _entries(viewer=viewer, filters=filters, before=None, limit=MAX_EXPORT)
    rows = [[_cell(getattr(entry, name)) for name in EXPORT_COLUMNS] for entry in entries]
    name = f"audit-log-{utcnow().date()}"
    if fmt == "xlsx":
        book = Workbook()
        sheet = book.active
        sheet.title = "Audit log"
        sheet.append(list(EXPORT_COLUMNS))
        for row in rows:
            sheet.append(row)
        buffer = io.BytesIO()
        book.save(buffer)
        return ExportFile(f"{name}.xlsx", XLSX_TYPE, "base64", base64.b64encode(buffer.getvalue()).decode())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(rows)
    return ExportFile(f"{name}.csv", CSV_TYPE, "utf-8", out.getvalue())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


RECENT_FAILURES = """
SELECT (SELECT count(*) FROM audit_log WHERE action = 'sign_in.failed' AND target = $1 AND at > now() - $3::interval),
       (SELECT min(at) FROM audit_log WHERE action = 'sign_in.failed' AND target = $1 AND at > now() - $3::interval),
       (SELECT count(*) FROM audit_log WHERE action = 'sign_in.failed' AND address = $2 AND at > now() - $3::interval),
       (SELECT min(at) FROM audit_log WHERE action = 'sign_in.failed' AND address = $2 AND at > now() - $3::interval),
       now()
"""


@dataclass(frozen=True)
class RecentFailures:
    by_email: int
    first_by_email: datetime | None
    by_address: int
    first_by_address: datetime | None
    now: datetime


async def recent_failures(*, email: str, address: str | None, window_seconds: int) -> RecentFailures:
    async with connection() as conn:
        row = await conn.fetchrow(RECENT_FAILURES, email, address, timedelta(seconds=window_seconds))
    return RecentFailures(*row)
