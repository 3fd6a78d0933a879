"""Notifications: channels (webhooks, email) that organizations and the platform configure,
and durable deliveries to them.

Whatever raises a notification calls `enqueue_notification` in its own transaction: one
delivery row per enabled channel subscribed to the kind, committed with the alert (or
invitation, or request) or not at all. The worker sends them (`sender.send_due`), signed as
Standard Webhooks says, retried with exponential backoff and jitter, then marked dead.

Modules: kinds (the one list of kinds), channels (managing channels), deliveries (reading and
retrying them), sender (the worker's step), signing, destinations (what a webhook may call),
mail (SMTP).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import orjson

from app.database import connection
from app.services.notifications.kinds import KINDS
from app.settings import get_settings

__all__ = ["KINDS", "enqueue_notification", "enqueue_notifications"]

# A channel's organization matched with IS NOT DISTINCT FROM: NULL is the platform's.
ENQUEUE = """
INSERT INTO notification_deliveries (id, organization_id, channel_id, kind, payload, max_attempts)
SELECT gen_random_uuid(), c.organization_id, c.id, $1, n.payload, $4
FROM unnest($2::uuid[], $3::jsonb[]) AS n(organization_id, payload)
JOIN notification_channels c
  ON c.organization_id IS NOT DISTINCT FROM n.organization_id AND c.enabled AND $1 = ANY(c.kinds)
"""


async def enqueue_notification(
    conn: asyncpg.Connection | None, *, organization_id: uuid.UUID | None, kind: str, payload: dict[str, Any]
) -> int:
    """Write one durable delivery per enabled channel of that organization (organization_id None
    = platform channels) subscribed to `kind`, in the caller's transaction when conn is given.
    Returns the number of deliveries written."""
    return await enqueue_notifications(conn, kind=kind, notifications=[(organization_id, payload)])


async def enqueue_notifications(
    conn: asyncpg.Connection | None,
    *,
    kind: str,
    notifications: Sequence[tuple[uuid.UUID | None, dict[str, Any]]],
) -> int:
    """`enqueue_notification` for many notifications of one kind in one statement (a worker
    batch's alerts): (organization_id, payload) each."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}; add it to app/services/notifications/kinds.py")
    if not notifications:
        return 0
    args = (
        kind,
        [org for org, _ in notifications],
        [orjson.dumps(payload).decode() for _, payload in notifications],
        max(1, get_settings().notification_max_attempts),
    )
    if conn is not None:
        return _count(await conn.execute(ENQUEUE, *args))
    async with connection() as own:
        return _count(await own.execute(ENQUEUE, *args))


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])
