"""The demo's people: an admin and a viewer of the demo organization, and a platform admin,
who sign in (GraphQL `login`) with the passwords the banner prints.

The passwords are random per data folder and kept there (file mode 0600, like the demo
tokens), so every start prints the same ones. An account already in the database keeps the
stored password; one whose password the file lost (or that no longer matches it, e.g. after
it was changed) gets the stored one, or a new one, set again, so what the banner prints
always signs in, with the role it names.
"""

from __future__ import annotations

import json
import logging
import stat
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from app.auth import Role
from app.database import connection, transaction
from app.services.accounts import audit
from app.services.accounts.audit import Actor
from app.services.accounts.members import create_user
from app.services.accounts.passwords import hash_password, random_password, verify_password
from app.services.accounts.sessions import revoke_sessions_of
from app.services.demo_tokens import write_private
from app.settings import Settings

log = logging.getLogger("pulsegraph.demo")

USERS_FILE = "demo-users.json"
ACTOR = Actor(subject="demo-seed")


@dataclass(frozen=True)
class DemoUser:
    email: str
    name: str
    role: Role  # Role.ADMIN: a platform admin, member of no organization
    password: str = ""


ORG_ADMIN = DemoUser("admin@demo.pulsegraph.test", "Demo Admin", Role.ORG_ADMIN)
VIEWER = DemoUser("viewer@demo.pulsegraph.test", "Demo Viewer", Role.VIEWER)
OPERATOR = DemoUser("operator@demo.pulsegraph.test", "Demo Operator", Role.ADMIN)
DEMO_USERS = (ORG_ADMIN, VIEWER, OPERATOR)


async def demo_users(settings: Settings, *, organization_id: uuid.UUID) -> list[DemoUser]:
    """Every demo account, made or repaired so that it signs in with the password returned;
    the passwords are stored for the next start."""
    path = settings.data_dir / USERS_FILE
    stored = _read(path)
    passwords = {user.email: await _ensure(user, stored.get(user.email), organization_id, settings) for user in DEMO_USERS}
    if passwords != stored:
        write_private(path, passwords)
    elif stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)  # someone opened it up: the passwords are credentials
    return [DemoUser(user.email, user.name, user.role, passwords[user.email]) for user in DEMO_USERS]


async def _ensure(user: DemoUser, stored: object, organization_id: uuid.UUID, settings: Settings) -> str:
    """The account's password: the stored one while it still signs in; otherwise the stored
    one (or a new one, if the file lost it) is set. A missing account is created."""
    password = stored if isinstance(stored, str) and stored else None
    async with connection() as conn:
        row = await conn.fetchrow("SELECT id, password_hash FROM users WHERE email = $1", user.email)
    if row is None:
        password = password or random_password(email=user.email, name=user.name)
        await _create(user, password, organization_id)
        log.info("demo: created %s", user.email)
        return password
    async with transaction() as conn:
        await _grant(conn, user, row["id"], organization_id)
        if password is not None and verify_password(row["password_hash"], password):
            return password
        password = password or random_password(email=user.email, name=user.name)
        await _set_password(conn, user, row["id"], password, settings)
    log.info("demo: set the password of %s again", user.email)
    return password


async def _create(user: DemoUser, password: str, organization_id: uuid.UUID) -> None:
    platform_admin = user.role is Role.ADMIN
    await create_user(
        email=user.email, name=user.name, password=password, platform_admin=platform_admin,
        organization_id=None if platform_admin else organization_id, role=None if platform_admin else user.role,
        actor=ACTOR,
    )  # fmt: skip


async def _grant(conn: asyncpg.Connection, user: DemoUser, user_id: uuid.UUID, organization_id: uuid.UUID) -> None:
    """The access the banner promises, given back if it was lost (the demo organization made
    anew, say); a role an admin changed on purpose is left as it is."""
    if user.role is Role.ADMIN:
        await conn.execute("UPDATE users SET is_platform_admin = true WHERE id = $1 AND NOT is_platform_admin", user_id)
        return
    await conn.execute(
        "INSERT INTO memberships (organization_id, user_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        organization_id, user_id, user.role.value,
    )  # fmt: skip


async def _set_password(
    conn: asyncpg.Connection, user: DemoUser, user_id: uuid.UUID, password: str, settings: Settings
) -> None:
    """As a password reset does: the account's sessions made with the old password end."""
    await conn.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1", user_id, hash_password(password)
    )
    await revoke_sessions_of(
        conn, user_id=user_id, organization_id=None, reason="demo password set", revoked_by=ACTOR.subject, settings=settings
    )
    await audit.record(conn, action=audit.PASSWORD_RESET, actor=ACTOR, target=user.email, details={"by": "demo"})


def _read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("demo: ignoring unreadable %s (%s); setting new passwords", path, exc)
        return {}
    return data if isinstance(data, dict) else {}
