"""Who is asking: JWTs for people and services, keys for ingestion, people and services,
and browsers' session cookies.

Every service call takes the `Viewer` built here and scopes its query with the helpers at
the bottom of this module; a foreign id answers NOT_FOUND, never another tenant's data.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import jwt

from app.errors import BadInput, Forbidden, NotFound, Unauthenticated
from app.settings import Settings, get_settings

KEY_PREFIX = "pgk_"  # ingestion keys (write-only)
PERSONAL_KEY_PREFIX = "pga_"  # personal API keys: act as their user
SERVICE_KEY_PREFIX = "pgs_"  # service tokens: publish domain events
SESSION_COOKIE_PREFIX = "pgc_"  # a browser's session cookie
SESSION_COOKIE = "pulsegraph_session"  # HttpOnly: scripts never see it
CSRF_COOKIE = "pulsegraph_csrf"  # readable: the console echoes it in CSRF_HEADER
CSRF_HEADER = "x-csrf-token"
KEY_CACHE_SECONDS = 30.0
TOKEN_CACHE_SIZE = 1024


class Role(str, Enum):
    ADMIN = "admin"  # the platform operator: every organization
    ORG_ADMIN = "org_admin"  # one organization
    PROVIDER = "provider"  # one profile in one organization
    SERVICE = "service"  # a backend publishing domain events for one organization
    VIEWER = "viewer"  # one organization's reports, read-only


@dataclass(frozen=True)
class Viewer:
    subject: str
    role: Role | None
    organization_id: uuid.UUID | None
    profile_id: uuid.UUID | None = None
    ingestion_key_id: uuid.UUID | None = None
    token_id: str | None = None  # the JWT's id (`jti`), which revocation names
    user_id: uuid.UUID | None = None  # a signed-in person (their token, cookie or personal key)
    session_id: str | None = None  # the sign-in behind a token or cookie: revoking it refuses both
    api_key_id: uuid.UUID | None = None  # a personal API key or service token

    @property
    def is_authenticated(self) -> bool:
        return self.role is not None or self.ingestion_key_id is not None

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def can_read(self) -> bool:
        return self.role in (Role.ADMIN, Role.ORG_ADMIN, Role.PROVIDER, Role.VIEWER)

    @property
    def credential(self) -> str:
        """The kind of credential, as Access declarations name it."""
        if self.ingestion_key_id is not None:
            return "ingestion_key"
        return self.role.value if self.role is not None else "anonymous"

    @property
    def revocation_handles(self) -> tuple[str, ...]:
        """The names under which revoking something refuses this viewer: its token, its
        session, its key (app.revocation hands these to open websockets)."""
        handles = [self.token_id] if self.token_id else []
        if self.session_id:
            handles.append(f"session:{self.session_id}")
        if self.api_key_id:
            handles.append(f"api_key:{self.api_key_id}")
        return tuple(handles)

    @property
    def actor(self) -> tuple[str, str]:
        """Who did it and as what, for audit trails."""
        return self.subject, self.role.value if self.role is not None else "unknown"


ANONYMOUS = Viewer(subject="anonymous", role=None, organization_id=None)


class Access(Enum):
    """Who may call a GraphQL field, declared next to it (`resolvers.common.guarded`) and stated
    in its description. The services enforce it through this module's scope functions (which
    also narrow each credential to its own tenant: a foreign id answers NOT_FOUND);
    tests/test_access.py tries every credential on every field against its declaration."""

    # value: (the credentials admitted, as test names them; the text in the description)
    ANYONE = (frozenset({"anonymous", "ingestion_key", "provider", "viewer", "org_admin", "service", "admin"}), "anyone")
    INGESTERS = (frozenset({"ingestion_key", "org_admin", "service"}), "ingestion keys, service and organization admin tokens")
    PUBLISHERS = (frozenset({"org_admin", "service"}), "service and organization admin tokens")
    READERS = (
        frozenset({"provider", "viewer", "org_admin", "admin"}),
        "providers (their profile), viewers and organization admins (their organization), platform admins",
    )
    ORG_READERS = (
        frozenset({"viewer", "org_admin", "admin"}),
        "viewers and organization admins (their organization), platform admins",
    )
    SIGNED_IN = (
        frozenset({"provider", "viewer", "org_admin", "service", "admin"}),
        "any token or session (its own)",
    )
    PEOPLE = (
        frozenset({"provider", "viewer", "org_admin", "admin"}),
        "signed-in people (their own; organization admins their organization's, platform admins any)",
    )
    MEMBERS = (frozenset({"provider", "viewer", "org_admin"}), "signed-in members of the organization (their own)")
    COST_KEEPERS = (
        frozenset({"provider", "org_admin", "admin"}),
        "providers (their own profile's costs), organization admins (their organization), platform admins",
    )
    ORG_ADMINS = (frozenset({"org_admin", "admin"}), "organization admins (their organization), platform admins")
    PLATFORM_ADMINS = (frozenset({"admin"}), "platform admins")

    @property
    def admits(self) -> frozenset[str]:
        return self.value[0]

    @property
    def text(self) -> str:
        return f"Access: {self.value[1]}."

    def refuses_read_only(self, viewer: Viewer) -> bool:
        """A viewer role reaches its organization as far as an admin does, but only to read:
        the scope functions below narrow it to its tenant, this refuses what it may not call."""
        return viewer.role is Role.VIEWER and "viewer" not in self.admits


# -- tokens -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str  # the `jti` claim: what `pulsegraph token revoke --jti` takes
    expires_at: int  # the `exp` claim, seconds since the epoch


def issue_token(
    *,
    role: Role,
    organization_id: uuid.UUID | None,
    profile_id: uuid.UUID | None = None,
    subject: str | None = None,
    ttl_seconds: int | None = None,
    settings: Settings | None = None,
    user_id: uuid.UUID | None = None,
) -> str:
    """Sign a JWT; the claims carry the tenant so that no request needs a user lookup."""
    return mint_token(
        role=role, organization_id=organization_id, profile_id=profile_id, subject=subject,
        ttl_seconds=ttl_seconds, settings=settings, user_id=user_id,
    ).token  # fmt: skip


def mint_token(
    *,
    role: Role,
    organization_id: uuid.UUID | None,
    profile_id: uuid.UUID | None = None,
    subject: str | None = None,
    ttl_seconds: int | None = None,
    settings: Settings | None = None,
    user_id: uuid.UUID | None = None,
    session_id: str | None = None,
) -> IssuedToken:
    """`issue_token` with the token's id and expiry, which an operator needs to revoke it."""
    settings = settings or get_settings()
    if role is Role.PROVIDER and profile_id is None:
        raise ValueError("a provider token needs a profile")
    if role is not Role.ADMIN and organization_id is None:
        raise ValueError(f"a {role.value} token needs an organization")
    now = int(time.time())
    token_id = str(uuid.uuid4())
    expires = now + (ttl_seconds or settings.jwt_ttl_seconds)
    claims: dict[str, object] = {
        "sub": subject or (f"user:{user_id}" if user_id else f"{role.value}:{uuid.uuid4()}"),
        "role": role.value,
        "iss": settings.jwt_issuer,
        "iat": now,
        "nbf": now,
        "exp": expires,
        "jti": token_id,
    }
    if organization_id is not None:
        claims["org"] = str(organization_id)
    if profile_id is not None:
        claims["profile"] = str(profile_id)
    if user_id is not None:
        claims["uid"] = str(user_id)
    if session_id is not None:
        claims["sid"] = session_id
    token = jwt.encode(claims, settings.jwt_secret, algorithm="HS256")
    return IssuedToken(token=token, token_id=token_id, expires_at=expires)


