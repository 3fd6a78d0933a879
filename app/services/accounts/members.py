"""People in organizations: accounts, invitations, roles, removal, password resets.

An organization admin invites by email with a role; the invitation's token works once and
expires. The invitee sets a password (or proves the one they have) and joins. Changing a
member's role or removing them ends their sessions in the organization at once (their next
request with an old token is refused on every process within a second), and revokes the
personal API keys their new role no longer grants.
"""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from app.auth import (
    GRANTABLE_ROLES,
    Role,
    Viewer,
    administered_by,
    administered_organization,
    hash_key,
    new_secret_token,
    row_id_of,
)
from app.database import connection, transaction
from app.errors import BadInput, Forbidden, NotFound, parse_id
from app.services.accounts import audit
from app.services.accounts.audit import Actor
from app.services.accounts.keys import revoke_keys_of
from app.services.accounts.passwords import check_strength, hash_password, verify_password
from app.services.accounts.sessions import (
    Membership,
    SignedIn,
    memberships_of,
    normalized_email,
    revoke_sessions_of,
    sign_in,
)
from app.services.notifications import enqueue_notification
from app.services.notifications.kinds import INVITATION, PASSWORD_RESET
from app.services.notifications.mail import send_direct
from app.settings import Settings

INVITATION_PREFIX = "pgi_"
RESET_PREFIX = "pgp_"
MEMBER_ROLES = (Role.ORG_ADMIN, Role.PROVIDER, Role.VIEWER)
INVALID_INVITATION = "invitation is invalid, already used, revoked or expired"
INVALID_RESET = "password reset is invalid, already used or expired"


@dataclass(frozen=True)
class Member:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    name: str
    role: Role
    profile_id: uuid.UUID | None
    joined_at: datetime
    last_sign_in_at: datetime | None


# -- accounts ------------------------------------------------------------------------------


async def create_user(
    *, email: str, name: str = "", password: str | None = None, platform_admin: bool = False,
    organization_id: uuid.UUID | None = None, role: Role | None = None, profile_id: uuid.UUID | None = None,
    actor: Actor,
) -> uuid.UUID:  # fmt: skip
    """An account (the first admin, demo users, scripts); with a membership when an
    organization and role are given. The password must meet every rule."""
    email = normalized_email(email)
    if password is not None:
        check_strength(password, email=email, name=name)
    if organization_id is not None:
        _check_role(role, profile_id)
    user_id = uuid.uuid4()
    async with transaction() as conn:
        if await conn.fetchval("SELECT 1 FROM users WHERE email = $1", email):
            raise BadInput(f"a user with email {email} already exists", field="email")
        await conn.execute(
            """INSERT INTO users (id, email, name, password_hash, is_platform_admin, password_changed_at)
               VALUES ($1, $2, $3, $4, $5, CASE WHEN $4::text IS NULL THEN NULL ELSE now() END)""",
            user_id, email, name.strip(), hash_password(password) if password else None, platform_admin,
        )  # fmt: skip
        if organization_id is not None and role is not None:
            await _add_membership(conn, organization_id=organization_id, user_id=user_id, role=role, profile_id=profile_id)
        await audit.record(
            conn, action=audit.USER_CREATED, actor=actor, organization_id=organization_id, target=email,
            details={"platformAdmin": platform_admin, **({"role": role.value} if role else {})},
        )  # fmt: skip
    return user_id


def _check_role(role: Role | None, profile_id: uuid.UUID | None, *, field: str = "role") -> Role:
    if role not in MEMBER_ROLES:
        raise BadInput(f"role must be one of {', '.join(r.value for r in MEMBER_ROLES)}", field=field)
    if (role is Role.PROVIDER) != (profile_id is not None):
        raise BadInput("a provider needs a profile, and only a provider has one", field="profileId")
    return role


async def _check_profile(conn: asyncpg.Connection, organization_id: uuid.UUID, profile_id: uuid.UUID | None) -> None:
    if profile_id is not None and not await conn.fetchval(
        "SELECT 1 FROM profiles WHERE organization_id = $1 AND id = $2", organization_id, profile_id
    ):
        raise NotFound("profile not found", field="profileId")


