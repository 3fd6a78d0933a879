"""Keys: personal API keys, service tokens and ingestion keys, each created with a name, shown
once, stored as a SHA-256 hash, listed with when it was last used, and revoked.

A personal API key acts as its member with their role or a narrower one (an admin may make
a read-only viewer key); a service token publishes domain events for its organization; an
ingestion key only writes events. A revoked key is refused on every API process within a
second (app.revocation), as are the personal keys a member's new role no longer grants.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.auth import (
    GRANTABLE_ROLES,
    PERSONAL_KEY_PREFIX,
    SERVICE_KEY_PREFIX,
    Role,
    Viewer,
    administered_by,
    administered_organization,
    new_secret_token,
    require_reader,
)
from app.database import connection, transaction
from app.errors import BadInput, Forbidden, NotFound, parse_id
from app.revocation import API_KEY, key_row_expiry, record_revocation
from app.services import organizations
from app.services.accounts import audit
from app.services.accounts.audit import Actor

PERSONAL = "personal"
SERVICE = "service"
ADMINS_ONLY = "service tokens and ingestion keys need an organization admin"


@dataclass(frozen=True)
class Key:
    """What a list shows of a key: never the key itself."""

    id: uuid.UUID
    organization_id: uuid.UUID
    kind: str  # personal | service | ingestion
    name: str
    hint: str  # how the key starts, to recognise it
    role: Role | None
    profile_id: uuid.UUID | None
    user_id: uuid.UUID | None
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewKey:
    key: Key
    secret: str  # shown once


KEY_COLUMNS = "id, organization_id, kind, name, role, profile_id, user_id, created_by, created_at, last_used_at, revoked_at"


def _key(row: asyncpg.Record) -> Key:
    prefix = PERSONAL_KEY_PREFIX if row["kind"] == PERSONAL else SERVICE_KEY_PREFIX
    return Key(**{**dict(row), "role": Role(row["role"]), "hint": f"{prefix}{row['id'].hex[:8]}..."})


def _name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 100 or "\x00" in name:
        raise BadInput("name must be 1 to 100 characters", field="name")
    return name


# -- personal API keys ---------------------------------------------------------------------


async def create_personal_key(
    *, viewer: Viewer, organization_id: Any, name: str, role: Role | None = None, address: str | None
) -> NewKey:
    """A key acting as the signed-in member, with their role or a narrower one."""
    org, member_role, member_profile = await _own_membership(viewer, organization_id)
    role = role or member_role
    if role not in GRANTABLE_ROLES[member_role]:
        allowed = ", ".join(sorted(r.value for r in GRANTABLE_ROLES[member_role]))
        raise BadInput(f"your role {member_role.value} can grant a key only: {allowed}", field="role")
    return await _create(
        kind=PERSONAL, organization_id=org, name=_name(name), role=role, profile_id=member_profile if role is Role.PROVIDER else None,
        user_id=viewer.user_id, viewer=viewer, address=address,
    )  # fmt: skip


async def _own_membership(viewer: Viewer, organization_id: Any) -> tuple[uuid.UUID, Role, uuid.UUID | None]:
    if viewer.user_id is None or viewer.organization_id is None or viewer.api_key_id is not None:
        raise Forbidden("personal API keys belong to signed-in members: sign in with your password first")
    if organization_id is not None and str(organization_id) != str(viewer.organization_id):
        raise NotFound("organization not found", field="organizationId")
    async with connection() as conn:
        row = await conn.fetchrow(
            "SELECT role, profile_id FROM memberships WHERE organization_id = $1 AND user_id = $2",
            viewer.organization_id, viewer.user_id,
        )  # fmt: skip
    if row is None:
        raise Forbidden("you are not a member of this organization any more")
    return viewer.organization_id, Role(row["role"]), row["profile_id"]


async def personal_keys(*, viewer: Viewer, organization_id: Any = None) -> list[Key]:
    """Your own keys; an organization admin sees every member's, a platform admin those of
    the organization named."""
    if viewer.role is Role.ADMIN:
        return await _list(await administered_organization(viewer, organization_id), PERSONAL)
    org, member_role, _ = await _own_membership(viewer, organization_id)
    only = None if member_role is Role.ORG_ADMIN else viewer.user_id
    return await _list(org, PERSONAL, user_id=only)


# -- service tokens ------------------------------------------------------------------------


async def create_service_token(*, viewer: Viewer, organization_id: Any, name: str, address: str | None) -> NewKey:
    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    return await _create(
        kind=SERVICE, organization_id=org, name=_name(name), role=Role.SERVICE, profile_id=None, user_id=None,
        viewer=viewer, address=address,
    )  # fmt: skip


async def service_tokens(*, viewer: Viewer, organization_id: Any) -> list[Key]:
    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    return await _list(org, SERVICE)


# -- personal keys and service tokens alike --------------------------------------------------


async def _create(
    *, kind: str, organization_id: uuid.UUID, name: str, role: Role, profile_id: uuid.UUID | None,
    user_id: uuid.UUID | None, viewer: Viewer, address: str | None,
) -> NewKey:  # fmt: skip
    key_id = uuid.uuid4()
    secret, key_hash = new_secret_token(PERSONAL_KEY_PREFIX if kind == PERSONAL else SERVICE_KEY_PREFIX, key_id)
    async with transaction() as conn:
        row = await conn.fetchrow(
            f"""INSERT INTO api_keys (organization_id, id, kind, name, key_hash, user_id, role, profile_id, created_by)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {KEY_COLUMNS}""",
            organization_id, key_id, kind, name, key_hash, user_id, role.value, profile_id, viewer.subject,
        )  # fmt: skip
        await audit.record(
            conn, action=audit.KEY_CREATED, actor=Actor.of(viewer, address), organization_id=organization_id,
            target=str(key_id), details={"kind": kind, "name": name, "role": role.value},
        )  # fmt: skip
    return NewKey(key=_key(row), secret=secret)


async def _list(org: uuid.UUID, kind: str, *, user_id: uuid.UUID | None = None) -> list[Key]:
    async with connection() as conn:
        rows = await conn.fetch(
            f"""SELECT {KEY_COLUMNS} FROM api_keys WHERE organization_id = $1 AND kind = $2
                AND ($3::uuid IS NULL OR user_id = $3) ORDER BY created_at, id""",
            org, kind, user_id,
        )  # fmt: skip
    return [_key(row) for row in rows]


async def revoke_key(*, viewer: Viewer, key_id: Any, kind: str, address: str | None) -> Key:
    """Revoke a personal key (its owner, or an admin of its organization) or a service token
    (an admin). Revoking a revoked key changes nothing and answers the same."""
    if kind == SERVICE:
        administered_by(viewer, refusal=ADMINS_ONLY)
    elif not viewer.can_read:
        require_reader(viewer)
        raise Forbidden("personal API keys are revoked by their owner or an admin")
    wanted = parse_id(key_id, "key")
    async with transaction() as conn:
        row = await conn.fetchrow(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE", wanted)
        if row is None or row["kind"] != kind or not _may_revoke(viewer, row):
            raise NotFound("key not found", field="id")
        row = await conn.fetchrow(
            f"""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE organization_id = $1 AND id = $2
                RETURNING {KEY_COLUMNS}""",
            row["organization_id"], wanted,
        )  # fmt: skip
        await _announce(conn, wanted, viewer.subject)
        await audit.record(
            conn, action=audit.KEY_REVOKED, actor=Actor.of(viewer, address), organization_id=row["organization_id"],
            target=str(wanted), details={"kind": row["kind"], "name": row["name"]},
        )  # fmt: skip
    return _key(row)


def _may_revoke(viewer: Viewer, row: asyncpg.Record) -> bool:
    if viewer.role is Role.ADMIN:
        return True
    if viewer.organization_id != row["organization_id"]:
        return False
    if viewer.role is Role.ORG_ADMIN:
        return True
    return row["kind"] == PERSONAL and viewer.user_id is not None and viewer.user_id == row["user_id"]


async def _announce(conn: asyncpg.Connection, key_id: uuid.UUID, revoked_by: str) -> None:
    await record_revocation(
        conn, kind=API_KEY, credential_id=str(key_id), expires_at=key_row_expiry(datetime.now(UTC)), revoked_by=revoked_by
    )


async def revoke_keys_of(
    conn: asyncpg.Connection, *, organization_id: uuid.UUID, user_id: uuid.UUID, keep: frozenset[Role],
    profile_id: uuid.UUID | None, revoked_by: str,
) -> int:  # fmt: skip
    """A member's personal keys that their role no longer grants (all of them, on removal)."""
    rows = await conn.fetch(
        """UPDATE api_keys SET revoked_at = now()
           WHERE organization_id = $1 AND user_id = $2 AND revoked_at IS NULL
             AND NOT (role = ANY($3::text[]) AND (role <> 'provider' OR profile_id = $4))
           RETURNING id""",
        organization_id, user_id, [role.value for role in keep], profile_id,
    )  # fmt: skip
    for row in rows:
        await _announce(conn, row["id"], revoked_by)
    return len(rows)


