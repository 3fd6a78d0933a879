"""Accounts as the API shows them: sign-ins, members, invitations, keys, the audit log."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON


@strawberry.enum(description="A member's role in an organization.")
class MemberRole(Enum):
    ORG_ADMIN = strawberry.enum_value("org_admin", description="Everything in the organization: reports, settings, members, keys.")
    PROVIDER = strawberry.enum_value("provider", description="Reports of one profile, read-only.")
    VIEWER = strawberry.enum_value("viewer", description="Every report of the organization, read-only.")


@strawberry.enum(description="Where an invitation stands.")
class InvitationStatus(Enum):
    PENDING = strawberry.enum_value("PENDING", description="Can still be accepted.")
    ACCEPTED = strawberry.enum_value("ACCEPTED", description="Accepted: the invitee is a member.")
    REVOKED = strawberry.enum_value("REVOKED", description="Withdrawn, or replaced by a newer invitation of the same email.")
    EXPIRED = strawberry.enum_value("EXPIRED", description="Past its expiry, never accepted.")


@strawberry.enum(description="What a key is for.")
class KeyKind(Enum):
    PERSONAL = strawberry.enum_value("personal", description="A personal API key: acts as its member (pga_...).")
    SERVICE = strawberry.enum_value("service", description="A service token: publishes domain events (pgs_...).")
    INGESTION = strawberry.enum_value("ingestion", description="An ingestion key: writes events only (pgk_...).")


@strawberry.type(description="A person with an account.")
class AccountUser:
    id: strawberry.ID = strawberry.field(description="User id (UUID).")
    email: str = strawberry.field(description="Email address, lowercased.")
    name: str = strawberry.field(description="Display name.")


@strawberry.type(description="A signed-in session: tokens for API clients, or a cookie and its CSRF token for browsers.")
class SignInPayload:
    user: AccountUser = strawberry.field(description="Who signed in.")
    role: str = strawberry.field(description="The role the tokens act with: org_admin, provider, viewer, or admin (platform).")
    organization_id: strawberry.ID | None = strawberry.field(description="The organization they act for (null: platform admin).")
    profile_id: strawberry.ID | None = strawberry.field(description="Providers: their profile.")
    session_id: strawberry.ID = strawberry.field(description="The session; signing out or a revocation ends it.")
    session_expires_at: datetime = strawberry.field(description="When the session ends and a new sign-in is needed.")
    access_token: str | None = strawberry.field(
        description="Send as `Authorization: Bearer ...`; short-lived (see accessTokenExpiresAt). Null for cookie sign-ins."
    )
    access_token_expires_at: datetime | None = strawberry.field(description="When the access token expires: refresh before.")
    refresh_token: str | None = strawberry.field(
        description="Trade it once for new tokens with refreshToken; a used one presented again ends the session. "
        "Null for cookie sign-ins."
    )
    csrf_token: str | None = strawberry.field(
        description="Cookie sign-ins: send in the X-CSRF-Token header with every POST (also set as the pulsegraph_csrf cookie)."
    )


@strawberry.type(description="A membership of the signed-in person.")
class AccountMembership:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    role: MemberRole = strawberry.field(description="The role held there.")
    profile_id: strawberry.ID | None = strawberry.field(description="Providers: their profile.")


@strawberry.type(description="The signed-in person and where they belong.")
class Me:
    user: AccountUser = strawberry.field(description="The account.")
    memberships: list[AccountMembership] = strawberry.field(description="Every organization they belong to, with the role.")
    is_platform_admin: bool = strawberry.field(description="True for platform admins.")


@strawberry.type(description="A member of an organization.")
class Member:
    user_id: strawberry.ID = strawberry.field(description="The member's user id.")
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    email: str = strawberry.field(description="Email address.")
    name: str = strawberry.field(description="Display name.")
    role: MemberRole = strawberry.field(description="Role in the organization.")
    profile_id: strawberry.ID | None = strawberry.field(description="Providers: their profile.")
    joined_at: datetime = strawberry.field(description="When they joined.")
    last_sign_in_at: datetime | None = strawberry.field(description="Their last sign-in anywhere.")


@strawberry.type(description="An invitation to join an organization.")
class Invitation:
    id: strawberry.ID = strawberry.field(description="Invitation id.")
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    email: str = strawberry.field(description="Who is invited.")
    role: MemberRole = strawberry.field(description="The role they join with.")
    profile_id: strawberry.ID | None = strawberry.field(description="Providers: the profile they will own.")
    invited_by: str = strawberry.field(description="Who invited them (a credential's subject).")
    created_at: datetime = strawberry.field(description="When.")
    expires_at: datetime = strawberry.field(description="The token works until then.")
    status: InvitationStatus = strawberry.field(description="Pending, accepted, revoked or expired.")


@strawberry.type(description="A new invitation and its single-use token.")
class InvitationPayload:
    invitation: Invitation = strawberry.field(description="The invitation.")
    token: str = strawberry.field(
        description="Shown once: the invitee accepts with acceptInvitation(token, password). Pass it on privately."
    )
    email_sent: bool = strawberry.field(description="Whether an email carried it (false: no SMTP server is configured, or it refused the mail; the token is returned either way).")


@strawberry.type(description="A single-use token to set a new password.")
class PasswordResetPayload:
    user_id: strawberry.ID = strawberry.field(description="Whose password.")
    token: str = strawberry.field(description="Shown once: used with resetPassword(token, newPassword).")
    expires_at: datetime = strawberry.field(description="It works until then.")
    email_sent: bool = strawberry.field(description="Whether an email carried it (false: no SMTP server is configured, or it refused the mail; the token is returned either way).")


@strawberry.type(description="A key as lists show it: never the key itself, which is shown once when made.")
class ApiKey:
    id: strawberry.ID = strawberry.field(description="Key id: what revoking takes.")
    organization_id: strawberry.ID = strawberry.field(description="The organization it acts for.")
    kind: KeyKind = strawberry.field(description="Personal API key, service token or ingestion key.")
    name: str = strawberry.field(description="Its name, to tell keys apart.")
    hint: str = strawberry.field(description="How the key starts, to recognise it in a config file.")
    role: str | None = strawberry.field(description="The role it acts with (null for ingestion keys).")
    profile_id: strawberry.ID | None = strawberry.field(description="Provider keys: the profile.")
    user_id: strawberry.ID | None = strawberry.field(description="Personal keys: whose.")
    created_by: str | None = strawberry.field(description="Who made it.")
    created_at: datetime = strawberry.field(description="When it was made.")
    last_used_at: datetime | None = strawberry.field(description="Last use, to within a minute.")
    revoked_at: datetime | None = strawberry.field(description="When it was revoked (null: live).")


@strawberry.type(description="A new key and its secret, shown this once.")
class NewApiKey:
    key: ApiKey = strawberry.field(description="The key as lists show it.")
    secret: str = strawberry.field(description="The key itself: store it now, it cannot be shown again.")


@strawberry.type(description="One entry of the audit log.")
class AuditEntry:
    id: strawberry.ID = strawberry.field(description="Entry id; page with `before`.")
    at: datetime = strawberry.field(description="When.")
    organization_id: strawberry.ID | None = strawberry.field(description="The organization (null: none, e.g. an unknown email).")
    actor: str = strawberry.field(description="Who: a credential's subject (user:<id>, service:<id>) or the email tried.")
    actor_user_id: strawberry.ID | None = strawberry.field(description="The acting user, when a person acted.")
    address: str | None = strawberry.field(description="The client address it came from.")
    action: str = strawberry.field(description="What: sign_in, sign_in.failed, invitation.created, key.revoked, ...")
    target: str | None = strawberry.field(description="What it was done to: an email, a user, a key, a session.")
    details: JSON = strawberry.field(description="More about it, by action (e.g. a role change's from and to, an admin act's arguments).")
    role: str | None = strawberry.field(description="The actor's role when it acted (admin, org_admin, ...); null before roles were recorded.")
    before: JSON | None = strawberry.field(description="The object before the change, where the action records it.")
    after: JSON | None = strawberry.field(description="The object after the change, where the action records it.")
    reason: str | None = strawberry.field(description="The reason the admin gave, where the action asks for one.")