async def _add_membership(
    conn: asyncpg.Connection, *, organization_id: uuid.UUID, user_id: uuid.UUID, role: Role, profile_id: uuid.UUID | None
) -> None:
    await _check_profile(conn, organization_id, profile_id)
    added = await conn.fetchval(
        """INSERT INTO memberships (organization_id, user_id, role, profile_id) VALUES ($1, $2, $3, $4)
           ON CONFLICT DO NOTHING RETURNING 1""",
        organization_id, user_id, role.value, profile_id,
    )  # fmt: skip
    if not added:
        raise BadInput("this person is already a member of the organization", field="email")


@dataclass(frozen=True)
class Account:
    user_id: uuid.UUID
    email: str
    name: str
    is_platform_admin: bool
    memberships: list[Membership]


async def account(*, viewer: Viewer) -> Account | None:
    """The signed-in person behind a token, cookie or personal key; None for other credentials."""
    if viewer.user_id is None:
        return None
    async with connection() as conn:
        row = await conn.fetchrow("SELECT id, email, name, is_platform_admin FROM users WHERE id = $1", viewer.user_id)
    if row is None:
        return None
    return Account(row["id"], row["email"], row["name"], row["is_platform_admin"], await memberships_of(row["id"]))


@dataclass(frozen=True)
class ListedMembership:
    """A membership as an operator reads it: slugs, not ids."""

    organization: str
    role: Role
    profile: str | None


@dataclass(frozen=True)
class ListedUser:
    user_id: uuid.UUID
    email: str
    name: str
    is_platform_admin: bool
    last_sign_in_at: datetime | None
    memberships: list[ListedMembership]


LISTED_USERS = """
SELECT id, email, name, is_platform_admin, last_sign_in_at FROM users
WHERE $1::uuid IS NULL OR id IN (SELECT user_id FROM memberships WHERE organization_id = $1)
ORDER BY email
"""
# memberships is a tenant table: read it apart from users (a reference table), joined only
# with its organization and its profile, in every organization the listed users belong to.
LISTED_MEMBERSHIPS = """
SELECT m.user_id, o.slug AS organization, m.role, p.slug AS profile
FROM memberships m JOIN organizations o ON o.id = m.organization_id
LEFT JOIN profiles p ON p.organization_id = m.organization_id AND p.id = m.profile_id
WHERE m.user_id = ANY($1::uuid[])
ORDER BY o.slug
"""


async def list_users(organization_id: uuid.UUID | None = None) -> list[ListedUser]:
    """Every account, or the members of one organization (with all their memberships), for
    operators on the command line; never a password hash."""
    async with connection() as conn:
        users = await conn.fetch(LISTED_USERS, organization_id)
        rows = await conn.fetch(LISTED_MEMBERSHIPS, [user["id"] for user in users])
    held: dict[uuid.UUID, list[ListedMembership]] = {}
    for row in rows:
        membership = ListedMembership(row["organization"], Role(row["role"]), row["profile"])
        held.setdefault(row["user_id"], []).append(membership)
    return [
        ListedUser(
            user["id"], user["email"], user["name"], user["is_platform_admin"], user["last_sign_in_at"],
            held.get(user["id"], []),
        )  # fmt: skip
        for user in users
    ]


# -- members -------------------------------------------------------------------------------

MEMBERS = """
SELECT m.user_id, m.organization_id, u.email, u.name, m.role, m.profile_id, m.created_at AS joined_at, u.last_sign_in_at
FROM memberships m JOIN users u ON u.id = m.user_id
WHERE m.organization_id = $1 AND ($2::uuid IS NULL OR m.user_id = $2)
ORDER BY u.email
"""


def _member(row: asyncpg.Record) -> Member:
    return Member(**{**dict(row), "role": Role(row["role"])})


async def members(*, viewer: Viewer, organization_id: Any) -> list[Member]:
    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    async with connection() as conn:
        return [_member(row) for row in await conn.fetch(MEMBERS, org, None)]


ADMINS_ONLY = "managing members needs an organization admin"


