"""Sign-in, members, invitations, keys and the audit log (thin: read the request, call the
accounts services, map)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import CSRF_COOKIE, SESSION_COOKIE, Access, Role
from app.errors import BadInput, Forbidden, parse_id
from app.services.accounts import audit, keys, members, sessions
from app.services.accounts.audit import AuditEntry as AuditRow
from resolvers.common import app_state, guarded, optional_id, viewer_of
from schema.accounts import (
    AccountMembership,
    AccountUser,
    ApiKey,
    AuditEntry,
    Invitation,
    InvitationPayload,
    InvitationStatus,
    KeyKind,
    Me,
    Member,
    MemberRole,
    NewApiKey,
    PasswordResetPayload,
    SignInPayload,
)
from schema.financial_reports import ReportFile
from schema.pnl import ExportFormat

OrgArg = Annotated[strawberry.ID | None, strawberry.argument(description="The organization (platform admins must name it).")]
NeededOrgArg = Annotated[strawberry.ID, strawberry.argument(description="The organization.")]
IdArg = Annotated[strawberry.ID, strawberry.argument(description="Its id.")]
EmailArg = Annotated[str, strawberry.argument(description="Email address.")]
PasswordArg = Annotated[str, strawberry.argument(description="Password.")]
NewPasswordArg = Annotated[str, strawberry.argument(description="The new password: at least 10 characters, not common, not your email or name.")]
RoleArg = Annotated[MemberRole, strawberry.argument(description="The role.")]
NameArg = Annotated[str, strawberry.argument(description="A name to tell it apart (1..100 characters).")]


def address_of(info: Info) -> str | None:
    client = getattr(info.context.request, "client", None)
    return client.host if client else None


def user_agent_of(info: Info) -> str | None:
    return info.context.request.headers.get("user-agent")


def settings_of(info: Info) -> Any:
    return app_state(info).settings


# -- mappers ------------------------------------------------------------------------------


def to_sign_in(done: sessions.SignedIn) -> SignInPayload:
    return SignInPayload(
        user=AccountUser(id=strawberry.ID(str(done.user_id)), email=done.email, name=done.name),
        role=done.role.value, organization_id=optional_id(done.organization_id), profile_id=optional_id(done.profile_id),
        session_id=strawberry.ID(str(done.session_id)), session_expires_at=done.session_expires_at,
        access_token=done.access_token, access_token_expires_at=done.access_token_expires_at,
        refresh_token=done.refresh_token, csrf_token=done.csrf_token,
    )  # fmt: skip


def to_member(member: members.Member) -> Member:
    return Member(
        user_id=strawberry.ID(str(member.user_id)), organization_id=strawberry.ID(str(member.organization_id)),
        email=member.email, name=member.name, role=MemberRole(member.role.value), profile_id=optional_id(member.profile_id),
        joined_at=member.joined_at, last_sign_in_at=member.last_sign_in_at,
    )  # fmt: skip


def to_invitation(invitation: members.Invitation) -> Invitation:
    return Invitation(
        id=strawberry.ID(str(invitation.id)), organization_id=strawberry.ID(str(invitation.organization_id)),
        email=invitation.email, role=MemberRole(invitation.role.value), profile_id=optional_id(invitation.profile_id),
        invited_by=invitation.invited_by, created_at=invitation.created_at, expires_at=invitation.expires_at,
        status=InvitationStatus(invitation.status),
    )  # fmt: skip


def to_key(key: keys.Key) -> ApiKey:
    return ApiKey(
        id=strawberry.ID(str(key.id)), organization_id=strawberry.ID(str(key.organization_id)), kind=KeyKind(key.kind),
        name=key.name, hint=key.hint, role=key.role.value if key.role else None, profile_id=optional_id(key.profile_id),
        user_id=optional_id(key.user_id), created_by=key.created_by, created_at=key.created_at, last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )  # fmt: skip


def to_new_key(new: keys.NewKey) -> NewApiKey:
    return NewApiKey(key=to_key(new.key), secret=new.secret)


def to_audit_entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(
        id=strawberry.ID(str(row.id)), at=row.at, organization_id=optional_id(row.organization_id), actor=row.actor,
        actor_user_id=optional_id(row.actor_user_id), address=row.address, action=row.action, target=row.target, details=row.details,
        role=row.role, before=row.before, after=row.after, reason=row.reason,
    )  # fmt: skip


def _role(role: MemberRole | None) -> Role | None:
    return Role(role.value) if role is not None else None


# -- signing in and out -------------------------------------------------------------------


def _set_session_cookies(info: Info, done: sessions.SignedIn, max_age: int) -> None:
    """HttpOnly and SameSite=Lax: scripts cannot read the session, and other sites' forms
    and fetches do not carry it; the CSRF cookie is readable so the console can echo it."""
    response = info.context.response
    secure = info.context.request.url.scheme == "https"
    response.set_cookie(SESSION_COOKIE, done.cookie, max_age=max_age, httponly=True, samesite="lax", secure=secure, path="/")
    response.set_cookie(CSRF_COOKIE, done.csrf_token, max_age=max_age, httponly=False, samesite="lax", secure=secure, path="/")


async def login(
    info: Info,
    email: EmailArg,
    password: PasswordArg,
    organization_id: Annotated[
        strawberry.ID | None, strawberry.argument(description="Act for this organization (default: your first).")
    ] = None,
    cookie: Annotated[
        bool, strawberry.argument(description="Browsers: set an HttpOnly session cookie instead of returning tokens.")
    ] = False,
) -> SignInPayload:
    org = parse_id(organization_id, "organization", "organizationId") if organization_id is not None else None
    settings = settings_of(info)
    done = await sessions.sign_in(
        email=email, password=password, organization_id=org, cookie=cookie, address=address_of(info),
        user_agent=user_agent_of(info), settings=settings,
    )  # fmt: skip
    if cookie:
        _set_session_cookies(info, done, settings.session_ttl_seconds)
    return to_sign_in(done)


async def refresh_token(
    info: Info, refresh_token: Annotated[str, strawberry.argument(description="The refresh token of your last sign-in or refresh.")]
) -> SignInPayload:
    done = await sessions.refresh(refresh_token=refresh_token, address=address_of(info), settings=settings_of(info))
    return to_sign_in(done)


async def logout(
    info: Info,
    refresh_token: Annotated[
        str | None, strawberry.argument(description="Also end the session this refresh token belongs to.")
    ] = None,
) -> bool:
    viewer = viewer_of(info)
    if viewer.ingestion_key_id is not None or viewer.api_key_id is not None:
        raise Forbidden("a key is not a sign-in: revoke the key instead")
    ended = await sessions.sign_out(viewer=viewer, refresh_token=refresh_token, address=address_of(info), settings=settings_of(info))
    if viewer.session_id is not None and info.context.request.cookies.get(SESSION_COOKIE):
        info.context.response.delete_cookie(SESSION_COOKIE, path="/")
        info.context.response.delete_cookie(CSRF_COOKIE, path="/")
    return ended


async def accept_invitation(
    info: Info,
    token: Annotated[str, strawberry.argument(description="The invitation's token.")],
    password: Annotated[str, strawberry.argument(description="Your new password (or your existing account's password).")],
    name: Annotated[str, strawberry.argument(description="Your display name (new accounts).")] = "",
) -> SignInPayload:
    done = await members.accept_invitation(
        token=token, password=password, name=name, address=address_of(info), user_agent=user_agent_of(info),
        settings=settings_of(info),
    )  # fmt: skip
    return to_sign_in(done)


async def reset_password(
    info: Info,
    token: Annotated[str, strawberry.argument(description="The password reset token.")],
    new_password: NewPasswordArg,
) -> bool:
    return await members.reset_password(token=token, password=new_password, address=address_of(info), settings=settings_of(info))


async def change_password(info: Info, current_password: PasswordArg, new_password: NewPasswordArg) -> bool:
    return await members.change_password(
        viewer=viewer_of(info), current_password=current_password, new_password=new_password, address=address_of(info),
        settings=settings_of(info),
    )  # fmt: skip


async def me(info: Info) -> Me | None:
    viewer = viewer_of(info)
    account = await members.account(viewer=viewer)
    if account is None:
        return None
    return Me(
        user=AccountUser(id=strawberry.ID(str(account.user_id)), email=account.email, name=account.name),
        memberships=[
            AccountMembership(organization_id=strawberry.ID(str(m.organization_id)), role=MemberRole(m.role.value),
                              profile_id=optional_id(m.profile_id))  # fmt: skip
            for m in account.memberships
        ],
        is_platform_admin=account.is_platform_admin,
    )


# -- members and invitations --------------------------------------------------------------


async def members_(info: Info, organization_id: OrgArg = None) -> list[Member]:
    return [to_member(m) for m in await members.members(viewer=viewer_of(info), organization_id=organization_id)]


async def invitations(
    info: Info,
    organization_id: OrgArg = None,
    pending_only: Annotated[bool, strawberry.argument(description="Only invitations that can still be accepted.")] = False,
) -> list[Invitation]:
    found = await members.invitations(viewer=viewer_of(info), organization_id=organization_id, pending_only=pending_only)
    return [to_invitation(i) for i in found]


async def invite_member(
    info: Info,
    organization_id: NeededOrgArg,
    email: EmailArg,
    role: RoleArg,
    profile_id: Annotated[strawberry.ID | None, strawberry.argument(description="Providers: the profile they will own.")] = None,
) -> InvitationPayload:
    new = await members.invite(
        viewer=viewer_of(info), organization_id=organization_id, email=email, role=Role(role.value),
        profile_id=profile_id, address=address_of(info), settings=settings_of(info),
    )  # fmt: skip
    return InvitationPayload(invitation=to_invitation(new.invitation), token=new.token, email_sent=new.email_sent)


async def revoke_invitation(info: Info, id: IdArg) -> Invitation:  # noqa: A002 - the GraphQL argument's name
    return to_invitation(await members.revoke_invitation(viewer=viewer_of(info), invitation_id=id, address=address_of(info)))


async def change_member_role(
    info: Info,
    organization_id: NeededOrgArg,
    user_id: Annotated[strawberry.ID, strawberry.argument(description="The member.")],
    role: RoleArg,
    profile_id: Annotated[strawberry.ID | None, strawberry.argument(description="Providers: their profile.")] = None,
) -> Member:
    changed = await members.change_role(
        viewer=viewer_of(info), organization_id=organization_id, user_id=user_id, role=Role(role.value),
        profile_id=profile_id, address=address_of(info), settings=settings_of(info),
    )  # fmt: skip
    return to_member(changed)


async def remove_member(
    info: Info, organization_id: NeededOrgArg, user_id: Annotated[strawberry.ID, strawberry.argument(description="The member.")]
) -> bool:
    return await members.remove_member(
        viewer=viewer_of(info), organization_id=organization_id, user_id=user_id, address=address_of(info),
        settings=settings_of(info),
    )  # fmt: skip


async def create_password_reset(
    info: Info, user_id: Annotated[strawberry.ID, strawberry.argument(description="The user.")], organization_id: OrgArg = None
) -> PasswordResetPayload:
    new = await members.create_password_reset(
        viewer=viewer_of(info), user_id=user_id, organization_id=organization_id, address=address_of(info),
        settings=settings_of(info),
    )  # fmt: skip
    return PasswordResetPayload(user_id=strawberry.ID(str(new.user_id)), token=new.token, expires_at=new.expires_at,
                                email_sent=new.email_sent)  # fmt: skip


# -- keys ---------------------------------------------------------------------------------


async def personal_api_keys(info: Info, organization_id: OrgArg = None) -> list[ApiKey]:
    return [to_key(k) for k in await keys.personal_keys(viewer=viewer_of(info), organization_id=organization_id)]


async def create_personal_api_key(
    info: Info,
    name: NameArg,
    organization_id: Annotated[strawberry.ID | None, strawberry.argument(description="Your organization (default: the token's).")] = None,
    role: Annotated[MemberRole | None, strawberry.argument(description="Your role (default) or a narrower one.")] = None,
) -> NewApiKey:
    new = await keys.create_personal_key(
        viewer=viewer_of(info), organization_id=organization_id, name=name, role=_role(role), address=address_of(info)
    )
    return to_new_key(new)


async def revoke_personal_api_key(info: Info, id: IdArg) -> ApiKey:  # noqa: A002
    return to_key(await keys.revoke_key(viewer=viewer_of(info), key_id=id, kind=keys.PERSONAL, address=address_of(info)))


async def service_tokens(info: Info, organization_id: OrgArg = None) -> list[ApiKey]:
    return [to_key(k) for k in await keys.service_tokens(viewer=viewer_of(info), organization_id=organization_id)]


async def create_service_token(info: Info, organization_id: NeededOrgArg, name: NameArg) -> NewApiKey:
    new = await keys.create_service_token(viewer=viewer_of(info), organization_id=organization_id, name=name, address=address_of(info))
    return to_new_key(new)


async def revoke_service_token(info: Info, id: IdArg) -> ApiKey:  # noqa: A002
    return to_key(await keys.revoke_key(viewer=viewer_of(info), key_id=id, kind=keys.SERVICE, address=address_of(info)))


async def ingestion_keys(info: Info, organization_id: OrgArg = None) -> list[ApiKey]:
    return [to_key(k) for k in await keys.ingestion_keys(viewer=viewer_of(info), organization_id=organization_id)]


async def create_ingestion_key(info: Info, organization_id: NeededOrgArg, name: NameArg) -> NewApiKey:
    new = await keys.create_ingestion_key(viewer=viewer_of(info), organization_id=organization_id, name=name, address=address_of(info))
    return to_new_key(new)


async def revoke_ingestion_key(info: Info, id: IdArg) -> ApiKey:  # noqa: A002
    return to_key(await keys.revoke_ingestion_key(viewer=viewer_of(info), key_id=id, address=address_of(info)))


# -- audit --------------------------------------------------------------------------------


ActionArg = Annotated[str | None, strawberry.argument(description="Only this action, e.g. sign_in.failed or cost.updated.")]
ActorArg = Annotated[str | None, strawberry.argument(description="Only this actor (user:<id>, service:<id>, or an email tried).")]
TargetArg = Annotated[str | None, strawberry.argument(description="Only entries about this target (an id or an email).")]
FromArg = Annotated[datetime | None, strawberry.argument(name="from", description="Entries at or after this time.")]
ToArg = Annotated[datetime | None, strawberry.argument(description="Entries before this time.")]


def audit_filter(
    organization_id: strawberry.ID | None, action: str | None, actor: str | None, target: str | None,
    from_: datetime | None, to: datetime | None,
) -> audit.AuditFilter:  # fmt: skip
    return audit.AuditFilter(organization_id=organization_id, action=action, actor=actor, target=target, since=from_, until=to)


async def audit_log(
    info: Info,
    organization_id: OrgArg = None,
    action: ActionArg = None,
    actor: ActorArg = None,
    target: TargetArg = None,
    from_: FromArg = None,
    to: ToArg = None,
    before: Annotated[strawberry.ID | None, strawberry.argument(description="Entries older than this entry id (paging).")] = None,
    limit: Annotated[int, strawberry.argument(description="At most this many (1..500).")] = 100,
) -> list[AuditEntry]:
    try:
        older_than = int(before) if before is not None else None
    except ValueError:
        raise BadInput("before must be an audit entry id", field="before") from None
    filters = audit_filter(organization_id, action, actor, target, from_, to)
    rows = await audit.audit_log(viewer=viewer_of(info), filters=filters, before=older_than, limit=limit)
    return [to_audit_entry(row) for row in rows]


async def export_audit_log(
    info: Info,
    organization_id: OrgArg = None,
    action: ActionArg = None,
    actor: ActorArg = None,
    target: TargetArg = None,
    from_: FromArg = None,
    to: ToArg = None,
    format_: Annotated[ExportFormat, strawberry.argument(name="format", description="CSV (default) or XLSX.")] = ExportFormat.CSV,
) -> ReportFile:
    filters = audit_filter(organization_id, action, actor, target, from_, to)
    found = await audit.export(viewer=viewer_of(info), filters=filters, fmt=format_.value)
    return ReportFile(filename=found.filename, content_type=found.content_type, encoding=found.encoding, content=found.content)


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The accounts domain's reads, merged into the root by schema.root."""

    me: Me | None = guarded(Access.ANYONE, me, "The signed-in person and their memberships (null for keys and command-line tokens).")
    members: list[Member] = guarded(Access.ORG_ADMINS, members_, "The organization's members and their roles.")
    invitations: list[Invitation] = guarded(Access.ORG_ADMINS, invitations, "Invitations to the organization, newest first.")
    personal_api_keys: list[ApiKey] = guarded(
        Access.PEOPLE, personal_api_keys, "Personal API keys: your own; organization admins see every member's."
    )
    service_tokens: list[ApiKey] = guarded(Access.ORG_ADMINS, service_tokens, "The organization's service tokens.")
    ingestion_keys: list[ApiKey] = guarded(Access.ORG_ADMINS, ingestion_keys, "The organization's ingestion keys.")
    audit_log: list[AuditEntry] = guarded(
        Access.ORG_ADMINS, audit_log,
        "Every admin action (who, role, action, target, before / after, reason, when), sign-ins and failed sign-ins:"
        " newest first, filtered by action, actor, target and time, paged by `before`.",
    )  # fmt: skip
    export_audit_log: ReportFile = guarded(
        Access.ORG_ADMINS, export_audit_log,
        "The audit log entries the filters match (up to 100,000, newest first) as a CSV or XLSX file.",
    )  # fmt: skip