def token_id_of(token: str, claims: dict[str, object]) -> str:
    """The id revocation names: the `jti`, or for tokens minted before tokens had one, a
    hash of the whole token (still unique, and known to whoever holds the token)."""
    jti = claims.get("jti")
    if isinstance(jti, str) and jti:
        return jti
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:32]


# (signing secret, issuer, token) -> (its `exp`, its viewer). Keyed by the settings that
# verified it, so a token stops working as soon as the secret or issuer changes.
_token_cache: dict[tuple[str, str, str], tuple[int, Viewer]] = {}
_clock: Callable[[], float] = time.time  # the wall clock `exp` is compared with; tests move it

# Revoked credentials this process knows of, filled by app.revocation's watcher from the
# table every process and the CLI write to: token id -> its `exp`, ingestion key id -> until
# when a key cache could still hold it (math.inf: not known). Checked on every request,
# cache hits included, so they stay plain dict lookups.
_revoked_tokens: dict[str, float] = {}
_revoked_keys: dict[uuid.UUID, float] = {}  # ingestion keys, personal API keys, service tokens
_revoked_sessions: dict[str, float] = {}


def viewer_from_token(token: str, settings: Settings | None = None) -> Viewer:
    """Verify signature, algorithm, issuer and validity window, and that the token is not
    revoked; refuse anything else.

    A client sends the same token with every request, and verifying it (PyJWT checks every
    character of its base64, then the HMAC, then the claims) cost ~140 µs, some 5% of a
    small report. A verified token is remembered until its `exp`, which every reuse checks
    as PyJWT would, as it checks revocation; tokens that fail are never remembered."""
    settings = settings or get_settings()
    key = (settings.jwt_secret, settings.jwt_issuer, token)
    cached = _token_cache.get(key)
    if cached is not None:
        if _clock() >= cached[0]:
            _token_cache.pop(key, None)
            raise Unauthenticated("token has expired")
        if is_revoked(cached[1]):
            _token_cache.pop(key, None)
            raise Unauthenticated("token has been revoked")
        return cached[1]
    expires, viewer = verified_token(token, settings)
    if is_revoked(viewer):
        raise Unauthenticated("token has been revoked")
    if len(_token_cache) >= TOKEN_CACHE_SIZE:
        _token_cache.pop(next(iter(_token_cache)), None)  # the oldest
    _token_cache[key] = (expires, viewer)
    return viewer


