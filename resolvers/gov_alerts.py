"""Gov alerts: list, follow live, and tune the threshold (thin: viewer, call, convert)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.live_messages import GovAlertMessage
from app.services import gov_alerts as service
from app.services.accounts import audit
from resolvers.common import (
    ProfileIdArg,
    RangeArg,
    follow_profile,
    from_bus,
    guarded,
    to_range_spec,
    to_resolved_range,
    viewer_of,
)
from schema.gov_alerts import GovAlert, GovAlertList, GovAlertSettings

OrganizationArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="The organization; required for platform admins, optional (yours) for org admins."),
]


def gov_alert_of(alert: GovAlertMessage) -> GovAlert:
    """The one GovAlert mapper: listed, inside a view, and live."""
    return GovAlert(
        event_id=alert.event_id,
        profile_id=strawberry.ID(str(alert.profile_id)),
        occurred_at=alert.occurred_at,
        raised_at=alert.raised_at,
        confidence=alert.confidence,
        threshold=alert.threshold,
        network_name=alert.network_name,
        asn=alert.asn,
        country=alert.country,
        city=alert.city,
        device_type=alert.device_type,
        browser=alert.browser,
        os=alert.os,
        reasons=list(alert.reasons),
        signals=list(alert.signals),
    )


def to_settings(value: service.GovAlertSettings) -> GovAlertSettings:
    return GovAlertSettings(organization_id=strawberry.ID(str(value.organization_id)), threshold=value.threshold)


async def gov_alerts(
    info: Info,
    profile_id: ProfileIdArg,
    range_: RangeArg,
    limit: Annotated[int, strawberry.argument(description="How many, newest first (1..500).")] = 100,
) -> GovAlertList:
    result = await service.gov_alerts(
        viewer=viewer_of(info), profile_id=str(profile_id), time_range=to_range_spec(range_), limit=limit
    )
    return GovAlertList(
        profile_id=strawberry.ID(str(result.profile_id)),
        range=to_resolved_range(result.range),
        total=result.total,
        alerts=[gov_alert_of(a) for a in result.alerts],
    )


async def gov_alert_settings(info: Info, organization_id: OrganizationArg = None) -> GovAlertSettings:
    return to_settings(await service.alert_settings(viewer=viewer_of(info), organization_id=organization_id))


async def update_gov_alert_settings(
    info: Info,
    threshold: Annotated[
        float, strawberry.argument(description="Alert at or above this gov confidence (0.05..1; default 0.7).")
    ],
    organization_id: OrganizationArg = None,
) -> GovAlertSettings:
    return to_settings(
        await service.update_alert_settings(viewer=viewer_of(info), organization_id=organization_id, threshold=threshold)
    )


async def follow_gov_alerts(info: Info, profile_id: ProfileIdArg) -> AsyncGenerator[GovAlert, None]:
    convert = from_bus(GovAlertMessage, gov_alert_of)
    async for alert in follow_profile(info, profile_id, GovAlertMessage.channel_of, convert):
        yield alert


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The gov alerts domain's reads, merged into the root by schema.root."""

    gov_alerts: GovAlertList = guarded(
        Access.READERS, gov_alerts,
        "Views of a profile from government or law-enforcement networks in a range, newest first.",
    )
    gov_alert_settings: GovAlertSettings = guarded(
        Access.ORG_ADMINS, gov_alert_settings,
        "The gov-confidence threshold at which an organization's views raise alerts.",
    )


@strawberry.type
class Mutation:
    """The gov alerts domain's writes, merged into the root by schema.root."""

    update_gov_alert_settings: GovAlertSettings = guarded(
        Access.ORG_ADMINS, update_gov_alert_settings,
        "Change the gov-confidence threshold for alerts; views processed from then on use it.", audited=audit.GOV_ALERT_SETTINGS_UPDATED,
    )


@strawberry.type
class Subscription:
    """The gov alerts domain's live updates, merged into the root by schema.root."""

    gov_alerts: GovAlert = guarded(
        Access.READERS, follow_gov_alerts,
        "Each view of a profile from a government or law-enforcement network, as the worker flags it.", subscription=True,
    )
