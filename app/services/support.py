"""The support desk: one search box over transactions, orders and organizations, and
platform admins' internal notes on an organization.

Platform admins search every organization (or the one they name); organization admins only
their own. A query is matched exactly against a transaction's id (the event id that recorded
it), and an order id, and against organization names exactly or as a prefix,
without regard to case. Notes are added and deleted with an audit entry in the same
transaction.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.auth import Viewer, administered_scope, platform_admin_scope
from app.database import connection
from app.errors import BadInput, NotFound
from app.services.accounts import audit
from app.services.accounts.audit import Actor

MAX_QUERY = 200
MAX_HITS = 100
MAX_NOTE = 5000

TRANSACTION_ID = "transaction_id"
ORDER_ID = "order_id"
ORGANIZATION_NAME = "organization_name"

# One statement: each arm reads one index (event id, order id, lower(name)); the
# organization filter is a no-op for platform admins who name none.
SEARCH = """
(SELECT 'transaction_id' AS matched, t.organization_id, o.name, t.event_id, t.order_id, t.type, t.status,
        t.amount_minor, t.currency, t.occurred_at
 FROM transactions t JOIN organizations o ON o.id = t.organization_id
 WHERE t.event_id = $1 AND ($2::uuid IS NULL OR t.organization_id = $2)
 ORDER BY t.occurred_at DESC LIMIT $3)
UNION ALL
(SELECT 'order_id', t.organization_id, o.name, t.event_id, t.order_id, t.type, t.status,
        t.amount_minor, t.currency, t.occurred_at
 FROM transactions t JOIN organizations o ON o.id = t.organization_id
 WHERE t.order_id = $1 AND ($2::uuid IS NULL OR t.organization_id = $2)
 ORDER BY t.occurred_at DESC LIMIT $3)
UNION ALL
(SELECT 'organization_name', o.id, o.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL
 FROM organizations o
 WHERE lower(o.name) LIKE $4 ESCAPE '\\' AND ($2::uuid IS NULL OR o.id = $2)
 ORDER BY o.name LIMIT $3)
"""


@dataclass(frozen=True)
class SupportHit:
    """One thing the query matched: a transaction (by its id or its order) or an
    organization (by its name)."""

    matched: str
    organization_id: uuid.UUID
    organization_name: str
    transaction_id: str | None
    order_id: str | None
    type: str | None
    status: str | None
    amount_minor: int | None
    currency: str | None
    occurred_at: datetime | None


def _like_prefix(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


def _checked_query(query: str) -> str:
    text = query.strip()
    if not 1 <= len(text) <= MAX_QUERY:
        raise BadInput(f"query must be 1 to {MAX_QUERY} characters", field="query")
    return text


async def support_search(*, viewer: Viewer, query: str, organization_id: Any = None, limit: int = 20) -> list[SupportHit]:
    """Transactions first (by id, then by order; newest first), then organizations by name."""
    org = await administered_scope(viewer, organization_id, refusal="the support search needs an organization admin token")
    text = _checked_query(query)
    if not 1 <= limit <= MAX_HITS:
        raise BadInput(f"limit must be between 1 and {MAX_HITS}", field="limit")
    async with connection() as conn:
        rows = await conn.fetch(SEARCH, text, org, limit, _like_prefix(text))
    return [SupportHit(row[0], *tuple(row)[1:]) for row in rows[:limit]]


# --------------------------------------------------------------------------- notes


@dataclass(frozen=True)
class OrganizationNote:
    id: uuid.UUID
    organization_id: uuid.UUID
    author: str
    body: str
    created_at: datetime


async def _organization(viewer: Viewer, organization_id: Any) -> uuid.UUID:
    org = await platform_admin_scope(viewer, organization_id, refusal="organization notes need a platform admin token")
    if org is None:
        raise BadInput("name the organization", field="organizationId")
    return org


def _checked_body(body: str) -> str:
    text = body.strip()
    if not 1 <= len(text) <= MAX_NOTE:
        raise BadInput(f"body must be 1 to {MAX_NOTE} characters", field="body")
    return text


NOTE_COLUMNS = "id, organization_id, author, body, created_at"


async def organization_notes(*, viewer: Viewer, organization_id: Any) -> list[OrganizationNote]:
    """Newest first."""
    org = await _organization(viewer, organization_id)
    async with connection() as conn:
        rows = await conn.fetch(
            f"SELECT {NOTE_COLUMNS} FROM organization_notes WHERE organization_id = $1 ORDER BY created_at DESC, id", org
        )
    return [OrganizationNote(*row) for row in rows]


async def add_organization_note(
    *, viewer: Viewer, organization_id: Any, body: str, address: str | None
) -> OrganizationNote:
    org = await _organization(viewer, organization_id)
    text = _checked_body(body)
    async with connection() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"INSERT INTO organization_notes (organization_id, author, author_user_id, body) VALUES ($1, $2, $3, $4)"
            f" RETURNING {NOTE_COLUMNS}", org, viewer.subject, viewer.user_id, text,
        )  # fmt: skip
        note = OrganizationNote(*row)
        await audit.record(
            conn, action=audit.ORGANIZATION_NOTE_ADDED, actor=Actor.of(viewer, address), organization_id=org,
            target=str(note.id), after={"body": text},
        )  # fmt: skip
    return note


async def delete_organization_note(*, viewer: Viewer, organization_id: Any, note_id: Any, address: str | None) -> uuid.UUID:
    """Returns the deleted note's id; the audit entry keeps what it said."""
    org = await _organization(viewer, organization_id)
    try:
        wanted = uuid.UUID(str(note_id))
    except ValueError:
        raise NotFound("note not found", field="id") from None
    async with connection() as conn, conn.transaction():
        row = await conn.fetchrow(
            f"DELETE FROM organization_notes WHERE organization_id = $1 AND id = $2 RETURNING {NOTE_COLUMNS}", org, wanted
        )
        if row is None:
            raise NotFound("note not found", field="id")
        note = OrganizationNote(*row)
        await audit.record(
            conn, action=audit.ORGANIZATION_NOTE_DELETED, actor=Actor.of(viewer, address), organization_id=org,
            target=str(note.id), before={"body": note.body, "author": note.author, "created_at": note.created_at.isoformat()},
        )  # fmt: skip
    return note.id
