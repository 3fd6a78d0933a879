"""Cost entries, their audit trail and summary (thin: convert, call, map)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import costs as service
from app.services.accounts import audit
from resolvers.common import RangeArg, guarded, to_range_spec, to_resolved_range, viewer_of
from resolvers.revenue import AdminOrganizationArg, OrganizationArg, ProfileArg, money
from schema.common import Money
from schema.costs import CategoryCost, Cost, CostAuditEntry, CostCategory, CostSummary

CampaignArg = Annotated[
    str | None,
    strawberry.argument(description="The UTM campaign (utm_campaign) it was spent on, up to 200 characters; omit: untagged."),
]
CostIdArg = Annotated[strawberry.ID, strawberry.argument(name="id", description="The cost entry.")]


def _id(value: object) -> strawberry.ID:
    return strawberry.ID(str(value))


def to_cost(cost: service.Cost) -> Cost:
    return Cost(
        id=_id(cost.id), organization_id=_id(cost.organization_id),
        profile_id=_id(cost.profile_id) if cost.profile_id else None, category=CostCategory(cost.category),
        amount=Money(amount_minor=cost.amount_minor, currency=cost.currency), date=cost.incurred_on,
        description=cost.description, created_by=cost.created_by, created_at=cost.created_at,
        updated_by=cost.updated_by, updated_at=cost.updated_at, campaign=cost.campaign,
    )  # fmt: skip


async def costs(
    info: Info, range_: RangeArg, profile_id: ProfileArg = None, organization_id: OrganizationArg = None
) -> list[Cost]:
    found = await service.list_costs(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id, time_range=to_range_spec(range_)
    )
    return [to_cost(c) for c in found.costs]


async def cost_summary(
    info: Info, range_: RangeArg, profile_id: ProfileArg = None, organization_id: OrganizationArg = None
) -> CostSummary:
    found = await service.list_costs(
        viewer=viewer_of(info), profile_id=profile_id, organization_id=organization_id, time_range=to_range_spec(range_)
    )
    totals: dict[str, int] = {}
    for (_, currency), amount in found.by_category().items():
        totals[currency] = totals.get(currency, 0) + amount
    return CostSummary(
        range=to_resolved_range(found.range), total=money(totals), entries=len(found.costs),
        by_category=[
            CategoryCost(category=CostCategory(category), amount=Money(amount_minor=amount, currency=currency))
            for (category, currency), amount in found.by_category().items()
        ],
    )  # fmt: skip


async def cost_audit(
    info: Info,
    organization_id: AdminOrganizationArg = None,
    cost_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this entry's changes.")] = None,
) -> list[CostAuditEntry]:
    entries = await service.cost_audit(viewer=viewer_of(info), organization_id=organization_id, cost_id=cost_id)
    return [
        CostAuditEntry(cost_id=_id(e.cost_id), action=e.action, actor=e.actor, actor_role=e.actor_role,
                       before=e.before, after=e.after, at=e.at)  # fmt: skip
        for e in entries
    ]


async def create_cost(
    info: Info,
    category: Annotated[CostCategory, strawberry.argument(description="What it was for.")],
    amount_minor: Annotated[int, strawberry.argument(description="Positive integer minor units.")],
    currency: Annotated[str, strawberry.argument(description="ISO 4217 code.")],
    date_: Annotated[date, strawberry.argument(name="date", description="Local date it was incurred on.")],
    organization_id: AdminOrganizationArg = None,
    profile_id: Annotated[strawberry.ID | None, strawberry.argument(description="The profile it belongs to, if any.")] = None,
    description: Annotated[str, strawberry.argument(description="Free text (up to 1,000 characters).")] = "",
    campaign: CampaignArg = None,
) -> Cost:
    cost = await service.create_cost(
        viewer=viewer_of(info), organization_id=organization_id, profile_id=profile_id, category=category.value,
        amount_minor=amount_minor, currency=currency, incurred_on=date_, description=description, campaign=campaign,
    )  # fmt: skip
    return to_cost(cost)


async def update_cost(
    info: Info,
    cost_id: CostIdArg,
    category: Annotated[CostCategory | None, strawberry.argument(description="New category; omit to keep.")] = None,
    amount_minor: Annotated[int | None, strawberry.argument(description="New amount; omit to keep.")] = None,
    currency: Annotated[str | None, strawberry.argument(description="New currency; omit to keep.")] = None,
    date_: Annotated[date | None, strawberry.argument(name="date", description="New date; omit to keep.")] = None,
    description: Annotated[str | None, strawberry.argument(description="New description; omit to keep.")] = None,
    profile_id: Annotated[
        strawberry.ID | None, strawberry.argument(description="New profile; omit to keep (see detachProfile).")
    ] = None,
    detach_profile: Annotated[bool, strawberry.argument(description="true: the entry belongs to no profile any more.")] = False,
    campaign: Annotated[
        str | None, strawberry.argument(description="New UTM campaign; omit to keep, empty to untag.")
    ] = None,
) -> Cost:
    changes = {"profile_id": None} if detach_profile else ({"profile_id": profile_id} if profile_id is not None else {})
    cost = await service.update_cost(
        viewer=viewer_of(info), cost_id=cost_id, category=category.value if category else None,
        amount_minor=amount_minor, currency=currency, incurred_on=date_, description=description, campaign=campaign,
        **changes,
    )  # fmt: skip
    return to_cost(cost)


async def delete_cost(info: Info, cost_id: CostIdArg) -> strawberry.ID:
    return _id(await service.delete_cost(viewer=viewer_of(info), cost_id=cost_id))


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The costs domain's reads, merged into the root by schema.root."""

    costs: list[Cost] = guarded(
        Access.READERS, costs,
        "Cost entries of a range, by date (a profile's: those carrying it).",
    )
    cost_summary: CostSummary = guarded(Access.READERS, cost_summary, "Costs over a range by category, per currency.")
    cost_audit: list[CostAuditEntry] = guarded(
        Access.ORG_ADMINS, cost_audit,
        "Who created, changed or deleted which cost entries, oldest first.",
    )


@strawberry.type
class Mutation:
    """The costs domain's writes, merged into the root by schema.root."""

    create_cost: Cost = guarded(
        Access.COST_KEEPERS, create_cost,
        "Record a cost entry (audited). A provider records their own profile's costs only.", audited=audit.COST_CREATED,
    )
    update_cost: Cost = guarded(
        Access.COST_KEEPERS, update_cost,
        "Change a cost entry (audited with before and after); a provider, their own profile's.", audited=audit.COST_UPDATED,
    )
    delete_cost: strawberry.ID = guarded(
        Access.COST_KEEPERS, delete_cost,
        "Delete a cost entry; the audit trail keeps it. Returns its id. A provider, their own profile's.",
        audited=audit.COST_DELETED,
    )
