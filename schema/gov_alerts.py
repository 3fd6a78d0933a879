"""Gov alerts: views of a profile from government or law-enforcement networks."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.common import ResolvedRange


@strawberry.type(
    description="A profile view from a government, military or law-enforcement network. Flagged, never blocked."
)
class GovAlert:
    event_id: str = strawberry.field(description="Id of the flagged view event.")
    profile_id: strawberry.ID = strawberry.field(description="The profile viewed.")
    occurred_at: datetime = strawberry.field(description="When the view happened (UTC).")
    raised_at: datetime = strawberry.field(description="When the worker checked the view and raised the alert (UTC).")
    confidence: float = strawberry.field(description="The detector's confidence in [0, 1].")
    threshold: float = strawberry.field(description="The organization's threshold when the view was checked.")
    network_name: str | None = strawberry.field(description="The network's organization, e.g. 'Ministry of Interior'.")
    asn: int | None = strawberry.field(description="The network's autonomous system number, when known.")
    country: str | None = strawberry.field(description="ISO 3166 country of the network, when known.")
    city: str | None = strawberry.field(description="City of the view from GeoIP, when known.")
    device_type: str | None = strawberry.field(description="desktop, mobile, tablet, bot or other.")
    browser: str | None = strawberry.field(description="Browser family of the view.")
    os: str | None = strawberry.field(description="Operating system family of the view.")
    reasons: list[str] = strawberry.field(description="The evidence behind the confidence, strongest first.")
    signals: list[str] = strawberry.field(description="Signals available to the check: asn-database, city-database, curated-list.")


@strawberry.type(description="A profile's gov alerts in a range, newest first.")
class GovAlertList:
    profile_id: strawberry.ID = strawberry.field(description="The profile.")
    range: ResolvedRange = strawberry.field(description="The range covered.")
    total: int = strawberry.field(description="How many alerts the range holds (the list may be cut at `limit`).")
    alerts: list[GovAlert] = strawberry.field(description="The alerts, newest first.")


@strawberry.type(description="When an organization's profile views raise gov alerts.")
class GovAlertSettings:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    threshold: float = strawberry.field(
        description="A view whose gov confidence is at or above this (0.05..1, default 0.7) raises an alert."
    )
