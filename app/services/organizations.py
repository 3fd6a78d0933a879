"""Tenants, profiles, ingestion keys: creation, listing and key revocation for operators,
scoped listing for viewers."""

from __future__ import annotations

import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from app.auth import KEY_PREFIX, Viewer, hash_key, new_ingestion_key, read_scope
from app.database import transaction
from app.errors import BadInput, NotFound
from app.revocation import INGESTION_KEY, key_row_expiry, record_revocation
from models.organizations import IngestionKey, Organization, Profile

SLUG_RE = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    slug = SLUG_RE.sub("-", name.lower()).strip("-")
    return slug[:64] or "org"


def validate_timezone(tz: str) -> str:
    """IANA names only: reports bucket days by this zone, so a typo would shift every day."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise BadInput(f"timezone {tz!r} is not an IANA time zone (e.g. Europe/Berlin)", field="timezone") from exc
    if tz not in available_timezones() and tz != "UTC":
        raise BadInput(f"timezone {tz!r} is not an IANA time zone (e.g. Europe/Berlin)", field="timezone")
    return tz


async def create_organization(*, name: str, timezone: str = "UTC", currency: str = "USD", slug: str | None = None) -> Organization:
    """Create a tenant; the slug defaults to the name and must be unique."""
    if not name.strip():
        raise BadInput("name must not be empty", field="name")
    if not re.fullmatch(r"[A-Z]{3}", currency):
        raise BadInput(f"currency {currency!r} is not an ISO 4217 code", field="currency")
    slug = slug or slugify(name)
    if await Organization.exists(slug=slug):
        raise BadInput(f"an organization with slug {slug!r} already exists", field="name")
    return await Organization.create(
        id=uuid.uuid4(), slug=slug, name=name.strip(), timezone=validate_timezone(timezone), currency=currency
    )


async def find_organization(ref: str) -> Organization:
    """By slug or id, as operators type it on the command line."""
    org = await Organization.get_or_none(slug=ref)
    if org is None:
        try:
            org = await Organization.get_or_none(id=uuid.UUID(ref))
        except ValueError:
            org = None
    if org is None:
        raise NotFound(f"organization {ref!r} not found", field="org")
    return org


PROFILE_KINDS = ("provider", "creator", "brand")


async def create_profile(*, organization: Organization, name: str, slug: str | None = None, kind: str = "provider") -> Profile:
    """A profile stands for a provider (the default), a creator or a brand; platform KPIs count each kind."""
    if not name.strip():
        raise BadInput("name must not be empty", field="name")
    if kind not in PROFILE_KINDS:
        raise BadInput(f"kind must be one of {', '.join(PROFILE_KINDS)}", field="kind")
    slug = slug or slugify(name)[:128]
    if await Profile.exists(organization_id=organization.id, slug=slug):
        raise BadInput(f"a profile with slug {slug!r} already exists in {organization.slug}", field="name")
    return await Profile.create(id=uuid.uuid4(), organization=organization, slug=slug, name=name.strip(), kind=kind)


async def find_profile(organization: Organization, ref: str) -> Profile:
    profile = await Profile.get_or_none(organization_id=organization.id, slug=ref)
    if profile is None:
        try:
            profile = await Profile.get_or_none(organization_id=organization.id, id=uuid.UUID(ref))
        except ValueError:
            profile = None
    if profile is None:
        raise NotFound(f"profile {ref!r} not found in organization {organization.slug}", field="profile")
    return profile


@dataclass(frozen=True)
class NewIngestionKey:
    key: IngestionKey
    raw: str  # shown once; only its hash is stored


async def create_ingestion_key(*, organization: Organization, name: str = "") -> NewIngestionKey:
    raw, prefix, key_hash = new_ingestion_key()
    key = await IngestionKey.create(
        id=uuid.uuid4(), organization=organization, name=name, prefix=prefix, key_hash=key_hash
    )
    return NewIngestionKey(key=key, raw=raw)


async def list_organizations() -> list[Organization]:
    """Every tenant, for operators on the command line."""
    return await Organization.all().order_by("slug")


async def list_profiles(organization: Organization | None = None) -> list[Profile]:
    """The profiles of one organization, or of all of them; each with its organization."""
    query = Profile.all().prefetch_related("organization")
    if organization is not None:
        query = query.filter(organization_id=organization.id)
    return await query.order_by("organization__slug", "slug")


async def list_ingestion_keys(organization: Organization) -> list[IngestionKey]:
    """An organization's keys, revoked ones included; the raw keys are not stored."""
    return await IngestionKey.filter(organization_id=organization.id).order_by("created_at", "id")


def key_hint(key: IngestionKey) -> str:
    """How the raw key starts: enough to tell which key a beacon sends, useless to use."""
    return f"{KEY_PREFIX}{key.prefix}_..."


async def find_ingestion_key(ref: str) -> IngestionKey:
    """By id, or by the raw key itself (which must match its stored hash)."""
    ref = ref.strip()
    key: IngestionKey | None = None
    if ref.startswith(KEY_PREFIX):
        parts = ref.removeprefix(KEY_PREFIX).split("_", 1)
        key = await IngestionKey.get_or_none(prefix=parts[0]) if len(parts) == 2 else None
        if key is not None and not hmac.compare_digest(key.key_hash, hash_key(ref)):
            key = None
        if key is None:
            raise NotFound("KEY is not an ingestion key of this server", field="key")
        return key
    try:
        key = await IngestionKey.get_or_none(id=uuid.UUID(ref))
    except ValueError:
        raise BadInput(f"KEY {ref!r} is neither a key id nor a pgk_... key", field="key") from None
    if key is None:
        raise NotFound(f"ingestion key {ref!r} not found", field="key")
    return key


@dataclass(frozen=True)
class RevokedKey:
    key: IngestionKey
    already_revoked: bool


async def revoke_ingestion_key(ref: str, *, revoked_by: str) -> RevokedKey:
    """Refuse the key from now on: in the database at once, on every API process (which
    may hold it in their key caches) once their revocation watchers read the new row."""
    key = await find_ingestion_key(ref)
    now = datetime.now(UTC)
    async with transaction() as conn:
        revoked_at = await conn.fetchval(
            "UPDATE ingestion_keys SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING revoked_at",
            key.id, now,
        )  # fmt: skip
        await record_revocation(
            conn, kind=INGESTION_KEY, credential_id=str(key.id), expires_at=key_row_expiry(now), revoked_by=revoked_by
        )
    already = key.revoked_at is not None
    key.revoked_at = revoked_at
    return RevokedKey(key=key, already_revoked=already)


async def visible_organizations(*, viewer: Viewer) -> list[Organization]:
    """Admins see every tenant, everyone else their own."""
    scope = read_scope(viewer)
    query = Organization.all() if scope.organization_id is None else Organization.filter(id=scope.organization_id)
    return await query.order_by("name")


async def visible_profiles(*, viewer: Viewer, organization_id: uuid.UUID | None = None, limit: int = 100) -> list[Profile]:
    """Providers see their profile, org admins their tenant's, admins any tenant's."""
    scope = read_scope(viewer)
    query = Profile.all()
    if scope.organization_id is not None:
        query = query.filter(organization_id=scope.organization_id)
    if scope.profile_id is not None:
        query = query.filter(id=scope.profile_id)
    if organization_id is not None:
        query = query.filter(organization_id=organization_id)
    return await query.order_by("name").limit(min(max(limit, 1), 500))
