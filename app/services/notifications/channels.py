"""Managing channels: organization admins their organization's, platform admins every
organization's and the platform's own (organizationId left out). Secrets are made here and
shown once, when a webhook channel is created or its secret rotated; every change is audited."""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.auth import Viewer, administered_scope
from app.database import connection, transaction
from app.errors import BadInput, NotFound, parse_id
from app.services.accounts.audit import CHANNEL_CREATED as CREATED
from app.services.accounts.audit import CHANNEL_DELETED as DELETED
from app.services.accounts.audit import CHANNEL_SECRET_ROTATED as SECRET_ROTATED
from app.services.accounts.audit import CHANNEL_UPDATED as UPDATED
from app.services.accounts.audit import Actor, record
from app.services.notifications import destinations, signing
from app.services.notifications.kinds import KINDS
from app.settings import Settings

WEBHOOK = "webhook"
EMAIL = "email"
CHANNEL_KINDS = (WEBHOOK, EMAIL)
MAX_NAME = 100
MAX_RECIPIENTS = 20
MAX_CHANNELS = 50  # per organization (and for the platform)
EMAIL_PATTERN = re.compile(r"^[^@\s,<>]+@[^@\s,<>]+\.[^@\s,<>]+$")
REFUSAL = "notification channels need an organization admin token"


COLUMNS = "id, organization_id, kind, name, url, recipients, kinds, enabled, created_at, updated_at"


@dataclass(frozen=True, slots=True)
class Channel:
    id: uuid.UUID
    organization_id: uuid.UUID | None
    kind: str
    name: str
    url: str | None
    recipients: list[str]
    kinds: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewChannel:
    """A channel with its signing secret, shown this once (None for email channels)."""

    channel: Channel
    secret: str | None


def channel_of(row: asyncpg.Record) -> Channel:
    return Channel(**{name: row[name] for name in Channel.__slots__})


async def channel_scope(viewer: Viewer, organization_id: Any) -> uuid.UUID | None:
    """Organization admins: their organization; platform admins: the one they name, or the
    platform's own channels (None) when they name none."""
    return await administered_scope(viewer, organization_id, refusal=REFUSAL)


async def notification_channels(*, viewer: Viewer, organization_id: Any = None) -> list[Channel]:
    scope = await channel_scope(viewer, organization_id)
    async with connection() as conn:
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM notification_channels WHERE organization_id IS NOT DISTINCT FROM $1 ORDER BY created_at, id",
            scope,
        )
    return [channel_of(r) for r in rows]


async def create_channel(
    *,
    viewer: Viewer,
    organization_id: Any,
    kind: str,
    name: str,
    url: str | None,
    recipients: Sequence[str] | None,
    kinds: Sequence[str],
    enabled: bool,
    address: str | None,
    settings: Settings,
) -> NewChannel:
    scope = await channel_scope(viewer, organization_id)
    if kind not in CHANNEL_KINDS:
        raise BadInput(f"kind must be one of {', '.join(CHANNEL_KINDS)}", field="kind")
    name = _name(name)
    subscribed = _kinds(kinds)
    if kind == WEBHOOK:
        if recipients:
            raise BadInput("webhook channels have no recipients", field="recipients")
        target = await destinations.validated_url(_required_url(url), settings)
        secret: str | None = signing.new_secret()
        mailbox: list[str] = []
    else:
        if url is not None:
            raise BadInput("email channels have no url", field="url")
        target, secret, mailbox = None, None, _recipients(recipients)
    channel_id = uuid.uuid4()
    async with transaction() as conn:
        await _within_limit(conn, scope)
        row = await conn.fetchrow(
            f"""INSERT INTO notification_channels (id, organization_id, kind, name, url, secret, recipients, kinds, enabled)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLUMNS}""",
            channel_id, scope, kind, name, target, secret, mailbox, subscribed, enabled,
        )  # fmt: skip
        channel = channel_of(row)
        await _audit(conn, viewer, address, CREATED, channel, {"after": _described(channel)})
    return NewChannel(channel, secret)


async def update_channel(
    *,
    viewer: Viewer,
    channel_id: Any,
    name: str | None = None,
    url: str | None = None,
    recipients: Sequence[str] | None = None,
    kinds: Sequence[str] | None = None,
    enabled: bool | None = None,
    address: str | None,
    settings: Settings,
) -> Channel:
    async with transaction() as conn:
        before = await _locked(conn, viewer, channel_id)
        changes: dict[str, Any] = {}
        if name is not None:
            changes["name"] = _name(name)
        if kinds is not None:
            changes["kinds"] = _kinds(kinds)
        if enabled is not None:
            changes["enabled"] = enabled
        if url is not None:
            if before.kind != WEBHOOK:
                raise BadInput("email channels have no url", field="url")
            changes["url"] = await destinations.validated_url(url, settings)
        if recipients is not None:
            if before.kind != EMAIL:
                raise BadInput("webhook channels have no recipients", field="recipients")
            changes["recipients"] = _recipients(recipients)
        if not changes:
            return before
        assignments = ", ".join(f"{column} = ${n}" for n, column in enumerate(changes, start=2))
        row = await conn.fetchrow(
            f"UPDATE notification_channels SET {assignments}, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
            before.id, *changes.values(),
        )  # fmt: skip
        after = channel_of(row)
        await _audit(conn, viewer, address, UPDATED, after, {"before": _described(before), "after": _described(after)})
    return after


