"""Reading deliveries with their attempts, retrying one now, and sending a test: organization
admins their organization's, platform admins any organization's or the platform's own."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.auth import Viewer, platform_admin_scope
from app.database import connection, transaction
from app.errors import BadInput, NotFound, parse_id
from app.services.accounts.audit import DELIVERY_RETRIED as RETRIED
from app.services.accounts.audit import TEST_NOTIFICATION_SENT as TEST_SENT
from app.services.accounts.audit import Actor, record
from app.services.notifications.channels import channel_scope, visible_channel
from app.services.notifications.kinds import TEST
from app.settings import Settings

PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"
STATUSES = (PENDING, DELIVERED, DEAD)
MAX_PAGE = 100


COLUMNS = """d.id, d.organization_id, d.channel_id, d.kind, d.payload, d.status, d.attempts, d.max_attempts,
             d.next_attempt_at, d.last_error, d.created_at, d.delivered_at"""


@dataclass(frozen=True, slots=True)
class Attempt:
    number: int
    attempted_at: datetime
    status_code: int | None
    error: str | None
    duration_ms: int
    response_excerpt: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: uuid.UUID  # the webhook-id of every attempt
    organization_id: uuid.UUID | None
    channel_id: uuid.UUID
    kind: str
    payload: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None  # pending only
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    attempt_log: list[Attempt]


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[Delivery]
    end_cursor: str | None  # pass as `after` for the next page; None: no more


PAGE = f"""
SELECT {COLUMNS} FROM notification_deliveries d
WHERE ($7::bool OR d.organization_id IS NOT DISTINCT FROM $1)
  AND ($2::text IS NULL OR d.status = $2)
  AND ($3::uuid IS NULL OR d.channel_id = $3)
  AND ($4::timestamptz IS NULL OR (d.created_at, d.id) < ($4, $5::uuid))
