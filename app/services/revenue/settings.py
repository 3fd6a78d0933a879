"""Money settings of an organization: its reporting currency, the exchange rates into it
(decimal text, never floats) and the booked profile's default share of a duo booking.
Its admins (and platform admins) read and change them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg

from app.auth import Viewer, administered_organization
from app.database import connection, transaction
from app.errors import BadInput
from app.services.revenue.money import CURRENCY_RE, MONEY_REFUSAL

RATE_MAX = Decimal("1000000000000")


@dataclass(frozen=True, slots=True)
class MoneySettings:
    organization_id: uuid.UUID
    reporting_currency: str | None
    duo_split_percent: int
    rates: list[asyncpg.Record]


async def money_settings(*, viewer: Viewer, organization_id: Any = None) -> MoneySettings:
    """Reporting currency, its exchange rates and the default duo split of an organization."""
    org = await administered_organization(viewer, organization_id, refusal=MONEY_REFUSAL)
    async with connection() as conn:
        return await _settings(conn, org)


async def _settings(conn: asyncpg.Connection, org: uuid.UUID) -> MoneySettings:
    row = await conn.fetchrow("SELECT reporting_currency, duo_split_percent FROM organizations WHERE id = $1", org)
    rates = await conn.fetch(
        "SELECT currency, rate, updated_by, updated_at FROM exchange_rates WHERE organization_id = $1 ORDER BY currency", org
    )
    return MoneySettings(org, row["reporting_currency"], row["duo_split_percent"], rates)


def _currency(value: str, name: str) -> str:
    if not isinstance(value, str) or not CURRENCY_RE.fullmatch(value):
        raise BadInput(f"{name} must be an ISO 4217 code such as EUR", field=name)
    return value


def _rate(value: str, index: int) -> Decimal:
    """Decimal text, never a float: '0.0067' for JPY -> USD."""
    try:
        rate = Decimal(value)
    except (ArithmeticError, ValueError, TypeError):
        rate = Decimal(0)
    if not rate.is_finite() or not 0 < rate < RATE_MAX or rate != rate.quantize(Decimal("1e-12")):
        raise BadInput("rate must be a positive decimal with at most 12 decimal places", field=f"rates.{index}.rate")
    return rate


async def update_money_settings(
    *,
    viewer: Viewer,
    organization_id: Any = None,
    reporting_currency: str | None = None,
    clear_reporting_currency: bool = False,
    duo_split_percent: int | None = None,
    rates: Sequence[tuple[str, str]] | None = None,
) -> MoneySettings:
    """Change what is given; `rates` (currency, units of the reporting currency per unit) replaces the whole set."""
    org = await administered_organization(viewer, organization_id, refusal=MONEY_REFUSAL)
    target = _currency(reporting_currency, "reportingCurrency") if reporting_currency is not None else None
    if duo_split_percent is not None and not 1 <= duo_split_percent <= 99:
        raise BadInput("duoSplitPercent must be from 1 to 99", field="duoSplitPercent")
    checked = [(_currency(c, f"rates.{i}.currency"), _rate(r, i)) for i, (c, r) in enumerate(rates or [])]
    if len({c for c, _ in checked}) != len(checked):
        raise BadInput("each currency may have one rate", field="rates")
    async with transaction() as conn:
        await conn.execute(
            "UPDATE organizations SET reporting_currency = CASE WHEN $2 THEN NULL ELSE COALESCE($3, reporting_currency) END,"
            " duo_split_percent = COALESCE($4, duo_split_percent) WHERE id = $1",
            org, clear_reporting_currency, target, duo_split_percent,
        )  # fmt: skip
        if rates is not None:
            await conn.execute("DELETE FROM exchange_rates WHERE organization_id = $1", org)
            await conn.executemany(
                "INSERT INTO exchange_rates (organization_id, currency, rate, updated_by) VALUES ($1, $2, $3, $4)",
                [(org, c, r, viewer.subject) for c, r in checked],
            )
        return await _settings(conn, org)