def verified_token(token: str, settings: Settings) -> tuple[int, Viewer]:
    """The token's `exp` and viewer, or Unauthenticated with the reason. Revocation is the
    caller's to check."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            issuer=settings.jwt_issuer,
            options={"require": ["exp", "iat", "sub", "role"]},
        )
        role = Role(claims["role"])
        org = uuid.UUID(claims["org"]) if claims.get("org") else None
        profile = uuid.UUID(claims["profile"]) if claims.get("profile") else None
        user = uuid.UUID(claims["uid"]) if claims.get("uid") else None
        session = str(claims["sid"]) if claims.get("sid") else None
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise Unauthenticated("token is not valid yet") from exc
    except (jwt.InvalidTokenError, ValueError, KeyError) as exc:
        raise Unauthenticated("token is invalid") from exc
    if role is not Role.ADMIN and org is None:
        raise Unauthenticated("token has no organization")
    if role is Role.PROVIDER and profile is None:
        raise Unauthenticated("provider token has no profile")
    viewer = Viewer(
        subject=str(claims["sub"]), role=role, organization_id=org, profile_id=profile,
        token_id=token_id_of(token, claims), user_id=user, session_id=session,
    )  # fmt: skip
    return int(claims["exp"]), viewer


def is_token_revoked(token_id: str | None) -> bool:
    return token_id in _revoked_tokens


def is_revoked(viewer: Viewer) -> bool:
    """Its token, its session or its key has been revoked (as far as this process knows)."""
    return (
        viewer.token_id in _revoked_tokens
        or viewer.session_id in _revoked_sessions
        or viewer.api_key_id in _revoked_keys
        or viewer.ingestion_key_id in _revoked_keys
    )


def learn_revoked_token(token_id: str, expires_at: float | None) -> None:
    """From now on this process refuses the token, cached or not."""
    _revoked_tokens[token_id] = math.inf if expires_at is None else expires_at


def learn_revoked_key(key_id: uuid.UUID, until: float | None) -> None:
    """From now on this process refuses the key, even from its key cache."""
    _revoked_keys[key_id] = math.inf if until is None else until


def learn_revoked_session(session_id: str, until: float | None) -> None:
    """From now on this process refuses the session's cookie and every token minted for it."""
    _revoked_sessions[session_id] = math.inf if until is None else until


