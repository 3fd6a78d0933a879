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
    return Tenant(
        organization=org,
        profile=profile,
        other_profile=other,
        ingestion_key=key.raw,
        admin_token=issue_token(role=Role.ADMIN, organization_id=None, settings=settings),
        org_admin_token=issue_token(role=Role.ORG_ADMIN, organization_id=org.id, settings=settings),
        provider_token=issue_token(role=Role.PROVIDER, organization_id=org.id, profile_id=profile.id, settings=settings),
        service_token=issue_token(role=Role.SERVICE, organization_id=org.id, settings=settings),
    )
