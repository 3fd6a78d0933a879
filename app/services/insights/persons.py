"""Persons: identity links between anonymous and user keys."""

from __future__ import annotations

import uuid

import asyncpg

LINK = """
INSERT INTO person_aliases (organization_id, alias, person_id)
VALUES ($1, 'a:' || $2::text, 'u:' || $3::text)
ON CONFLICT (organization_id, alias) DO NOTHING
"""


async def link(conn: asyncpg.Connection, *, organization_id: uuid.UUID, anonymous_id: str, user_id: str) -> bool:
    """Link an anonymous id to a user id: the anonymous history becomes the user's in every
    insight. The first link of an anonymous id holds; a later one to another user is ignored
    (False)."""
    status = await conn.execute(LINK, organization_id, anonymous_id, user_id)
    return status.endswith(" 1")