def forget_past_revocations(now: float) -> int:
    """Drop revocations that can no longer matter: tokens past their `exp` are refused as
    expired, and no key cache holds a key longer than KEY_CACHE_SECONDS."""
    gone = 0
    for revoked in (_revoked_tokens, _revoked_keys, _revoked_sessions):
        for credential in [c for c, until in revoked.items() if until <= now]:
            del revoked[credential]  # type: ignore[arg-type]
            gone += 1
    return gone


# -- ingestion keys ---------------------------------------------------------------------


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def new_ingestion_key() -> tuple[str, str, str]:
    """(raw key shown once, lookup prefix, hash stored at rest)."""
    prefix = secrets.token_hex(6)
    raw = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(24)}"
    return raw, prefix, hash_key(raw)


_key_cache: dict[str, tuple[float, Viewer]] = {}


def _cached(raw: str, *, revoked: str = "credential has been revoked") -> Viewer | None:
    """A key or cookie this process verified lately, unless revoked since (then `revoked`)."""
    cached = _key_cache.get(raw)
    if cached is None or cached[0] <= time.monotonic():
        return None
    if is_revoked(cached[1]):
        _key_cache.pop(raw, None)
        raise Unauthenticated(revoked)
    return cached[1]


def _remember(raw: str, viewer: Viewer, seconds: float = KEY_CACHE_SECONDS) -> Viewer:
    _key_cache[raw] = (time.monotonic() + min(seconds, KEY_CACHE_SECONDS), viewer)
    return viewer


async def viewer_from_ingestion_key(raw_key: str) -> Viewer:
    """Look the key up by its prefix and compare hashes in constant time.

    Verified keys are cached briefly so a beacon's every batch does not cost a query; a
    revoked key is refused by the cache as soon as this process learns of the revocation
    (app.revocation). A lookup also records when the key was last used, at most once per
    KEY_CACHE_SECONDS per process.
    """
    if (viewer := _cached(raw_key, revoked="ingestion key is invalid or revoked")) is not None:
        return viewer
    from models.organizations import IngestionKey

    parts = raw_key.removeprefix(KEY_PREFIX).split("_", 1)
    if not raw_key.startswith(KEY_PREFIX) or len(parts) != 2:
        raise Unauthenticated("ingestion key is malformed")
    key = await IngestionKey.get_or_none(prefix=parts[0], revoked_at=None)
    if key is None or not hmac.compare_digest(key.key_hash, hash_key(raw_key)) or key.id in _revoked_keys:
        raise Unauthenticated("ingestion key is invalid or revoked")
    await IngestionKey.filter(id=key.id).update(last_used_at=datetime.now(UTC))
    viewer = Viewer(
        subject=f"key:{key.prefix}",
        role=None,
        organization_id=uuid.UUID(str(key.organization_id)),
        ingestion_key_id=key.id,
    )
    return _remember(raw_key, viewer)


# -- personal API keys, service tokens, session cookies ------------------------------------

# What each membership role may hand to a personal API key: itself, or something narrower.
GRANTABLE_ROLES: dict[Role, frozenset[Role]] = {
    Role.ORG_ADMIN: frozenset({Role.ORG_ADMIN, Role.VIEWER}),
    Role.PROVIDER: frozenset({Role.PROVIDER}),
    Role.VIEWER: frozenset({Role.VIEWER}),
}

API_KEY = """
SELECT k.organization_id, k.id, k.kind, k.key_hash, k.role, k.profile_id, k.user_id, k.revoked_at,
       m.role AS member_role, m.profile_id AS member_profile
FROM api_keys k
LEFT JOIN memberships m ON m.organization_id = k.organization_id AND m.user_id = k.user_id
WHERE k.id = $1
"""
COOKIE_SESSION = """
SELECT s.id, s.user_id, s.organization_id, s.secret_hash, s.expires_at, s.revoked_at,
       u.is_platform_admin, m.role AS member_role, m.profile_id AS member_profile
FROM auth_sessions s
JOIN users u ON u.id = s.user_id
LEFT JOIN memberships m ON m.organization_id = s.organization_id AND m.user_id = s.user_id
WHERE s.id = $1 AND s.kind = 'cookie'
"""


