"""Costs: entries organization admins create, change and delete (every change audited), and
what they add up to. A provider keeps the costs of their own profile the same way (for its
P&L); the organization's other costs, and those of other profiles, stay with its admins.

A cost has a category (marketing | subscriptions | tools | platform_fees | other), a
positive amount in integer minor units with its ISO 4217 currency, the local date it was
incurred on, a description, optionally the profile it belongs to (for a profile's P&L), and
optionally the UTM campaign it was spent on (campaignPerformance's tagged cost).
A cost counts in a range when the local midnight that starts its date lies in the range:
the same rule that puts it in a report bucket.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import orjson
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import RawSQL
from tortoise.transactions import in_transaction

from app.auth import Role, Viewer, administered_by, administered_organization
from app.database import connection
from app.errors import BadInput, Forbidden, NotFound
from app.services.revenue.contract import BIGINT_MAX
from app.services.revenue.money import CURRENCY_RE, MONEY_REFUSAL, MoneyReport, Scope
from app.timebuckets import RangeSpec, TimeRange, local_date, local_midnight
from models.costs import Cost as CostRow
from models.costs import CostAudit
from models.organizations import Profile

CATEGORIES = ("marketing", "subscriptions", "tools", "platform_fees", "other")
DESCRIPTION_MAX_CHARS = 1000
CAMPAIGN_MAX_CHARS = 200
COLUMNS = (
    "organization_id, id, profile_id, category, amount_minor, currency, incurred_on, description,"
    " created_by, created_at, updated_by, updated_at, campaign"
)


@dataclass(frozen=True, slots=True)
class Cost:
    id: uuid.UUID
    organization_id: uuid.UUID
    profile_id: uuid.UUID | None
    category: str
    amount_minor: int
    currency: str
    incurred_on: date
    description: str
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    campaign: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    cost_id: uuid.UUID
    action: str
    actor: str
    actor_role: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    at: datetime


def _cost(row: Mapping[str, Any] | CostRow) -> Cost:
    """From a row of the range query, or from the stored model the changes work on."""
    if isinstance(row, CostRow):
        return Cost(**{k: getattr(row, k) for k in Cost.__slots__})
    return Cost(**{k: row[k] for k in Cost.__slots__})


def _snapshot(cost: Cost) -> dict[str, Any]:
    """The audited form of an entry: its editable fields, JSON-ready."""
    return {
        "profileId": str(cost.profile_id) if cost.profile_id else None, "category": cost.category,
        "amountMinor": cost.amount_minor, "currency": cost.currency, "incurredOn": cost.incurred_on.isoformat(),
        "description": cost.description, "campaign": cost.campaign,
    }  # fmt: skip


# --------------------------------------------------------------------------- validation


def _category(value: str) -> str:
    if value not in CATEGORIES:
        raise BadInput(f"category must be one of {', '.join(CATEGORIES)}", field="category")
    return value


def _amount(value: int) -> int:
    if type(value) is not int or not 1 <= value <= BIGINT_MAX:
        raise BadInput("amountMinor must be a positive integer in minor units (e.g. cents)", field="amountMinor")
    return value


def _currency(value: str) -> str:
    if not isinstance(value, str) or not CURRENCY_RE.fullmatch(value):
        raise BadInput("currency must be an ISO 4217 code such as EUR", field="currency")
    return value


def _date(value: date) -> date:
    if not isinstance(value, date) or not date(1970, 1, 1) <= value <= date(2199, 12, 31):
        raise BadInput("date must be a calendar date between 1970 and 2199", field="date")
    return value


def _description(value: str) -> str:
    text = value.strip() if isinstance(value, str) else None
    if text is None or len(text) > DESCRIPTION_MAX_CHARS or not text.isprintable():
        raise BadInput(f"description must be printable text of at most {DESCRIPTION_MAX_CHARS} characters", field="description")
    return text


def _campaign(value: str | None) -> str | None:
    """The utm_campaign value sessions carry, as sent; blank means untagged."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or len(value) > CAMPAIGN_MAX_CHARS or not value.isprintable():
        raise BadInput(f"campaign must be printable text of at most {CAMPAIGN_MAX_CHARS} characters", field="campaign")
    return value


async def _profile(db: BaseDBAsyncClient, org: uuid.UUID, value: Any) -> uuid.UUID | None:
    """A cost's profile must be one of its organization's."""
    if value is None:
        return None
    try:
        pid = uuid.UUID(str(value))
    except ValueError:
        raise NotFound("profile not found", field="profileId") from None
    if not await Profile.filter(organization_id=org, id=pid).using_db(db).exists():
        raise NotFound("profile not found", field="profileId")
    return pid