@strawberry.type
class Mutation:
    """The accounts domain's writes, merged into the root by schema.root."""

    login: SignInPayload = guarded(
        Access.ANYONE, login,
        "Sign in with email and password: an access token and a refresh token, or with cookie: true an HttpOnly session "
        "cookie. Failed attempts are limited per account and per address (RATE_LIMITED with retryAfterSeconds).",
    )  # fmt: skip
    refresh_token: SignInPayload = guarded(
        Access.ANYONE, refresh_token,
        "New tokens for a refresh token, which is used up; presenting a used one again ends its session.",
    )  # fmt: skip
    logout: bool = guarded(
        Access.SIGNED_IN, logout,
        "End this sign-in: its tokens and cookie are refused on every API process within a second. "
        "A command-line token is revoked itself.",
    )  # fmt: skip
    accept_invitation: SignInPayload = guarded(
        Access.ANYONE, accept_invitation, "Join an organization with an invitation's token and sign in."
    )
    reset_password: bool = guarded(
        Access.ANYONE, reset_password, "Set a new password with a reset token (once); every session of the account ends."
    )
    change_password: bool = guarded(
        Access.PEOPLE, change_password, "Change your password; your other sessions end."
    )
    invite_member: InvitationPayload = guarded(
        Access.ORG_ADMINS, invite_member,
        "Invite someone by email with a role: the single-use token is mailed to them when an SMTP server is configured, and returned either way.",
    )  # fmt: skip
    revoke_invitation: Invitation = guarded(Access.ORG_ADMINS, revoke_invitation, "Withdraw a pending invitation.")
    change_member_role: Member = guarded(
        Access.ORG_ADMINS, change_member_role,
        "Give a member another role; their sessions here end and keys the role no longer grants are revoked.",
    )  # fmt: skip
    remove_member: bool = guarded(
        Access.ORG_ADMINS, remove_member, "Remove a member: their sessions and personal keys here stop working at once."
    )
    create_password_reset: PasswordResetPayload = guarded(
        Access.ORG_ADMINS, create_password_reset, "A single-use password reset token for a member: mailed to them when an SMTP server is configured, and returned either way."
    )
    create_personal_api_key: NewApiKey = guarded(
        Access.MEMBERS, create_personal_api_key,
        "A personal API key acting as you, with your role or a narrower one; the key is shown once.",
    )  # fmt: skip
    revoke_personal_api_key: ApiKey = guarded(
        Access.PEOPLE, revoke_personal_api_key,
        "Revoke a personal API key (yours, or as an admin any member's): refused everywhere within a second.",
    )  # fmt: skip
    create_service_token: NewApiKey = guarded(
        Access.ORG_ADMINS, create_service_token, "A service token for publishing domain events; shown once."
    )
    revoke_service_token: ApiKey = guarded(
        Access.ORG_ADMINS, revoke_service_token, "Revoke a service token: refused everywhere within a second."
    )
    create_ingestion_key: NewApiKey = guarded(
        Access.ORG_ADMINS, create_ingestion_key, "A write-only ingestion key for beacons and servers; shown once."
    )
    revoke_ingestion_key: ApiKey = guarded(
        Access.ORG_ADMINS, revoke_ingestion_key, "Revoke an ingestion key: /track refuses it everywhere within a second."
    )