async def change_role(
    *, viewer: Viewer, organization_id: Any, user_id: Any, role: Role, profile_id: Any = None,
    address: str | None, settings: Settings,
) -> Member:  # fmt: skip
    """A new role: the member's sessions here end (they sign in again with it) and keys
    the role no longer grants are revoked."""
    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    user = parse_id(user_id, "member", "userId")
    profile = parse_id(profile_id, "profile", "profileId") if profile_id is not None else None
    _check_role(role, profile)
    async with transaction() as conn:
        before = await _locked_member(conn, org, user)
        await _check_profile(conn, org, profile)
        if before["role"] == Role.ORG_ADMIN.value and role is not Role.ORG_ADMIN:
            await _keep_an_admin(conn, org)
        await conn.execute(
            "UPDATE memberships SET role = $3, profile_id = $4, updated_at = now() WHERE organization_id = $1 AND user_id = $2",
            org, user, role.value, profile,
        )  # fmt: skip
        await _end_access(conn, org=org, user=user, keep=GRANTABLE_ROLES[role], profile=profile, why="role changed",
                          viewer=viewer, settings=settings)  # fmt: skip
        await audit.record(
            conn, action=audit.MEMBER_ROLE_CHANGED, actor=Actor.of(viewer, address), organization_id=org, target=str(user),
            details={"from": before["role"], "to": role.value, **({"profileId": str(profile)} if profile else {})},
        )  # fmt: skip
        return _member(await conn.fetchrow(MEMBERS, org, user))


async def remove_member(*, viewer: Viewer, organization_id: Any, user_id: Any, address: str | None, settings: Settings) -> bool:
    """Out of the organization: every session and personal key of theirs here stops at once."""
    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    user = parse_id(user_id, "member", "userId")
    async with transaction() as conn:
        before = await _locked_member(conn, org, user)
        if before["role"] == Role.ORG_ADMIN.value:
            await _keep_an_admin(conn, org)
        await conn.execute("DELETE FROM memberships WHERE organization_id = $1 AND user_id = $2", org, user)
        await _end_access(conn, org=org, user=user, keep=frozenset(), profile=None, why="removed from the organization",
                          viewer=viewer, settings=settings)  # fmt: skip
        await audit.record(
            conn, action=audit.MEMBER_REMOVED, actor=Actor.of(viewer, address), organization_id=org, target=str(user),
            details={"role": before["role"], "email": before["email"]},
        )  # fmt: skip
    return True


async def _locked_member(conn: asyncpg.Connection, org: uuid.UUID, user: uuid.UUID) -> asyncpg.Record:
    row = await conn.fetchrow(
        """SELECT m.role, u.email FROM memberships m JOIN users u ON u.id = m.user_id
           WHERE m.organization_id = $1 AND m.user_id = $2 FOR UPDATE OF m""",
        org, user,
    )  # fmt: skip
    if row is None:
        raise NotFound("member not found", field="userId")
    return row


async def _keep_an_admin(conn: asyncpg.Connection, org: uuid.UUID) -> None:
    """The organization must keep someone who can manage it."""
    admins = await conn.fetchval(
        "SELECT count(*) FROM memberships WHERE organization_id = $1 AND role = 'org_admin'", org
    )
    if admins <= 1:
        raise BadInput("the organization's last admin cannot be demoted or removed; make another admin first", field="userId")


async def _end_access(
    conn: asyncpg.Connection, *, org: uuid.UUID, user: uuid.UUID, keep: frozenset[Role], profile: uuid.UUID | None,
    why: str, viewer: Viewer, settings: Settings,
) -> None:  # fmt: skip
    await revoke_sessions_of(conn, user_id=user, organization_id=org, reason=why, revoked_by=viewer.subject, settings=settings)
    await revoke_keys_of(conn, organization_id=org, user_id=user, keep=keep, profile_id=profile, revoked_by=viewer.subject)


# -- invitations -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Invitation:
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    role: Role
    profile_id: uuid.UUID | None
    invited_by: str
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None

    @property
    def status(self) -> str:
        if self.accepted_at is not None:
            return "ACCEPTED"
        if self.revoked_at is not None:
            return "REVOKED"
        return "EXPIRED" if self.expires_at <= datetime.now(UTC) else "PENDING"


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str  # shown once: the invitee accepts with it
    email_sent: bool


INVITATION_COLUMNS = "id, organization_id, email, role, profile_id, invited_by, created_at, expires_at, accepted_at, revoked_at"


def _invitation(row: asyncpg.Record) -> Invitation:
    return Invitation(**{**dict(row), "role": Role(row["role"])})