# --------------------------------------------------------------------------- changes


async def create_cost(
    *,
    viewer: Viewer,
    organization_id: Any = None,
    profile_id: Any = None,
    category: str,
    amount_minor: int,
    currency: str,
    incurred_on: date,
    description: str = "",
    campaign: str | None = None,
) -> Cost:
    """Record a cost; the creation is audited with the entry as created."""
    actor, role = viewer.actor
    fields = {
        "category": _category(category), "amount_minor": _amount(amount_minor), "currency": _currency(currency),
        "incurred_on": _date(incurred_on), "description": _description(description),
        "campaign": _campaign(campaign),
    }  # fmt: skip
    async with in_transaction() as db:
        if viewer.role is Role.PROVIDER:
            org, pid = _providers_own(viewer, organization_id), _providers_profile(viewer, profile_id)
        else:
            org = await administered_organization(viewer, organization_id, refusal=MONEY_REFUSAL)
            pid = await _profile(db, org, profile_id)
        stored = await CostRow.create(
            using_db=db, organization_id=org, id=uuid.uuid4(), profile_id=pid, created_by=actor, updated_by=actor, **fields
        )
        cost = _cost(await CostRow.get(organization_id=org, id=stored.id).using_db(db))  # with the database's timestamps
        await _audit(db, cost, "created", actor, role, None, _snapshot(cost))
    return cost


def _providers_own(viewer: Viewer, organization_id: Any) -> uuid.UUID:
    """A provider's organization; naming another one finds nothing."""
    own = viewer.organization_id
    if own is None or viewer.profile_id is None:
        raise Forbidden("a provider token without a profile keeps no costs")
    if organization_id is not None and str(organization_id) != str(own):
        raise NotFound("organization not found", field="organizationId")
    return own


def _providers_profile(viewer: Viewer, profile_id: Any) -> uuid.UUID:
    """A provider's cost belongs to their profile: another profile is not found, and an
    organization-wide cost is not theirs to keep."""
    if profile_id is None:
        raise BadInput("a provider's costs belong to their profile: name it, or leave profileId out", field="profileId")
    if str(profile_id) != str(viewer.profile_id):
        raise NotFound("profile not found", field="profileId")
    return viewer.profile_id  # type: ignore[return-value]


async def _visible_cost(db: BaseDBAsyncClient, viewer: Viewer, cost_id: Any) -> CostRow:
    """The entry, locked for the change, if the viewer administers its organization or, for a
    provider, if it is their profile's."""
    try:
        cid = uuid.UUID(str(cost_id))
    except ValueError:
        raise NotFound("cost not found", field="id") from None
    if viewer.role is Role.PROVIDER:
        query = CostRow.filter(organization_id=_providers_own(viewer, None), profile_id=viewer.profile_id, id=cid)
    else:
        own = administered_by(viewer, refusal=MONEY_REFUSAL)
        query = CostRow.filter(id=cid) if own is None else CostRow.filter(organization_id=own, id=cid)
    found = await query.select_for_update().using_db(db).first()
    if found is None:
        raise NotFound("cost not found", field="id")
    return found


_UNSET: Any = object()


async def update_cost(
    *,
    viewer: Viewer,
    cost_id: Any,
    profile_id: Any = _UNSET,
    category: str | None = None,
    amount_minor: int | None = None,
    currency: str | None = None,
    incurred_on: date | None = None,
    description: str | None = None,
    campaign: str | None = None,
) -> Cost:
    """Change what is given (None keeps; profileId None detaches, an empty campaign untags);
    audited with before and after."""
    actor, role = viewer.actor
    async with in_transaction() as db:
        stored = await _visible_cost(db, viewer, cost_id)
        old = _cost(stored)
        if profile_id is _UNSET:
            pid = old.profile_id
        elif viewer.role is Role.PROVIDER:
            pid = _providers_profile(viewer, profile_id)
        else:
            pid = await _profile(db, old.organization_id, profile_id)
        changes = {
            "profile_id": pid,
            "category": _category(category) if category is not None else old.category,
            "amount_minor": _amount(amount_minor) if amount_minor is not None else old.amount_minor,
            "currency": _currency(currency) if currency is not None else old.currency,
            "incurred_on": _date(incurred_on) if incurred_on is not None else old.incurred_on,
            "description": _description(description) if description is not None else old.description,
            "campaign": _campaign(campaign) if campaign is not None else old.campaign,
        }  # fmt: skip
        await CostRow.filter(organization_id=old.organization_id, id=old.id).using_db(db).update(
            **changes, updated_by=actor, updated_at=RawSQL("now()")
        )
        cost = _cost(await CostRow.get(organization_id=old.organization_id, id=old.id).using_db(db))
        await _audit(db, cost, "updated", actor, role, _snapshot(old), _snapshot(cost))
    return cost


