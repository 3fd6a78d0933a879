"""Viewer, organizations and profiles."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import organizations as service
from resolvers.common import guarded, viewer_of
from schema.organizations import Organization, Profile, ProfileKind, ViewerInfo


def to_organization(org: Any) -> Organization:
    return Organization(id=strawberry.ID(str(org.id)), slug=org.slug, name=org.name, timezone=org.timezone, currency=org.currency)


def to_profile(profile: Any) -> Profile:
    return Profile(
        id=strawberry.ID(str(profile.id)),
        organization_id=strawberry.ID(str(profile.organization_id)),
        slug=profile.slug,
        name=profile.name,
        kind=ProfileKind(profile.kind),
    )


def viewer(info: Info) -> ViewerInfo:
    who = viewer_of(info)
    return ViewerInfo(
        role=who.role.value if who.role else None,
        organization_id=strawberry.ID(str(who.organization_id)) if who.organization_id else None,
        profile_id=strawberry.ID(str(who.profile_id)) if who.profile_id else None,
    )


async def organizations(info: Info) -> list[Organization]:
    return [to_organization(o) for o in await service.visible_organizations(viewer=viewer_of(info))]


async def profiles(
    info: Info,
    organization_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this organization's profiles (admins).")] = None,
    limit: Annotated[int, strawberry.argument(description="At most this many (1..500).")] = 100,
) -> list[Profile]:
    import uuid

    from app.errors import BadInput

    org = None
    if organization_id is not None:
        try:
            org = uuid.UUID(str(organization_id))
        except ValueError as exc:
            raise BadInput("organizationId is not a valid id", field="organizationId") from exc
    found = await service.visible_profiles(viewer=viewer_of(info), organization_id=org, limit=limit)
    return [to_profile(p) for p in found]


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The organizations domain's reads, merged into the root by schema.root."""

    viewer: ViewerInfo = guarded(Access.ANYONE, viewer, "Who the current credential is.")
    organizations: list[Organization] = guarded(
        Access.READERS, organizations,
        "Organizations you may see: all for platform admins, yours otherwise.",
    )
    profiles: list[Profile] = guarded(Access.READERS, profiles, "Profiles you may see, by name.")