async def invite(
    *, viewer: Viewer, organization_id: Any, email: str, role: Role, profile_id: Any = None,
    address: str | None, settings: Settings,
) -> NewInvitation:  # fmt: skip
    """A single-use token for `email` to join with `role`; earlier pending invitations of the
    same address here stop working. The invitee is mailed the token when an SMTP server is
    configured; the token is returned to the inviter either way, to pass on should the mail
    not arrive. The organization's channels receive an `invitation` notification (without
    the token)."""
    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    email = normalized_email(email)
    profile = parse_id(profile_id, "profile", "profileId") if profile_id is not None else None
    _check_role(role, profile)
    invitation_id = uuid.uuid4()
    token, token_hash = new_secret_token(INVITATION_PREFIX, invitation_id)
    expires = datetime.now(UTC) + timedelta(seconds=settings.invitation_ttl_seconds)
    async with transaction() as conn:
        await _check_profile(conn, org, profile)
        if await conn.fetchval(
            "SELECT 1 FROM memberships m JOIN users u ON u.id = m.user_id WHERE m.organization_id = $1 AND u.email = $2", org, email
        ):
            raise BadInput(f"{email} is already a member of the organization", field="email")
        await conn.execute(
            """UPDATE invitations SET revoked_at = now()
               WHERE organization_id = $1 AND email = $2 AND accepted_at IS NULL AND revoked_at IS NULL""",
            org, email,
        )  # fmt: skip
        row = await conn.fetchrow(
            f"""INSERT INTO invitations (organization_id, id, email, role, profile_id, token_hash, invited_by, expires_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {INVITATION_COLUMNS}""",
            org, invitation_id, email, role.value, profile, token_hash, viewer.subject, expires,
        )  # fmt: skip
        await audit.record(
            conn, action=audit.INVITATION_CREATED, actor=Actor.of(viewer, address), organization_id=org, target=email,
            details={"role": role.value, "invitation": str(invitation_id)},
        )  # fmt: skip
        organization = await conn.fetchval("SELECT name FROM organizations WHERE id = $1", org)
        await enqueue_notification(
            conn, organization_id=org, kind=INVITATION,
            payload={"invitationId": str(invitation_id), "email": email, "role": role.value, "invitedBy": viewer.subject,
                     "expiresAt": expires.isoformat()},
        )  # fmt: skip
    sent = await send_direct(
        settings, to=email, subject=f"You are invited to {organization} on pulsegraph",
        body=invitation_mail(organization=organization, role=role.value, token=token, expires=expires, settings=settings),
    )  # fmt: skip
    return NewInvitation(invitation=_invitation(row), token=token, email_sent=sent)


def invitation_mail(*, organization: str, role: str, token: str, expires: datetime, settings: Settings) -> str:
    return (
        f"You are invited to join {organization} on pulsegraph as {role}.\n\n"
        f"Accept at {settings.public_url} (mutation acceptInvitation) with this token, which works once "
        f"until {expires:%Y-%m-%d %H:%M} UTC:\n\n{token}\n"
    )


def password_reset_mail(*, token: str, expires: datetime, settings: Settings) -> str:
    return (
        f"An administrator made a password reset for your pulsegraph account.\n\n"
        f"Set a new password at {settings.public_url} (mutation resetPassword) with this token, which works once "
        f"until {expires:%Y-%m-%d %H:%M} UTC:\n\n{token}\n"
    )


async def invitations(*, viewer: Viewer, organization_id: Any, pending_only: bool = False) -> list[Invitation]:
    org = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    async with connection() as conn:
        rows = await conn.fetch(
            f"""SELECT {INVITATION_COLUMNS} FROM invitations WHERE organization_id = $1
                AND (NOT $2 OR (accepted_at IS NULL AND revoked_at IS NULL AND expires_at > now()))
                ORDER BY created_at DESC, id""",
            org, pending_only,
        )  # fmt: skip
    return [_invitation(row) for row in rows]


async def revoke_invitation(*, viewer: Viewer, invitation_id: Any, address: str | None) -> Invitation:
    own = administered_by(viewer, refusal=ADMINS_ONLY)
    wanted = parse_id(invitation_id, "invitation", "id")
    async with transaction() as conn:
        row = await conn.fetchrow(
            f"""UPDATE invitations SET revoked_at = coalesce(revoked_at, now())
                WHERE id = $1 AND ($2::uuid IS NULL OR organization_id = $2) AND accepted_at IS NULL
                RETURNING {INVITATION_COLUMNS}""",
            wanted, own,
        )  # fmt: skip
        if row is None:
            raise NotFound("pending invitation not found", field="id")
        await audit.record(
            conn, action=audit.INVITATION_REVOKED, actor=Actor.of(viewer, address), organization_id=row["organization_id"],
            target=row["email"], details={"invitation": str(wanted)},
        )  # fmt: skip
    return _invitation(row)


