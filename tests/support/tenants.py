"""Tenants made through the organizations service: an organization with two profiles, an
ingestion key and a token per role. Tests never share data through a tenant: each test
that writes gets its own, which is also how production isolates customers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from app.auth import Role, issue_token
from app.settings import Settings


@dataclass
class Tenant:
    organization: Any
    profile: Any
    other_profile: Any
    ingestion_key: str
    admin_token: str
    org_admin_token: str
    provider_token: str
    service_token: str
    viewer_token: str
    users: dict[str, uuid.UUID]  # the account behind each person's token, by role

    @property
    def org_id(self) -> str:
        return str(self.organization.id)

    @property
    def profile_id(self) -> str:
        return str(self.profile.id)


async def make_tenant(settings: Settings, *, timezone: str = "UTC", name: str | None = None) -> Tenant:
    """A new organization in the database `settings` names (initialised by the caller)."""
    from app.services import organizations as orgs

    org = await orgs.create_organization(name=name or f"Org {uuid.uuid4().hex[:8]}", timezone=timezone)
    profile = await orgs.create_profile(organization=org, name="Ada Provider")
    other = await orgs.create_profile(organization=org, name="Bea Creator")
    key = await orgs.create_ingestion_key(organization=org, name="test")
    users = await _people(org.id, profile.id)

    def token(role: Role, **claims: Any) -> str:
        return issue_token(role=role, settings=settings, user_id=users.get(role.value), **claims)

    return Tenant(
        organization=org,
        profile=profile,
        other_profile=other,
        ingestion_key=key.raw,
        admin_token=token(Role.ADMIN, organization_id=None),
        org_admin_token=token(Role.ORG_ADMIN, organization_id=org.id),
        provider_token=token(Role.PROVIDER, organization_id=org.id, profile_id=profile.id),
        service_token=issue_token(role=Role.SERVICE, organization_id=org.id, settings=settings),
        viewer_token=token(Role.VIEWER, organization_id=org.id),
        users=users,
    )


async def _people(org_id: uuid.UUID, profile_id: uuid.UUID) -> dict[str, uuid.UUID]:
    """An account per person's role, without a password (tests that sign in make their own),
    so the tokens are a person's, as a sign-in's are."""
    from app.database import connection

    users = {role: uuid.uuid4() for role in ("admin", "org_admin", "provider", "viewer")}
    async with connection() as conn:
        await conn.executemany(
            "INSERT INTO users (id, email, name, is_platform_admin) VALUES ($1, $2, $3, $4)",
            [(uid, f"{role.replace('_', '-')}-{uid.hex[:12]}@tenant.test", role, role == "admin") for role, uid in users.items()],
        )
        await conn.executemany(
            "INSERT INTO memberships (organization_id, user_id, role, profile_id) VALUES ($1, $2, $3, $4)",
            [(org_id, users[r], r, profile_id if r == "provider" else None) for r in ("org_admin", "provider", "viewer")],
        )
    return users