def new_secret_token(prefix: str, row_id: uuid.UUID) -> tuple[str, str]:
    """(token shown once, hash stored): the row's id, to find it, then a random secret."""
    raw = f"{prefix}{row_id.hex}_{secrets.token_urlsafe(32)}"
    return raw, hash_key(raw)


def row_id_of(raw: str, prefix: str) -> uuid.UUID | None:
    """The row id a `new_secret_token` token names, or None if it is not one."""
    head, _, secret = raw.removeprefix(prefix).partition("_")
    if not raw.startswith(prefix) or not secret:
        return None
    try:
        return uuid.UUID(hex=head)
    except ValueError:
        return None


async def viewer_from_api_key(raw: str) -> Viewer:
    """A personal API key acts as its user with the key's role, while the user still holds a
    role that grants it; a service token as a service of its organization."""
    from app.database import connection

    if (viewer := _cached(raw)) is not None:
        return viewer
    prefix = PERSONAL_KEY_PREFIX if raw.startswith(PERSONAL_KEY_PREFIX) else SERVICE_KEY_PREFIX
    key_id = row_id_of(raw, prefix)
    if key_id is None:
        raise Unauthenticated("API key is malformed")
    async with connection() as conn:
        row = await conn.fetchrow(API_KEY, key_id)
        if row is None or row["revoked_at"] is not None or not hmac.compare_digest(row["key_hash"], hash_key(raw)):
            raise Unauthenticated("API key is invalid or revoked")
        if (row["kind"] == "personal") != (prefix == PERSONAL_KEY_PREFIX) or key_id in _revoked_keys:
            raise Unauthenticated("API key is invalid or revoked")
        role = Role(row["role"])
        if row["kind"] == "personal" and not _still_granted(row, role):
            raise Unauthenticated("API key's owner no longer holds its role")
        await conn.execute("UPDATE api_keys SET last_used_at = now() WHERE organization_id = $1 AND id = $2",
                           row["organization_id"], key_id)  # fmt: skip
    subject = f"user:{row['user_id']}" if row["user_id"] else f"service:{key_id}"
    viewer = Viewer(
        subject=subject, role=role, organization_id=row["organization_id"], profile_id=row["profile_id"],
        user_id=row["user_id"], api_key_id=key_id,
    )  # fmt: skip
    return _remember(raw, viewer)


def _still_granted(row: Any, role: Role) -> bool:
    if row["member_role"] is None:
        return False
    member = Role(row["member_role"])
    return role in GRANTABLE_ROLES[member] and (role is not Role.PROVIDER or row["member_profile"] == row["profile_id"])


async def viewer_from_session_cookie(raw: str) -> Viewer:
    """A browser's sign-in: the session must be live and its user still a member."""
    from app.database import connection

    if (viewer := _cached(raw)) is not None:
        return viewer
    session_id = row_id_of(raw, SESSION_COOKIE_PREFIX)
    if session_id is None:
        raise Unauthenticated("session cookie is malformed")
    async with connection() as conn:
        row = await conn.fetchrow(COOKIE_SESSION, session_id)
        if row is None or row["revoked_at"] is not None or not hmac.compare_digest(row["secret_hash"] or "", hash_key(raw)):
            raise Unauthenticated("session has ended; sign in again")
        remaining = (row["expires_at"] - datetime.now(UTC)).total_seconds()
        if remaining <= 0 or str(session_id) in _revoked_sessions:
            raise Unauthenticated("session has ended; sign in again")
        await conn.execute("UPDATE auth_sessions SET last_used_at = now() WHERE id = $1", session_id)
    if row["organization_id"] is None:
        if not row["is_platform_admin"]:
            raise Unauthenticated("session has ended; sign in again")
        role, profile = Role.ADMIN, None
    elif row["member_role"] is None:
        raise Unauthenticated("you are no longer a member of this organization")
    else:
        role, profile = Role(row["member_role"]), row["member_profile"]
    viewer = Viewer(
        subject=f"user:{row['user_id']}", role=role, organization_id=row["organization_id"], profile_id=profile,
        user_id=row["user_id"], session_id=str(session_id),
    )  # fmt: skip
    return _remember(raw, viewer, remaining)


