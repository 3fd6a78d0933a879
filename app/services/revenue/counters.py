"""Live revenue counters: today's running revenue of an organization (its local day) or of
the platform (the UTC day), read from the ledger for a subscription's first answer and,
after each batch that touched the ledger, for its pushes (`ledger.live_messages`).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import asyncpg

from app.auth import Viewer, administered_scope
from app.database import connection
from app.live_messages import RevenueCountersMessage
from app.services.revenue.money import MONEY_REFUSAL
from app.timebuckets import day_start, local_date, local_midnight, utcnow

_COUNTERS = """
SELECT currency,
       COALESCE(sum(amount_minor) FILTER (WHERE status IN ('completed', 'refunded')), 0)::bigint AS amount,
       count(*) FILTER (WHERE status IN ('completed', 'refunded')) AS n,
       count(*) FILTER (WHERE status = 'failed') AS failed
FROM transactions
WHERE ($1::uuid IS NULL OR organization_id = $1) AND occurred_at >= $2 AND occurred_at < $3
GROUP BY currency ORDER BY currency
"""


async def counters(
    conn: asyncpg.Connection, organization_id: uuid.UUID | None, timezone: str = "UTC"
) -> RevenueCountersMessage:
    """Today's running revenue of one organization (its local day) or of the platform (the UTC
    day): revenue (refunds netted), revenue entries and failed payments since the day began."""
    now = utcnow()
    start = day_start(now, timezone)
    end = local_midnight(local_date(now, timezone) + timedelta(days=1), timezone)
    rows = await conn.fetch(_COUNTERS, organization_id, start, end)
    return RevenueCountersMessage(
        organization_id=organization_id, start=start, end=end,
        revenue=tuple((r["amount"], r["currency"]) for r in rows if r["n"]),
        transactions=sum(r["n"] for r in rows), failed_payments=sum(r["failed"] for r in rows), updated_at=now,
    )  # fmt: skip


async def counters_scope(*, viewer: Viewer, organization_id: Any = None) -> tuple[uuid.UUID | None, str]:
    """The organization a live counter follows (None: the platform, for platform admins) and its zone."""
    org = await administered_scope(viewer, organization_id, refusal=MONEY_REFUSAL)
    if org is None:
        return None, "UTC"
    async with connection() as conn:
        return org, await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", org)


async def current_counters(*, organization_id: uuid.UUID | None, timezone: str) -> RevenueCountersMessage:
    async with connection() as conn:
        return await counters(conn, organization_id, timezone)