async def delete_channel(*, viewer: Viewer, channel_id: Any, address: str | None) -> bool:
    """The channel and its deliveries go; what was sent stays sent."""
    async with transaction() as conn:
        channel = await _locked(conn, viewer, channel_id)
        await conn.execute("DELETE FROM notification_channels WHERE id = $1", channel.id)
        await _audit(conn, viewer, address, DELETED, channel, {"before": _described(channel)})
    return True


async def rotate_secret(*, viewer: Viewer, channel_id: Any, address: str | None) -> NewChannel:
    """A new signing secret, shown once; deliveries not yet sent are signed with it."""
    async with transaction() as conn:
        channel = await _locked(conn, viewer, channel_id)
        if channel.kind != WEBHOOK:
            raise BadInput("only webhook channels have a signing secret", field="id")
        secret = signing.new_secret()
        row = await conn.fetchrow(
            f"UPDATE notification_channels SET secret = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}",
            channel.id, secret,
        )  # fmt: skip
        rotated = channel_of(row)
        await _audit(conn, viewer, address, SECRET_ROTATED, rotated, {})
    return NewChannel(rotated, secret)


async def visible_channel(conn: asyncpg.Connection, viewer: Viewer, channel_id: Any, *, lock: bool = False) -> Channel:
    """A channel the viewer manages; any other id, or a malformed one, is NOT_FOUND."""
    wanted = parse_id(channel_id, "notification channel")
    own = await channel_scope(viewer, None)
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM notification_channels WHERE id = $1{' FOR UPDATE' if lock else ''}", wanted
    )
    if row is None or (own is not None and row["organization_id"] != own):
        raise NotFound("notification channel not found", field="id")
    return channel_of(row)


async def _locked(conn: asyncpg.Connection, viewer: Viewer, channel_id: Any) -> Channel:
    return await visible_channel(conn, viewer, channel_id, lock=True)


async def _within_limit(conn: asyncpg.Connection, scope: uuid.UUID | None) -> None:
    count = await conn.fetchval(
        "SELECT count(*) FROM notification_channels WHERE organization_id IS NOT DISTINCT FROM $1", scope
    )
    if count >= MAX_CHANNELS:
        raise BadInput(f"at most {MAX_CHANNELS} channels; delete one first", field="organizationId")


def _name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise BadInput(f"name must have 1 to {MAX_NAME} characters", field="name")
    return name


def _required_url(url: str | None) -> str:
    if not url:
        raise BadInput("webhook channels need a url", field="url")
    return url


def _kinds(kinds: Sequence[str]) -> list[str]:
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise BadInput(f"unknown notification kind {unknown[0]!r}; kinds: {', '.join(KINDS)}", field="kinds")
    if not kinds:
        raise BadInput("name at least one notification kind", field="kinds")
    return list(dict.fromkeys(kinds))


def _recipients(recipients: Sequence[str] | None) -> list[str]:
    cleaned = list(dict.fromkeys(r.strip().lower() for r in recipients or ()))
    if not cleaned:
        raise BadInput("email channels need at least one recipient", field="recipients")
    if len(cleaned) > MAX_RECIPIENTS:
        raise BadInput(f"at most {MAX_RECIPIENTS} recipients", field="recipients")
    bad = next((r for r in cleaned if not EMAIL_PATTERN.match(r)), None)
    if bad is not None:
        raise BadInput(f"{bad!r} is not an email address", field="recipients")
    return cleaned


def _described(channel: Channel) -> dict[str, Any]:
    """What the audit log keeps of a channel: never its secret."""
    return {"name": channel.name, "kind": channel.kind, "url": channel.url, "recipients": channel.recipients,
            "kinds": channel.kinds, "enabled": channel.enabled}  # fmt: skip


async def _audit(
    conn: asyncpg.Connection, viewer: Viewer, address: str | None, action: str, channel: Channel, details: dict[str, Any]
) -> None:
    await record(
        conn, action=action, actor=Actor.of(viewer, address), organization_id=channel.organization_id,
        target=str(channel.id), details=details,
    )  # fmt: skip
