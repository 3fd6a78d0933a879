"""Retention settings and data-subject requests (thin: convert, call, map)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import privacy as service
from app.services.accounts import audit
from resolvers.common import guarded, optional_id, viewer_of
from schema.privacy import (
    PrivacySettings,
    SubjectData,
    SubjectDeletion,
    SubjectEvent,
    SubjectProfileEvent,
    SubjectSession,
)

OrganizationArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="The organization; required for platform admins, optional (yours) for org admins."),
]
UserIdArg = Annotated[str | None, strawberry.argument(description="The subject's userId, as sent with events.")]
AnonymousIdArg = Annotated[str | None, strawberry.argument(description="The subject's anonymousId, as sent with events.")]


def to_settings(value: service.PrivacySettings) -> PrivacySettings:
    return PrivacySettings(
        organization_id=strawberry.ID(str(value.organization_id)),
        ip_retention_days=value.ip_retention_days,
        event_retention_days=value.event_retention_days,
        purged_before=value.purged_before,
    )


async def privacy_settings(info: Info, organization_id: OrganizationArg = None) -> PrivacySettings:
    return to_settings(await service.organization_settings(viewer=viewer_of(info), organization_id=organization_id))


async def update_organization_settings(
    info: Info,
    organization_id: OrganizationArg = None,
    ip_retention_days: Annotated[
        int | None,
        strawberry.argument(description="Days to keep raw IPs (0..3650); 0 = never store them. Omit to keep."),
    ] = strawberry.UNSET,
    event_retention_days: Annotated[
        int | None,
        strawberry.argument(description="Days to keep raw events (31..36500); null = forever. Omit to keep."),
    ] = strawberry.UNSET,
) -> PrivacySettings:
    ip_days: Any = service.KEEP if ip_retention_days is strawberry.UNSET else ip_retention_days
    if ip_days is None:
        from app.errors import BadInput

        raise BadInput("ipRetentionDays cannot be null; send 0 to never store raw IPs", field="ipRetentionDays")
    event_days: Any = service.KEEP if event_retention_days is strawberry.UNSET else event_retention_days
    updated = await service.update_settings(
        viewer=viewer_of(info), organization_id=organization_id, ip_retention_days=ip_days, event_retention_days=event_days
    )
    return to_settings(updated)


def to_subject_event(row: dict[str, Any]) -> SubjectEvent:
    return SubjectEvent(
        event_id=row["event_id"],
        type=row["type"],
        occurred_at=row["occurred_at"],
        received_at=row["received_at"],
        profile_id=optional_id(row["profile_id"]),
        user_id=row["user_id"],
        anonymous_id=row["anonymous_id"],
        visitor_id=row["visitor_id"],
        session_id=row["session_id"],
        properties=orjson.loads(row["properties"]) if row["properties"] else {},
        amount_minor=row["amount_minor"],
        currency=row["currency"],
        engagement_ms=row["engagement_ms"],
        ip=row["ip"],
        ip_hash=row["ip_hash"],
        country=row["country"],
        region=row["region"],
        city=row["city"],
        user_agent=row["user_agent"],
        device_type=row["device_type"],
        browser=row["browser"],
        os=row["os"],
        url=row["url"],
        referrer=row["referrer"],
        utm_source=row["utm_source"],
        utm_medium=row["utm_medium"],
        utm_campaign=row["utm_campaign"],
    )


def to_subject_session(row: dict[str, Any]) -> SubjectSession:
    return SubjectSession(
        id=row["id"],
        visitor_id=row["visitor_id"],
        started_at=row["started_at"],
        last_seen_at=row["last_seen_at"],
        event_count=row["event_count"],
        landing_page=row["landing_page"],
        referrer_domain=row["referrer_domain"],
        device_type=row["device_type"],
        browser=row["browser"],
        os=row["os"],
        country=row["country"],
    )


def to_subject_profile_event(row: dict[str, Any]) -> SubjectProfileEvent:
    return SubjectProfileEvent(
        profile_id=strawberry.ID(str(row["profile_id"])),
        event_id=row["event_id"],
        kind=row["kind"],
        occurred_at=row["occurred_at"],
        country=row["country"],
        city=row["city"],
        device_type=row["device_type"],
        referrer_domain=row["referrer_domain"],
        is_gov=bool(row["is_gov"]),
    )


async def subject_data(
    info: Info, user_id: UserIdArg = None, anonymous_id: AnonymousIdArg = None, organization_id: OrganizationArg = None
) -> SubjectData:
    found = await service.export_subject(
        viewer=viewer_of(info), user_id=user_id, anonymous_id=anonymous_id, organization_id=organization_id
    )
    return SubjectData(
        organization_id=strawberry.ID(str(found.organization_id)),
        user_id=found.user_id,
        anonymous_id=found.anonymous_id,
        visitor_ids=found.visitor_ids,
        events=[to_subject_event(r) for r in found.events],
        sessions=[to_subject_session(r) for r in found.sessions],
        profile_events=[to_subject_profile_event(r) for r in found.profile_events],
        truncated=found.truncated,
    )


BuyerEmailArg = Annotated[
    str | None,
    strawberry.argument(description="The subject's email as sent in properties.buyerEmail (any case): its hash is erased."),
]


async def delete_subject_data(
    info: Info, user_id: UserIdArg = None, anonymous_id: AnonymousIdArg = None, organization_id: OrganizationArg = None,
    buyer_email: BuyerEmailArg = None,
) -> SubjectDeletion:  # fmt: skip
    done = await service.delete_subject(
        viewer=viewer_of(info), user_id=user_id, anonymous_id=anonymous_id, buyer_email=buyer_email,
        organization_id=organization_id,
    )  # fmt: skip
    return SubjectDeletion(
        organization_id=strawberry.ID(str(done.organization_id)),
        events=done.events,
        profile_events=done.profile_events,
        sessions=done.sessions,
        persons=done.persons,
        buyer_emails=done.buyer_emails,
    )


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The privacy domain's reads, merged into the root by schema.root."""

    privacy_settings: PrivacySettings = guarded(
        Access.ORG_ADMINS, privacy_settings,
        "An organization's IP and event retention.",
    )
    subject_data: SubjectData = guarded(
        Access.ORG_ADMINS, subject_data,
        "Export everything stored about one data subject, by userId and/or anonymousId.",
    )


@strawberry.type
class Mutation:
    """The privacy domain's writes, merged into the root by schema.root."""

    update_organization_settings: PrivacySettings = guarded(
        Access.ORG_ADMINS, update_organization_settings,
        "Change an organization's IP and event retention.", audited=audit.ORGANIZATION_SETTINGS_UPDATED,
    )
    delete_subject_data: SubjectDeletion = guarded(
        Access.ORG_ADMINS, delete_subject_data,
        "Delete one data subject's events, sessions, profile events and person (with its identity links and cohort "
        "memberships), and erase their buyer emails' hashes from the ledger and events (by userId, anonymousId and/or "
        "buyerEmail); rollups stay as aggregates.", audited=audit.SUBJECT_DATA_DELETED,
    )