def csrf_token_for(session_id: uuid.UUID | str, settings: Settings | None = None) -> str:
    """The value a cookie session's POSTs must send in X-CSRF-Token: derived from the session
    with the server's secret, so a page on another site can neither read nor forge it."""
    secret = (settings or get_settings()).jwt_secret.encode()
    return hmac.new(secret, f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()[:40]


async def viewer_from_cookie(cookie: str, *, csrf: str | None, needs_csrf: bool) -> Viewer:
    """A browser's request signed in by its session cookie. Requests that can change
    something (POST, websocket) must echo the session's CSRF token, which a page on another
    site cannot know; without it they are refused."""
    viewer = await viewer_from_session_cookie(cookie)
    if needs_csrf and not hmac.compare_digest(csrf or "", csrf_token_for(viewer.session_id or "")):
        raise Forbidden(f"a request signed in by cookie must send the session's CSRF token in the {CSRF_HEADER} header")
    return viewer


async def viewer_from_credential(credential: str | None) -> Viewer:
    """`Bearer <jwt>`, `Bearer pgk_...` (or another key), or a bare key/JWT, as sent by
    clients and beacons."""
    if not credential:
        return ANONYMOUS
    token = credential.strip()
    if token.lower().startswith("bearer "):
        token = token[7:].strip()
    if token.startswith(KEY_PREFIX):
        return await viewer_from_ingestion_key(token)
    if token.startswith((PERSONAL_KEY_PREFIX, SERVICE_KEY_PREFIX)):
        return await viewer_from_api_key(token)
    return viewer_from_token(token)


# -- scoping: the one way every service narrows a query to what the viewer may see -------


def require_reader(viewer: Viewer) -> None:
    if not viewer.is_authenticated:
        raise Unauthenticated("sign in with a token")
    if not viewer.can_read:
        raise Forbidden("this credential can only write events")


@dataclass(frozen=True, slots=True)
class ReadScope:
    """How far a reader sees: platform admins everything (both None), organization admins
    their organization, providers their profile in it."""

    organization_id: uuid.UUID | None
    profile_id: uuid.UUID | None


def read_scope(viewer: Viewer) -> ReadScope:
    require_reader(viewer)
    if viewer.role is Role.ADMIN:
        return ReadScope(None, None)
    return ReadScope(viewer.organization_id, viewer.profile_id if viewer.role is Role.PROVIDER else None)


def require_writer(viewer: Viewer) -> uuid.UUID:
    """Any authenticated credential with an organization may write events to it."""
    if not viewer.is_authenticated:
        raise Unauthenticated("send an ingestion key or a token in the Authorization header")
    if viewer.organization_id is None:
        raise Forbidden("a platform admin token has no organization to write to")
    if viewer.role in (Role.PROVIDER, Role.VIEWER):
        raise Forbidden(f"{viewer.role.value} credentials are read-only; use an ingestion key")
    return viewer.organization_id


def require_service(viewer: Viewer) -> uuid.UUID:
    if not viewer.is_authenticated:
        raise Unauthenticated("send a service token in the Authorization header")
    if viewer.role not in (Role.SERVICE, Role.ORG_ADMIN) or viewer.organization_id is None:
        raise Forbidden("domain events need a service or organization admin token")
    return viewer.organization_id


ADMIN_REFUSAL = "this needs an organization admin token"


def administered_by(viewer: Viewer, *, refusal: str = ADMIN_REFUSAL) -> uuid.UUID | None:
    """How far an admin reaches: an organization admin, their organization; a platform
    admin, None (every organization); anyone else is refused with `refusal`."""
    require_reader(viewer)
    if viewer.role in (Role.ORG_ADMIN, Role.VIEWER):  # viewers: reads only (Access.refuses_read_only)
        assert viewer.organization_id is not None
        return viewer.organization_id
    if viewer.role is Role.ADMIN:
        return None
    raise Forbidden(refusal)


async def administered_scope(
    viewer: Viewer, organization_id: uuid.UUID | str | None, *, refusal: str = ADMIN_REFUSAL
) -> uuid.UUID | None:
    """The organization an admin asks about: organization admins their own (naming another
    is NOT_FOUND, as is an id that does not exist), platform admins the one they name, or
    None (every organization) when they name none."""
    from models.organizations import Organization

    own = administered_by(viewer, refusal=refusal)
    wanted: uuid.UUID | None = None
    if organization_id is not None:
        try:
            wanted = uuid.UUID(str(organization_id))
        except ValueError:
            raise NotFound("organization not found", field="organizationId") from None
    if own is not None:
        if wanted is not None and wanted != own:
            raise NotFound("organization not found", field="organizationId")
        return own
    if wanted is not None and not await Organization.exists(id=wanted):
        raise NotFound("organization not found", field="organizationId")
    return wanted


async def administered_organization(
    viewer: Viewer, organization_id: uuid.UUID | str | None, *, refusal: str = ADMIN_REFUSAL
) -> uuid.UUID:
    """`administered_scope` for settings of one organization: platform admins must name it."""
    org = await administered_scope(viewer, organization_id, refusal=refusal)
    if org is None:
        raise BadInput("platform admins must name the organization", field="organizationId")
    return org


async def platform_admin_scope(
    viewer: Viewer, organization_id: uuid.UUID | str | None, *, refusal: str
) -> uuid.UUID | None:
    """Platform admins only (organization admins reach no further than their own tenant, so
    they are refused): None means every organization, else the one named."""
    if administered_by(viewer, refusal=refusal) is not None:
        raise Forbidden(refusal)
    return await administered_scope(viewer, organization_id, refusal=refusal)


async def profile_or_organization(
    viewer: Viewer, *, profile_id: Any, organization_id: Any, refusal: str = ADMIN_REFUSAL
) -> tuple[uuid.UUID, uuid.UUID | None]:
    """The tenant of a report about one profile or one organization: profileId for whoever
    may read the profile (providers their own), organizationId for its admins; never both."""
    if profile_id is not None and organization_id is not None:
        raise BadInput("give profileId or organizationId, not both", field="organizationId")
    if profile_id is not None:
        profile = await readable_profile(viewer, profile_id)
        return profile.organization_id, profile.id
    return await administered_organization(viewer, organization_id, refusal=refusal), None


@dataclass(frozen=True, slots=True)
class ReadableProfile:
    """What a report needs of the profile it reads: its tenant and the zone it buckets in."""

    id: uuid.UUID
    organization_id: uuid.UUID
    timezone: str


READABLE_PROFILE = """
SELECT p.id, p.organization_id, o.timezone
FROM profiles p JOIN organizations o ON o.id = p.organization_id
WHERE p.id = $1 AND ($2::uuid IS NULL OR p.organization_id = $2::uuid)
"""


async def readable_profile(viewer: Viewer, profile_id: uuid.UUID | str) -> ReadableProfile:
    """The profile if the viewer may read it; NOT_FOUND otherwise, even if it exists.

    Every profile report and subscription starts here, so it is one indexed query on the
    pool's connection rather than an ORM query (which cost ~2 ms of a 10 ms report)."""
    from app.database import connection

    require_reader(viewer)
    try:
        pid = uuid.UUID(str(profile_id))
    except ValueError as exc:
        raise NotFound("profile not found", field="profileId") from exc
    if viewer.role is Role.PROVIDER and viewer.profile_id != pid:
        raise NotFound("profile not found", field="profileId")
    tenant = None if viewer.role is Role.ADMIN else viewer.organization_id
    async with connection() as conn:
        row = await conn.fetchrow(READABLE_PROFILE, pid, tenant)
    if row is None:
        raise NotFound("profile not found", field="profileId")
    return ReadableProfile(row["id"], row["organization_id"], row["timezone"])
