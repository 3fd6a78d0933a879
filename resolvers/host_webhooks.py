"""The host platform's failed webhooks (thin: call the service, map)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import host_webhooks as service
from resolvers.common import RangeArg, guarded, optional_id, to_range_spec, to_resolved_range, viewer_of
from schema.host_webhooks import (
    HostWebhookEndpointCount,
    HostWebhookErrorCount,
    HostWebhookFailure,
    HostWebhookFailures,
    HostWebhookStatusCount,
)

OrgArg = Annotated[
    strawberry.ID | None,
    strawberry.argument(description="Only this organization (platform admins; none: every organization). Org admins: theirs."),
]


def to_failure(failure: service.HostWebhookFailure) -> HostWebhookFailure:
    return HostWebhookFailure(
        organization_id=strawberry.ID(str(failure.organization_id)), event_id=failure.event_id,
        occurred_at=failure.occurred_at, endpoint=failure.endpoint, event_type=failure.event_type,
        status_code=failure.status_code, error=failure.error, attempt=failure.attempt, max_attempts=failure.max_attempts,
    )  # fmt: skip


async def host_webhook_failures(
    info: Info, time_range: RangeArg, organization_id: OrgArg = None,
    recent: Annotated[int, strawberry.argument(description="How many of the most recent failures to list (0..100).")] = 20,
) -> HostWebhookFailures:  # fmt: skip
    found = await service.host_webhook_failures(
        viewer=viewer_of(info), organization_id=organization_id, time_range=to_range_spec(time_range), recent=recent
    )
    return HostWebhookFailures(
        organization_id=optional_id(found.organization_id),
        range=to_resolved_range(found.time_range), count=found.count,
        by_endpoint=[HostWebhookEndpointCount(endpoint=e, count=n) for e, n in found.by_endpoint],
        by_status_code=[HostWebhookStatusCount(status_code=s, count=n) for s, n in found.by_status_code],
        by_error=[HostWebhookErrorCount(error=e, count=n) for e, n in found.by_error],
        recent=[to_failure(f) for f in found.recent],
    )  # fmt: skip


@strawberry.type
class Query:
    """The host platform's webhooks, merged into the root by schema.root."""

    host_webhook_failures: HostWebhookFailures = guarded(
        Access.ORG_ADMINS, host_webhook_failures,
        "The host platform's failed webhooks (webhook.failed events) in the range: how many, by endpoint, by HTTP status,"
        " by error, and the most recent.",
    )  # fmt: skip
