"""The host platform's failed webhooks (webhook.failed events) as the API shows them."""

from __future__ import annotations

from datetime import datetime

import strawberry

from schema.common import ResolvedRange


@strawberry.type(description="One failed webhook of the host platform, as its webhook.failed event reported it.")
class HostWebhookFailure:
    organization_id: strawberry.ID = strawberry.field(description="The organization that reported it.")
    event_id: str = strawberry.field(description="The webhook.failed event's id.")
    occurred_at: datetime = strawberry.field(description="When the delivery failed.")
    endpoint: str = strawberry.field(description="The URL (or name) the host platform called.")
    event_type: str | None = strawberry.field(description="What the webhook carried, if reported.")
    status_code: int | None = strawberry.field(description="The receiver's HTTP status; null when no answer came.")
    error: str | None = strawberry.field(description="The error reported, if any.")
    attempt: int | None = strawberry.field(description="Which attempt this was (attempt n of maxAttempts), if reported.")
    max_attempts: int | None = strawberry.field(description="Attempts the host platform allows, if reported.")


@strawberry.type(description="Failures of one endpoint.")
class HostWebhookEndpointCount:
    endpoint: str = strawberry.field(description="The endpoint.")
    count: int = strawberry.field(description="Its failures in the range.")


@strawberry.type(description="Failures with one HTTP status.")
class HostWebhookStatusCount:
    status_code: int | None = strawberry.field(description="The status; null for failures without an HTTP answer.")
    count: int = strawberry.field(description="Failures with it in the range.")


@strawberry.type(description="Failures with one error text.")
class HostWebhookErrorCount:
    error: str = strawberry.field(description="The error as reported.")
    count: int = strawberry.field(description="Failures with it in the range.")


@strawberry.type(description="The host platform's failed webhooks in a range.")
class HostWebhookFailures:
    organization_id: strawberry.ID | None = strawberry.field(description="The organization; null for every organization.")
    range: ResolvedRange = strawberry.field(description="The range read, after presets were resolved.")
    count: int = strawberry.field(description="webhook.failed events in the range.")
    by_endpoint: list[HostWebhookEndpointCount] = strawberry.field(description="Per endpoint, most failures first.")
    by_status_code: list[HostWebhookStatusCount] = strawberry.field(description="Per HTTP status, most failures first.")
    by_error: list[HostWebhookErrorCount] = strawberry.field(description="Per error text (failures that reported one), most first.")
    recent: list[HostWebhookFailure] = strawberry.field(description="The most recent failures, newest first.")