async def accept_invitation(
    *, token: str, password: str, name: str = "", address: str | None, user_agent: str | None, settings: Settings
) -> SignedIn:
    """Join with the invitation's role: a new account sets its password (every rule applies),
    an existing one proves it with its password. Signs in on success."""
    invitation_id = row_id_of(token.strip(), INVITATION_PREFIX)
    if invitation_id is None:
        raise BadInput(INVALID_INVITATION, field="token")
    async with transaction() as conn:
        row = await conn.fetchrow(
            f"SELECT {INVITATION_COLUMNS}, token_hash FROM invitations WHERE id = $1 FOR UPDATE", invitation_id
        )
        if row is None or not _usable(row, token):
            raise BadInput(INVALID_INVITATION, field="token")
        user_id = await _invitee(conn, email=row["email"], name=name, password=password)
        await _add_membership(
            conn, organization_id=row["organization_id"], user_id=user_id, role=Role(row["role"]), profile_id=row["profile_id"]
        )
        await conn.execute(
            "UPDATE invitations SET accepted_at = now(), accepted_by = $3 WHERE organization_id = $1 AND id = $2",
            row["organization_id"], invitation_id, user_id,
        )  # fmt: skip
        await audit.record(
            conn, action=audit.INVITATION_ACCEPTED, actor=Actor(f"user:{user_id}", user_id, address),
            organization_id=row["organization_id"], target=row["email"], details={"role": row["role"]},
        )  # fmt: skip
    return await sign_in(
        email=row["email"], password=password, organization_id=row["organization_id"], address=address,
        user_agent=user_agent, settings=settings,
    )  # fmt: skip


def _usable(row: asyncpg.Record, token: str) -> bool:
    return (
        hmac.compare_digest(row["token_hash"], hash_key(token.strip()))
        and row["accepted_at"] is None
        and row["revoked_at"] is None
        and row["expires_at"] > datetime.now(UTC)
    )


async def _invitee(conn: asyncpg.Connection, *, email: str, name: str, password: str) -> uuid.UUID:
    existing = await conn.fetchrow("SELECT id, password_hash FROM users WHERE email = $1", email)
    if existing is not None and existing["password_hash"] is not None:
        if not verify_password(existing["password_hash"], password):
            raise BadInput("this email already has an account: give its password to join", field="password")
        return existing["id"]
    check_strength(password, email=email, name=name)
    if "\x00" in name or len(name) > 200:
        raise BadInput("name must be at most 200 characters, without NUL", field="name")
    if existing is not None:  # created without a password (e.g. by an operator): it sets one now
        await conn.execute(
            "UPDATE users SET password_hash = $2, password_changed_at = now(), name = coalesce(nullif($3, ''), name) WHERE id = $1",
            existing["id"], hash_password(password), name.strip(),
        )  # fmt: skip
        return existing["id"]
    user_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO users (id, email, name, password_hash, password_changed_at) VALUES ($1, $2, $3, $4, now())",
        user_id, email, name.strip(), hash_password(password),
    )  # fmt: skip
    return user_id


# -- passwords -----------------------------------------------------------------------------


@dataclass(frozen=True)
class NewPasswordReset:
    user_id: uuid.UUID
    token: str  # shown once
    expires_at: datetime
    email_sent: bool


