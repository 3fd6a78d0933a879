"""The audit log: who did what, when, from which address, to what.

Sign-ins (and failed ones), invitations, role changes, removals, password resets, the
creation and revocation of keys, and changes to notification channels (with test sends and
manual retries of deliveries) are recorded here, in the transaction that does them where
there is one. Organization admins read their organization's entries, platform admins every
entry. The sign-in limiter counts recent failures here too, so every API process sees the
same count.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.auth import Viewer, administered_scope
from app.database import connection
from app.errors import BadInput

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
ACTIONS = (
    SIGN_IN, SIGN_IN_FAILED, SIGN_OUT, REFRESH_REUSED, INVITATION_CREATED, INVITATION_ACCEPTED, INVITATION_REVOKED,
    MEMBER_ROLE_CHANGED, MEMBER_REMOVED, PASSWORD_RESET_CREATED, PASSWORD_RESET, USER_CREATED, KEY_CREATED, KEY_REVOKED,
    CHANNEL_CREATED, CHANNEL_UPDATED, CHANNEL_DELETED, CHANNEL_SECRET_ROTATED, TEST_NOTIFICATION_SENT, DELIVERY_RETRIED,
)  # fmt: skip
MAX_PAGE = 500

INSERT = """
INSERT INTO audit_log (organization_id, actor, actor_user_id, address, action, target, details)
VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)
"""


@dataclass(frozen=True)
class Actor:
    """Who acts and from where: a viewer's subject and user, and the request's address."""

    subject: str
    user_id: uuid.UUID | None = None
    address: str | None = None

    @classmethod
    def of(cls, viewer: Viewer, address: str | None) -> Actor:
        return cls(subject=viewer.subject, user_id=viewer.user_id, address=address)


async def record(
    conn: asyncpg.Connection | None,
    *,
    action: str,
    actor: Actor,
    organization_id: uuid.UUID | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Add one entry, in the caller's transaction when it passes its connection."""
    args = (organization_id, actor.subject, actor.user_id, actor.address, action, target, json.dumps(details or {}))
    if conn is not None:
        await conn.execute(INSERT, *args)
        return
    async with connection() as own:
        await own.execute(INSERT, *args)


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


PAGE = """
SELECT id, at, organization_id, actor, actor_user_id, address, action, target, details
FROM audit_log
WHERE ($1::uuid IS NULL OR organization_id = $1)
  AND ($2::text IS NULL OR action = $2)
  AND ($3::bigint IS NULL OR id < $3)
ORDER BY id DESC
LIMIT $4
"""


async def audit_log(
    *, viewer: Viewer, organization_id: Any = None, action: str | None = None, before: int | None = None, limit: int = 100
) -> list[AuditEntry]:
    """Newest first, paged by `before` (an entry id). Organization admins see their
    organization's entries; platform admins every entry, or one organization's."""
    org = await administered_scope(viewer, organization_id, refusal="the audit log needs an organization admin token")
    if action is not None and action not in ACTIONS:
        raise BadInput(f"action {action!r} is not one of {', '.join(ACTIONS)}", field="action")
    if not 1 <= limit <= MAX_PAGE:
        raise BadInput(f"limit must be between 1 and {MAX_PAGE}", field="limit")
    async with connection() as conn:
        rows = await conn.fetch(PAGE, org, action, before, limit)
    return [AuditEntry(**{**dict(row), "details": json.loads(row["details"])}) for row in rows]


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