async def delete_cost(*, viewer: Viewer, cost_id: Any) -> uuid.UUID:
    """Delete an entry; the audit trail keeps it as it was."""
    actor, role = viewer.actor
    async with in_transaction() as db:
        old = _cost(await _visible_cost(db, viewer, cost_id))
        await CostRow.filter(organization_id=old.organization_id, id=old.id).using_db(db).delete()
        await _audit(db, old, "deleted", actor, role, _snapshot(old), None)
    return old.id


async def _audit(
    db: BaseDBAsyncClient, cost: Cost, action: str, actor: str, role: str, before: Any, after: Any
) -> None:
    await CostAudit.create(
        using_db=db, organization_id=cost.organization_id, cost_id=cost.id, action=action, actor=actor,
        actor_role=role, before=before, after=after,
    )  # fmt: skip


async def cost_audit(*, viewer: Viewer, organization_id: Any = None, cost_id: Any = None) -> list[AuditEntry]:
    """An organization's cost changes, oldest first (one entry's when cost_id is given)."""
    org = await administered_organization(viewer, organization_id, refusal=MONEY_REFUSAL)
    cid = None
    if cost_id is not None:
        try:
            cid = uuid.UUID(str(cost_id))
        except ValueError:
            raise NotFound("cost not found", field="costId") from None
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT cost_id, action, actor, actor_role, before, after, at FROM cost_audit"
            " WHERE organization_id = $1 AND ($2::uuid IS NULL OR cost_id = $2) ORDER BY id",
            org, cid,
        )  # fmt: skip
    return [
        AuditEntry(
            cost_id=r["cost_id"], action=r["action"], actor=r["actor"], actor_role=r["actor_role"],
            before=orjson.loads(r["before"]) if r["before"] else None,
            after=orjson.loads(r["after"]) if r["after"] else None, at=r["at"],
        )  # fmt: skip
        for r in rows
    ]


# --------------------------------------------------------------------------- reading


def date_span(span: TimeRange) -> tuple[date, date]:
    """The first and last local dates whose midnight lies in [start, end)."""
    first = local_date(span.start, span.timezone)
    if local_midnight(first, span.timezone) < span.start:
        first += timedelta(days=1)
    last = local_date(span.end, span.timezone)
    if local_midnight(last, span.timezone) >= span.end:
        last -= timedelta(days=1)
    return first, last


async def costs_in(scope: Scope, span: TimeRange) -> list[Cost]:
    """Costs counted in a range: the organization's, or those carrying the scope's profile."""
    first, last = date_span(span)
    async with connection() as conn:
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM costs WHERE organization_id = $1 AND ($2::uuid IS NULL OR profile_id = $2)"
            " AND incurred_on >= $3 AND incurred_on <= $4 ORDER BY incurred_on, created_at, id",
            scope.organization_id, scope.profile_id, first, last,
        )  # fmt: skip
    return [_cost(r) for r in rows]


@dataclass(frozen=True, slots=True)
class CostList:
    scope: Scope
    range: TimeRange
    costs: list[Cost]

    def by_category(self) -> dict[tuple[str, str], int]:
        """(category, currency) -> total, sorted."""
        totals: dict[tuple[str, str], int] = {}
        for cost in self.costs:
            key = (cost.category, cost.currency)
            totals[key] = totals.get(key, 0) + cost.amount_minor
        return dict(sorted(totals.items()))


class CostListQuery(MoneyReport[CostList]):
    """Cost entries of a range, by date (a profile's: those carrying it)."""

    kind = "costs"

    async def fetch(self, scope: Scope, span: TimeRange) -> CostList:
        return CostList(scope=scope, range=span, costs=await costs_in(scope, span))


async def list_costs(
    *, viewer: Viewer, profile_id: Any = None, organization_id: Any = None, time_range: RangeSpec
) -> CostList:
    return await CostListQuery(
        viewer=viewer, profile_id=profile_id, organization_id=organization_id, time_range=time_range
    ).run()