# -- ingestion keys ------------------------------------------------------------------------


def _ingestion_key(key: Any) -> Key:
    return Key(
        id=key.id, organization_id=uuid.UUID(str(key.organization_id)), kind="ingestion", name=key.name,
        hint=organizations.key_hint(key), role=None, profile_id=None, user_id=None, created_by=None,
        created_at=key.created_at, last_used_at=key.last_used_at, revoked_at=key.revoked_at,
    )  # fmt: skip


async def create_ingestion_key(*, viewer: Viewer, organization_id: Any, name: str, address: str | None) -> NewKey:
    from models.organizations import Organization

    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    created = await organizations.create_ingestion_key(organization=await Organization.get(id=org), name=_name(name))
    await audit.record(
        None, action=audit.KEY_CREATED, actor=Actor.of(viewer, address), organization_id=org, target=str(created.key.id),
        details={"kind": "ingestion", "name": created.key.name},
    )  # fmt: skip
    return NewKey(key=_ingestion_key(created.key), secret=created.raw)


async def ingestion_keys(*, viewer: Viewer, organization_id: Any) -> list[Key]:
    from models.organizations import Organization

    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    return [_ingestion_key(k) for k in await organizations.list_ingestion_keys(await Organization.get(id=org))]


async def revoke_ingestion_key(*, viewer: Viewer, key_id: Any, address: str | None) -> Key:
    from models.organizations import IngestionKey

    own = administered_by(viewer, refusal=ADMINS_ONLY)
    key = await IngestionKey.get_or_none(id=parse_id(key_id, "ingestion key"))
    if key is None or (own is not None and uuid.UUID(str(key.organization_id)) != own):
        raise NotFound("ingestion key not found", field="id")
    revoked = await organizations.revoke_ingestion_key(str(key.id), revoked_by=viewer.subject)
    await audit.record(
        None, action=audit.KEY_REVOKED, actor=Actor.of(viewer, address), organization_id=uuid.UUID(str(key.organization_id)),
        target=str(key.id), details={"kind": "ingestion", "name": key.name},
    )  # fmt: skip
    return _ingestion_key(revoked.key)

