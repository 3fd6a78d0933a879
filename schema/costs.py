"""Costs: entries with an audit trail, and their sums by category."""

from __future__ import annotations

from datetime import date as Date
from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from schema.common import Money, ResolvedRange


@strawberry.enum(description="What a cost was for.")
class CostCategory(Enum):
    MARKETING = strawberry.enum_value("marketing", description="Ads, campaigns, promotion.")
    SUBSCRIPTIONS = strawberry.enum_value("subscriptions", description="Recurring services.")
    TOOLS = strawberry.enum_value("tools", description="Software and equipment.")
    PLATFORM_FEES = strawberry.enum_value("platform_fees", description="Fees paid to platforms outside the ledger.")
    OTHER = strawberry.enum_value("other", description="Anything else.")


@strawberry.type(description="A cost entry.")
class Cost:
    id: strawberry.ID = strawberry.field(description="The entry.")
    organization_id: strawberry.ID = strawberry.field(description="Its organization.")
    profile_id: strawberry.ID | None = strawberry.field(description="The profile it belongs to, if any.")
    category: CostCategory = strawberry.field(description="What it was for.")
    amount: Money = strawberry.field(description="How much (positive).")
    date: Date = strawberry.field(description="Local date it was incurred on (counts in the bucket its midnight starts).")
    description: str = strawberry.field(description="Free text.")
    created_by: str = strawberry.field(description="Who entered it.")
    created_at: datetime = strawberry.field(description="When.")
    updated_by: str = strawberry.field(description="Who changed it last.")
    updated_at: datetime = strawberry.field(description="When.")
    campaign: str | None = strawberry.field(
        description="The UTM campaign (utm_campaign) it was spent on; null: untagged. campaignPerformance counts it."
    )


@strawberry.type(description="One change to a cost entry.")
class CostAuditEntry:
    cost_id: strawberry.ID = strawberry.field(description="The entry.")
    action: str = strawberry.field(description="created, updated or deleted.")
    actor: str = strawberry.field(description="Who (token subject).")
    actor_role: str = strawberry.field(description="Their role.")
    before: JSON | None = strawberry.field(description="The entry before (null when created).")
    after: JSON | None = strawberry.field(description="The entry after (null when deleted).")
    at: datetime = strawberry.field(description="When.")


@strawberry.type(description="Costs of one category in one currency.")
class CategoryCost:
    category: CostCategory = strawberry.field(description="The category.")
    amount: Money = strawberry.field(description="Their sum.")


@strawberry.type(description="Costs over a range by category, per currency.")
class CostSummary:
    range: ResolvedRange = strawberry.field(description="The range covered.")
    total: list[Money] = strawberry.field(description="All costs per currency.")
    by_category: list[CategoryCost] = strawberry.field(description="Per category and currency.")
    entries: int = strawberry.field(description="Entries counted.")
