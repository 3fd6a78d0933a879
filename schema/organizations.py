"""Tenants and profiles as viewers see them."""

from __future__ import annotations

from enum import Enum

import strawberry


@strawberry.enum(description="What a profile stands for (set when it is created).")
class ProfileKind(Enum):
    PROVIDER = strawberry.enum_value("provider", description="A service provider's public profile (the default).")
    CREATOR = strawberry.enum_value("creator", description="A creator selling their work.")
    BRAND = strawberry.enum_value("brand", description="A brand running campaigns.")


@strawberry.type(description="A tenant: a platform or marketplace using pulsegraph.")
class Organization:
    id: strawberry.ID = strawberry.field(description="Organization id (UUID).")
    slug: str = strawberry.field(description="Short unique name used on the command line.")
    name: str = strawberry.field(description="Display name.")
    timezone: str = strawberry.field(description="IANA time zone that reports bucket days in.")
    currency: str = strawberry.field(description="Default ISO 4217 currency of the organization.")


@strawberry.type(description="A provider's or creator's public profile, whose audience is measured.")
class Profile:
    id: strawberry.ID = strawberry.field(description="Profile id (UUID); send it as `profileId` with events.")
    organization_id: strawberry.ID = strawberry.field(description="The organization the profile belongs to.")
    slug: str = strawberry.field(description="Short name, unique within the organization.")
    name: str = strawberry.field(description="Display name.")
    kind: ProfileKind = strawberry.field(description="What the profile stands for.")


@strawberry.type(description="Who the current credential is.")
class ViewerInfo:
    role: str | None = strawberry.field(description="admin, org_admin, provider or service; null for ingestion keys.")
    organization_id: strawberry.ID | None = strawberry.field(description="The tenant the credential acts for.")
    profile_id: strawberry.ID | None = strawberry.field(description="For provider tokens: the profile they own.")