async def create_password_reset(
    *, viewer: Viewer, user_id: Any, organization_id: Any = None, address: str | None, settings: Settings
) -> NewPasswordReset:
    """A single-use token to set a new password (org admins: members of their organization;
    platform admins: anyone), mailed to the member when an SMTP server is configured and
    returned to the admin either way. The channels (the organization's, or the platform's
    when a platform admin names none) receive a `password_reset` notification without it."""
    user = parse_id(user_id, "user", "userId")
    own = administered_by(viewer, refusal=ADMINS_ONLY)
    if own is None and organization_id is not None:
        own = await administered_organization(viewer, organization_id, refusal=ADMINS_ONLY)
    reset_id = uuid.uuid4()
    token, token_hash = new_secret_token(RESET_PREFIX, reset_id)
    expires = datetime.now(UTC) + timedelta(seconds=settings.password_reset_ttl_seconds)
    async with transaction() as conn:
        email = await conn.fetchval(
            """SELECT u.email FROM users u WHERE u.id = $1 AND ($2::uuid IS NULL OR EXISTS
               (SELECT 1 FROM memberships m WHERE m.organization_id = $2 AND m.user_id = u.id))""",
            user, own,
        )  # fmt: skip
        if email is None:
            raise NotFound("user not found", field="userId")
        await conn.execute(
            "UPDATE password_resets SET used_at = now() WHERE user_id = $1 AND used_at IS NULL", user
        )  # earlier links stop working
        await conn.execute(
            "INSERT INTO password_resets (id, user_id, token_hash, created_by, expires_at) VALUES ($1, $2, $3, $4, $5)",
            reset_id, user, token_hash, viewer.subject, expires,
        )  # fmt: skip
        await audit.record(
            conn, action=audit.PASSWORD_RESET_CREATED, actor=Actor.of(viewer, address), organization_id=own, target=email
        )
        await enqueue_notification(
            conn, organization_id=own, kind=PASSWORD_RESET,
            payload={"userId": str(user), "email": email, "createdBy": viewer.subject, "expiresAt": expires.isoformat()},
        )  # fmt: skip
    sent = await send_direct(
        settings, to=email, subject="Your pulsegraph password reset",
        body=password_reset_mail(token=token, expires=expires, settings=settings),
    )  # fmt: skip
    return NewPasswordReset(user_id=user, token=token, expires_at=expires, email_sent=sent)


async def reset_password(*, token: str, password: str, address: str | None, settings: Settings) -> bool:
    """Set a new password with a reset token, once; every session of the account ends."""
    reset_id = row_id_of(token.strip(), RESET_PREFIX)
    if reset_id is None:
        raise BadInput(INVALID_RESET, field="token")
    async with transaction() as conn:
        row = await conn.fetchrow(
            """SELECT r.user_id, r.token_hash, r.used_at, r.expires_at, u.email, u.name
               FROM password_resets r JOIN users u ON u.id = r.user_id WHERE r.id = $1 FOR UPDATE OF r""",
            reset_id,
        )  # fmt: skip
        if row is None or not _reset_usable(row, token):
            raise BadInput(INVALID_RESET, field="token")
        check_strength(password, email=row["email"], name=row["name"])
        await conn.execute("UPDATE password_resets SET used_at = now() WHERE id = $1", reset_id)
        await _set_password(conn, user_id=row["user_id"], password=password, settings=settings, why="password reset")
        await audit.record(
            conn, action=audit.PASSWORD_RESET, actor=Actor(f"user:{row['user_id']}", row["user_id"], address), target=row["email"]
        )
    return True


def _reset_usable(row: asyncpg.Record, token: str) -> bool:
    return hmac.compare_digest(row["token_hash"], hash_key(token.strip())) and row["used_at"] is None and row["expires_at"] > datetime.now(UTC)


async def change_password(
    *, viewer: Viewer, current_password: str, new_password: str, address: str | None, settings: Settings
) -> bool:
    """A signed-in person's new password; their other sessions end, this one stays."""
    if viewer.user_id is None:
        raise Forbidden("only a signed-in person has a password")
    async with transaction() as conn:
        row = await conn.fetchrow("SELECT email, name, password_hash FROM users WHERE id = $1 FOR UPDATE", viewer.user_id)
        if row is None or not verify_password(row["password_hash"], current_password):
            raise BadInput("current password is wrong", field="currentPassword")
        check_strength(new_password, email=row["email"], name=row["name"], field="newPassword")
        await _set_password(conn, user_id=viewer.user_id, password=new_password, settings=settings, why="password changed",
                            except_session=viewer.session_id)  # fmt: skip
        await audit.record(conn, action=audit.PASSWORD_RESET, actor=Actor.of(viewer, address), organization_id=viewer.organization_id,
                           target=row["email"], details={"by": "owner"})  # fmt: skip
    return True


async def _set_password(
    conn: asyncpg.Connection, *, user_id: uuid.UUID, password: str, settings: Settings, why: str, except_session: str | None = None
) -> None:
    await conn.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1", user_id, hash_password(password)
    )
    await revoke_sessions_of(
        conn, user_id=user_id, organization_id=None, reason=why, revoked_by=f"user:{user_id}", settings=settings,
        except_session=except_session,
    )  # fmt: skip