ORDER BY d.created_at DESC, d.id DESC
LIMIT $6
"""
ATTEMPTS = """
SELECT delivery_id, number, attempted_at, status_code, error, duration_ms, response_excerpt
FROM notification_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY delivery_id, number
"""


async def deliveries(
    *,
    viewer: Viewer,
    organization_id: Any = None,
    status: str | None = None,
    channel_id: Any = None,
    first: int = 20,
    after: str | None = None,
    every_organization: bool = False,
) -> DeliveryPage:
    """Newest first, paged by cursor."""
    scope = await _scope(viewer, organization_id, every_organization)
    if status is not None and status not in STATUSES:
        raise BadInput(f"status must be one of {', '.join(STATUSES)}", field="status")
    if not 1 <= first <= MAX_PAGE:
        raise BadInput(f"first must be between 1 and {MAX_PAGE}", field="first")
    channel = parse_id(channel_id, "notification channel", "channelId") if channel_id is not None else None
    at, last_id = _cursor(after) if after else (None, None)
    async with connection() as conn:
        rows = await conn.fetch(PAGE, scope, status, channel, at, last_id, first + 1, every_organization)
        found = await _with_attempts(conn, rows[:first])
    more = len(rows) > first
    return DeliveryPage(found, _cursor_of(found[-1]) if more and found else None)


async def retry_delivery(*, viewer: Viewer, delivery_id: Any, address: str | None) -> Delivery:
    """Due now: a pending delivery skips its wait, a dead one gets one more attempt."""
    async with transaction() as conn:
        current = await _visible(conn, viewer, delivery_id, lock=True)
        if current["status"] == DELIVERED:
            raise BadInput("this delivery was delivered already", field="id")
        row = await conn.fetchrow(
            f"""UPDATE notification_deliveries d SET status = 'pending', next_attempt_at = now(),
                       max_attempts = GREATEST(d.max_attempts, d.attempts + 1)
                WHERE d.id = $1 RETURNING {COLUMNS}""",
            current["id"],
        )
        await record(
            conn, action=RETRIED, actor=Actor.of(viewer, address), organization_id=row["organization_id"],
            target=str(row["id"]), details={"from": current["status"], "attempts": current["attempts"]},
        )  # fmt: skip
        [delivery] = await _with_attempts(conn, [row])
    return delivery


async def send_test(*, viewer: Viewer, channel_id: Any, address: str | None, settings: Settings) -> Delivery:
    """A `test` notification to this one channel, whatever kinds it receives (a paused channel
    keeps it until resumed)."""
    async with transaction() as conn:
        channel = await visible_channel(conn, viewer, channel_id)
        payload = {"channelId": str(channel.id), "message": "A test notification from pulsegraph."}
        row = await conn.fetchrow(
            f"""INSERT INTO notification_deliveries AS d (id, organization_id, channel_id, kind, payload, max_attempts)
                VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING {COLUMNS}""",
            uuid.uuid4(), channel.organization_id, channel.id, TEST, orjson.dumps(payload).decode(),
            max(1, settings.notification_max_attempts),
        )  # fmt: skip
        await record(
            conn, action=TEST_SENT, actor=Actor.of(viewer, address), organization_id=channel.organization_id,
            target=str(channel.id), details={"deliveryId": str(row["id"])},
        )  # fmt: skip
    return _delivery(row, [])


async def get_delivery(*, viewer: Viewer, delivery_id: Any) -> Delivery:
    async with connection() as conn:
        row = await _visible(conn, viewer, delivery_id)
        [delivery] = await _with_attempts(conn, [row])
    return delivery


async def _visible(conn: asyncpg.Connection, viewer: Viewer, delivery_id: Any, *, lock: bool = False) -> asyncpg.Record:
    wanted = parse_id(delivery_id, "delivery")
    own = await channel_scope(viewer, None)
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM notification_deliveries d WHERE d.id = $1{' FOR UPDATE' if lock else ''}", wanted
    )
    if row is None or (own is not None and row["organization_id"] != own):
        raise NotFound("delivery not found", field="id")
    return row


async def _with_attempts(conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> list[Delivery]:
    if not rows:
        return []
    by_delivery: dict[uuid.UUID, list[Attempt]] = {}
    for a in await conn.fetch(ATTEMPTS, [r["id"] for r in rows]):
        by_delivery.setdefault(a["delivery_id"], []).append(
            Attempt(a["number"], a["attempted_at"], a["status_code"], a["error"], a["duration_ms"], a["response_excerpt"])
        )
    return [_delivery(r, by_delivery.get(r["id"], [])) for r in rows]


def _delivery(row: asyncpg.Record, attempts: list[Attempt]) -> Delivery:
    payload = row["payload"]
    return Delivery(
        id=row["id"], organization_id=row["organization_id"], channel_id=row["channel_id"], kind=row["kind"],
        payload=orjson.loads(payload) if isinstance(payload, str | bytes) else payload, status=row["status"],
        attempts=row["attempts"], max_attempts=row["max_attempts"],
        next_attempt_at=row["next_attempt_at"] if row["status"] == PENDING else None, last_error=row["last_error"],
        created_at=row["created_at"], delivered_at=row["delivered_at"], attempt_log=attempts,
    )  # fmt: skip


def _cursor_of(delivery: Delivery) -> str:
    raw = f"{delivery.created_at.isoformat()}|{delivery.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _cursor(after: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, last = base64.urlsafe_b64decode(after.encode()).decode().split("|")
        return datetime.fromisoformat(at), uuid.UUID(last)
    except (ValueError, UnicodeDecodeError):
        raise BadInput("after must be a cursor from a previous page", field="after") from None


@dataclass(frozen=True, slots=True)
class WebhookHealth:
    failed_last_24h: int  # deliveries with at least one failed attempt in the last 24 hours
    delivered_last_24h: int
    pending: int  # not delivered yet, first attempts included
    pending_retries: int  # pending after at least one failed attempt
    dead: int
    oldest_pending_at: datetime | None  # the longest-waiting pending delivery's creation


HEALTH = """
SELECT
  (SELECT count(DISTINCT a.delivery_id) FROM notification_attempts a
    WHERE ($2::bool OR a.organization_id IS NOT DISTINCT FROM $1) AND a.error IS NOT NULL
      AND a.attempted_at > now() - interval '24 hours') AS failed_last_24h,
  count(*) FILTER (WHERE d.status = 'delivered' AND d.delivered_at > now() - interval '24 hours') AS delivered_last_24h,
  count(*) FILTER (WHERE d.status = 'pending') AS pending,
  count(*) FILTER (WHERE d.status = 'pending' AND d.attempts > 0) AS pending_retries,
  count(*) FILTER (WHERE d.status = 'dead') AS dead,
  min(d.created_at) FILTER (WHERE d.status = 'pending') AS oldest_pending_at
FROM notification_deliveries d WHERE ($2::bool OR d.organization_id IS NOT DISTINCT FROM $1)
"""


async def webhook_health(*, viewer: Viewer, organization_id: Any = None, every_organization: bool = False) -> WebhookHealth:
    """The figures an operator watches to know whether notifications are getting through."""
    return await health_of(await _scope(viewer, organization_id, every_organization), every_organization)


async def health_of(scope: Any, every_organization: bool) -> WebhookHealth:
    """`webhook_health` of one organization (None: the platform channels), or of all of them
    together, for whoever was let in (the API after its scope check, the metrics endpoint)."""
    async with connection() as conn:
        row = await conn.fetchrow(HEALTH, scope, every_organization)
    return WebhookHealth(**dict(row))


async def _scope(viewer: Viewer, organization_id: Any, every_organization: bool) -> Any:
    """One organization's deliveries (or the platform channels'), or, for platform admins who
    ask, every organization's and the platform's together."""
    if not every_organization:
        return await channel_scope(viewer, organization_id)
    if organization_id is not None:
        raise BadInput("give organizationId or everyOrganization, not both", field="everyOrganization")
    await platform_admin_scope(viewer, None, refusal="every organization's deliveries need a platform admin token")
    return None
