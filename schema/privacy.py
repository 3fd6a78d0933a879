"""Privacy: retention settings and data-subject export and deletion."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON


@strawberry.type(description="How long an organization keeps personal data.")
class PrivacySettings:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    ip_retention_days: int = strawberry.field(
        description="Raw IPs older than this are replaced by a keyed hash; 0 = raw IPs are never stored."
    )
    event_retention_days: int | None = strawberry.field(
        description="Raw events, sessions and profile events older than this are purged (rollups stay); null = kept forever."
    )
    purged_before: datetime | None = strawberry.field(
        description="Raw data before this instant has been purged; reports of older buckets come from rollups only."
    )


@strawberry.type(description="One stored event of a data subject, as stored.")
class SubjectEvent:
    event_id: str = strawberry.field(description="The event's id.")
    type: str = strawberry.field(description="Event type, e.g. profile.viewed.")
    occurred_at: datetime = strawberry.field(description="When it happened (UTC).")
    received_at: datetime = strawberry.field(description="When pulsegraph stored it (UTC).")
    profile_id: strawberry.ID | None = strawberry.field(description="The profile it concerns, if any.")
    user_id: str | None = strawberry.field(description="The userId sent with it.")
    anonymous_id: str | None = strawberry.field(description="The anonymousId sent with it.")
    visitor_id: str | None = strawberry.field(description="The visitor id derived at ingest.")
    session_id: str | None = strawberry.field(description="The session it belongs to.")
    properties: JSON = strawberry.field(description="Free-form properties sent with it.")
    amount_minor: int | None = strawberry.field(description="Money amount in minor units, for money events.")
    currency: str | None = strawberry.field(description="ISO 4217 currency, for money events.")
    engagement_ms: int | None = strawberry.field(description="Reported engagement time in milliseconds.")
    ip: str | None = strawberry.field(description="The raw IP, while within the IP retention period.")
    ip_hash: str | None = strawberry.field(description="The IP's keyed hash once the raw IP was dropped.")
    country: str | None = strawberry.field(description="ISO 3166 country looked up at ingest.")
    region: str | None = strawberry.field(description="Region looked up at ingest.")
    city: str | None = strawberry.field(description="City looked up at ingest.")
    user_agent: str | None = strawberry.field(description="The browser's user agent.")
    device_type: str | None = strawberry.field(description="Device class derived from the user agent.")
    browser: str | None = strawberry.field(description="Browser derived from the user agent.")
    os: str | None = strawberry.field(description="Operating system derived from the user agent.")
    url: str | None = strawberry.field(description="Page URL.")
    referrer: str | None = strawberry.field(description="Referrer URL.")
    utm_source: str | None = strawberry.field(description="utm_source of the visit.")
    utm_medium: str | None = strawberry.field(description="utm_medium of the visit.")
    utm_campaign: str | None = strawberry.field(description="utm_campaign of the visit.")


@strawberry.type(description="One visit of a data subject.")
class SubjectSession:
    id: str = strawberry.field(description="Session id.")
    visitor_id: str | None = strawberry.field(description="The visitor id.")
    started_at: datetime = strawberry.field(description="First event (UTC).")
    last_seen_at: datetime = strawberry.field(description="Last event (UTC).")
    event_count: int = strawberry.field(description="Events in the session.")
    landing_page: str | None = strawberry.field(description="URL of the first event.")
    referrer_domain: str | None = strawberry.field(description="Referrer domain of the first event.")
    device_type: str | None = strawberry.field(description="Device class.")
    browser: str | None = strawberry.field(description="Browser.")
    os: str | None = strawberry.field(description="Operating system.")
    country: str | None = strawberry.field(description="Country.")


@strawberry.type(description="What a profile's provider saw of a data subject.")
class SubjectProfileEvent:
    profile_id: strawberry.ID = strawberry.field(description="The profile.")
    event_id: str = strawberry.field(description="The event's id.")
    kind: str = strawberry.field(description="view, inquiry, engagement, booking, gift or subscription.")
    occurred_at: datetime = strawberry.field(description="When it happened (UTC).")
    country: str | None = strawberry.field(description="Country.")
    city: str | None = strawberry.field(description="City.")
    device_type: str | None = strawberry.field(description="Device class.")
    referrer_domain: str | None = strawberry.field(description="Referrer domain.")
    is_gov: bool = strawberry.field(description="Whether the visit came from a government network.")


@strawberry.type(description="Everything stored about one data subject (rollups are aggregates and not included).")
class SubjectData:
    organization_id: strawberry.ID = strawberry.field(description="The organization searched.")
    user_id: str | None = strawberry.field(description="The userId searched for.")
    anonymous_id: str | None = strawberry.field(description="The anonymousId searched for.")
    visitor_ids: list[str] = strawberry.field(description="Visitor ids linked to the subject.")
    events: list[SubjectEvent] = strawberry.field(description="Raw events, oldest first (at most 10,000).")
    sessions: list[SubjectSession] = strawberry.field(description="Sessions, oldest first (at most 10,000).")
    profile_events: list[SubjectProfileEvent] = strawberry.field(
        description="Profile events, oldest first (at most 10,000)."
    )
    truncated: bool = strawberry.field(description="True when a list hit its cap; delete, then export again.")


@strawberry.type(description="What a data-subject deletion removed.")
class SubjectDeletion:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    events: int = strawberry.field(description="Raw events deleted.")
    profile_events: int = strawberry.field(description="Profile events deleted.")
    sessions: int = strawberry.field(description="Sessions deleted.")
    persons: int = strawberry.field(description="Person records deleted (with their identity links and cohort memberships).")
    buyer_emails: int = strawberry.field(
        description="Ledger rows whose buyer email hash was erased (the orders stay, no longer found by that email)."
    )
