"""Whose marketplace a report reads, and the runner base every marketplace report extends.

Marketplace reports read every service and customer of an organization: its admins and
read-only viewers (their own organization) and platform admins (naming it) may read them;
providers and ingestion keys are refused, and a foreign organization id answers NOT_FOUND
(app.auth's one scope mechanism)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from app.auth import Viewer, administered_organization
from app.database import connection
from app.errors import BadInput
from app.runners import QueryRunner

P = TypeVar("P")
R = TypeVar("R")
REFUSAL = "marketplace reports read every service and customer of an organization: they need an organization token"
FILTER_MAX_CHARS = 128


@dataclass(frozen=True, slots=True)
class MarketplaceScope:
    organization_id: uuid.UUID
    timezone: str


async def marketplace_scope(*, viewer: Viewer, organization_id: Any) -> MarketplaceScope:
    org = await administered_organization(viewer, organization_id, refusal=REFUSAL)
    async with connection() as conn:
        timezone = await conn.fetchval("SELECT timezone FROM organizations WHERE id = $1", org)
    return MarketplaceScope(org, timezone)


class MarketplaceRunner(QueryRunner[MarketplaceScope, P, R], Generic[P, R]):
    """A report over one organization's marketplace; its inputs carry `organization_id`."""

    max_age: ClassVar[float] = 30.0

    async def scope(self) -> MarketplaceScope:
        return await marketplace_scope(viewer=self.viewer, organization_id=self.inputs.get("organization_id"))


def check_filter(value: str | None, field: str) -> str | None:
    """A service id or category to filter by: the customer's own text, as sent in events."""
    if value is None:
        return None
    if not value.strip() or len(value) > FILTER_MAX_CHARS or not value.isprintable():
        raise BadInput(f"{field} must be printable text of 1 to {FILTER_MAX_CHARS} characters", field=field)
    return value


def check_limit(limit: int, most: int, field: str = "limit") -> int:
    if not 1 <= limit <= most:
        raise BadInput(f"{field} must be from 1 to {most}", field=field)
    return limit
