"""What every money report shares: whose money it covers (`Scope`, `money_scope`), the runner
base it extends (`MoneyReport`), currencies (ISO 4217 codes, minor-unit digits, conversion
into the reporting currency), per-currency totals (`add_to`, `changes`) and report buckets
(`clipped_buckets`).

The costs, P&L, platform and financial reports build on it too; the revenue domain never
imports them (costs imports revenue, not the reverse).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

from app.auth import Viewer, profile_or_organization
from app.database import connection
from app.errors import NotFound
from app.runners import QueryRunner
from app.timebuckets import Grain, TimeRange, bucket_starts, resolve_range

R = TypeVar("R")

# ISO 4217 minor-unit digits that are not 2 (conversion needs them: 1 JPY has no cents).
MINOR_DIGITS = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0, "UGX": 0,
    "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3, "CLF": 4, "UYW": 4,
}  # fmt: skip
MONEY_REFUSAL = "organization-wide money reports need an organization admin or platform admin token"
CURRENCY_RE = re.compile(r"[A-Z]{3}")


def minor_digits(currency: str) -> int:
    return MINOR_DIGITS.get(currency, 2)


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose money a report covers: an organization, or one of its profiles."""

    organization_id: uuid.UUID
    profile_id: uuid.UUID | None
    timezone: str
    reporting_currency: str | None
    rates: dict[str, Decimal]


async def money_scope(*, viewer: Viewer, profile_id: Any = None, organization_id: Any = None) -> Scope:
    """The tenant (app.auth decides who may read it) and what its money is counted in."""
    org, pid = await profile_or_organization(
        viewer, profile_id=profile_id, organization_id=organization_id, refusal=MONEY_REFUSAL
    )
    async with connection() as conn:
        row = await conn.fetchrow("SELECT timezone, reporting_currency FROM organizations WHERE id = $1", org)
        rates = await conn.fetch("SELECT currency, rate FROM exchange_rates WHERE organization_id = $1", org)
    if row is None:
        raise NotFound("organization not found", field="organizationId")
    return Scope(org, pid, row["timezone"], row["reporting_currency"], {r["currency"]: r["rate"] for r in rates})


def convert(amounts: Mapping[str, int], scope: Scope) -> tuple[int | None, list[str]]:
    """The sum of per-currency totals in the reporting currency, or None with the currencies
    lacking a rate. Rule: each currency's total is converted once, exactly (Decimal), and
    rounded half-to-even to the reporting currency's minor unit; the rounded values are added."""
    target = scope.reporting_currency
    if target is None:
        return None, []
    missing = sorted(c for c in amounts if c != target and c not in scope.rates)
    if missing:
        return None, missing
    total = 0
    for currency, amount in amounts.items():
        rate = Decimal(1) if currency == target else scope.rates[currency]
        exact = Decimal(amount) * rate * Decimal(10) ** (minor_digits(target) - minor_digits(currency))
        total += int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return total, []


def clipped_buckets(span: TimeRange, grain: Grain) -> tuple[list[datetime], list[datetime]]:
    """Report buckets as [start, end) pairs clipped to the range (the first and last may be partial)."""
    starts = bucket_starts(span, grain)
    ends = [*starts[1:], span.end]
    return [max(s, span.start) for s in starts], [min(e, span.end) for e in ends]


class MoneyReport(QueryRunner[Scope, TimeRange, R]):
    """A money report of one profile (profile_id) or one organization (organization_id) over
    a range (time_range): the scope is `money_scope`'s, the plan the range in its zone."""

    async def scope(self) -> Scope:
        return await money_scope(
            viewer=self.viewer, profile_id=self.inputs.get("profile_id"), organization_id=self.inputs.get("organization_id")
        )

    def plan(self, scope: Scope) -> TimeRange:
        return resolve_range(self.inputs["time_range"], scope.timezone)


def add_to(totals: dict[str, int], currency: str, amount: int) -> None:
    totals[currency] = totals.get(currency, 0) + amount


@dataclass(frozen=True, slots=True)
class MoneyChange:
    currency: str
    amount_minor: int
    percent: float | None  # None when the previous period had nothing in this currency


def changes(current: Mapping[str, int], previous: Mapping[str, int]) -> list[MoneyChange]:
    """Per currency: the difference to the previous period, and in percent of it."""
    out = []
    for currency in sorted(current.keys() | previous.keys()):
        now, before = current.get(currency, 0), previous.get(currency, 0)
        percent = round((now - before) * 100 / abs(before), 2) if before else None
        out.append(MoneyChange(currency, now - before, percent))
    return out
