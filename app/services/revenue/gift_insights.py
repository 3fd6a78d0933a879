"""Who gives gifts and how views turn into gifts: donor demographics and the gift funnel.

- Donors of a range are the distinct customers (the ledger's visitor id of the buyer) of the
  gift sales in it, to the profile or, organization-wide, to any of its profiles; refunded
  gifts were bought, so they count. A donor is *new* when they bought no gift in that scope
  before the range, *returning* otherwise. Their country and device are those of their first
  gift event in the range (first touch); a donor counts once per group.
- The gift funnel is the insights funnel (ORDERED) from a profile view to a gift purchase
  within the conversion window: of the profile, with profileId (the same profile at both
  steps), or of any profile of the organization.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.auth import Viewer, profile_or_organization
from app.database import connection
from app.errors import BadInput
from app.services.insights.funnels import MAX_WINDOW_SECONDS, FunnelResult, FunnelRunner, FunnelSpec, funnel_spec
from app.services.insights.grammar import EventMatcher, FilterOperator, PropertyFilter, PropertySource
from app.services.insights.query import InsightScope
from app.services.revenue.money import MoneyReport, Scope
from app.timebuckets import RangeSpec, TimeRange
from app.vocabulary import GIFT_PURCHASED, PROFILE_VIEWED

DEFAULT_GIFT_WINDOW_SECONDS = 7 * 86400

_DONORS = """
WITH sales AS (
    SELECT t.customer_id, t.event_id, t.occurred_at
    FROM transactions t
    WHERE t.organization_id = $1 AND ($2::uuid IS NULL OR t.profile_id = $2) AND t.type = 'gift'
      AND t.status IN ('completed', 'refunded') AND NOT t.is_refund AND t.customer_id IS NOT NULL
      AND t.occurred_at >= $3 AND t.occurred_at < $4
), firsts AS (
    SELECT DISTINCT ON (customer_id) customer_id, event_id, occurred_at, count(*) OVER (PARTITION BY customer_id) AS gifts
    FROM sales ORDER BY customer_id, occurred_at, event_id
)
SELECT f.customer_id, f.gifts, e.country::text AS country, e.device_type,
       EXISTS (
           SELECT 1 FROM transactions p
           WHERE p.organization_id = $1 AND ($2::uuid IS NULL OR p.profile_id = $2) AND p.type = 'gift'
             AND p.status IN ('completed', 'refunded') AND NOT p.is_refund AND p.customer_id = f.customer_id
             AND p.occurred_at < $3
       ) AS returning
FROM firsts f
LEFT JOIN events e ON e.organization_id = $1 AND e.occurred_at = f.occurred_at AND e.event_id = f.event_id
"""


@dataclass(slots=True)
class DonorGroup:
    value: str | None  # None: the gift event carried no country / device
    donors: int = 0
    new_donors: int = 0
    gifts: int = 0


@dataclass(frozen=True, slots=True)
class GiftDonors:
    range: TimeRange
    donors: int
    new_donors: int
    returning_donors: int
    by_country: list[DonorGroup] = field(default_factory=list)
    by_device: list[DonorGroup] = field(default_factory=list)


class GiftDonorsQuery(MoneyReport[GiftDonors]):
    """Donors of a range, new and returning, by country and by device (one row per donor read)."""

    kind = "gift_donors"

    async def fetch(self, scope: Scope, span: TimeRange) -> list[dict[str, Any]]:
        async with connection() as conn:
            rows = await conn.fetch(_DONORS, scope.organization_id, scope.profile_id, span.start, span.end)
        return [dict(r) for r in rows]

    def calculate(self, scope: Scope, span: TimeRange, found: list[dict[str, Any]]) -> GiftDonors:
        new = sum(1 for d in found if not d["returning"])
        return GiftDonors(
            range=span, donors=len(found), new_donors=new, returning_donors=len(found) - new,
            by_country=groups(found, "country"), by_device=groups(found, "device_type"),
        )  # fmt: skip


def groups(donors: list[dict[str, Any]], key: str) -> list[DonorGroup]:
    """Donors per value of `key`, most donors first (then by value, missing last)."""
    by_value: dict[str | None, DonorGroup] = {}
    for donor in donors:
        group = by_value.setdefault(donor[key], DonorGroup(donor[key]))
        group.donors += 1
        group.new_donors += 0 if donor["returning"] else 1
        group.gifts += donor["gifts"]
    return sorted(by_value.values(), key=lambda g: (-g.donors, g.value is None, g.value or ""))


async def gift_donors(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec
) -> GiftDonors:
    return await GiftDonorsQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range
    ).run()


# --------------------------------------------------------------------------- the gift funnel


def gift_funnel_spec(profile_id: Any, window_seconds: int | None) -> FunnelSpec:
    """Profile view, then gift purchase, of one profile (or of any, without one)."""
    filters: tuple[PropertyFilter, ...] = ()
    if profile_id is not None:
        filters = (PropertyFilter(PropertySource.DIMENSION, "profile_id", FilterOperator.EQUALS, str(profile_id), "profileId"),)
    steps = [EventMatcher(PROFILE_VIEWED, filters), EventMatcher(GIFT_PURCHASED, filters)]
    window = DEFAULT_GIFT_WINDOW_SECONDS if window_seconds is None else window_seconds
    if not 1 <= window <= MAX_WINDOW_SECONDS:
        raise BadInput(f"the conversion window is 1 to {MAX_WINDOW_SECONDS} seconds (365 days)", field="conversionWindowSeconds")
    return funnel_spec(steps=steps, window_seconds=window)


class GiftFunnelRunner(FunnelRunner):
    """The funnel runner for a profile's provider as well as its organization's admins: the
    scope is the profile's (or the administered organization's), not the insights' admins only."""

    kind = "gift_funnel"

    async def scope(self) -> InsightScope:
        org, _ = await profile_or_organization(
            self.viewer, profile_id=self.inputs.get("profile_id"), organization_id=self.inputs.get("organization_id")
        )
        async with connection() as conn:
            timezone = await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", org)
        return InsightScope(org, timezone)


async def gift_funnel(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec,
    window_seconds: int | None = None,
) -> FunnelResult:  # fmt: skip
    spec = gift_funnel_spec(profile_id, window_seconds)
    return await GiftFunnelRunner(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range, spec=spec
    ).run()

