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

from tortoise import connections
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.transactions import in_transaction

from app.auth import Viewer, administered_organization
from app.errors import BadInput
from app.services.revenue.money import CURRENCY_RE, MONEY_REFUSAL
from models.organizations import Organization
from models.revenue import ExchangeRate as ExchangeRateRow

RATE_MAX = Decimal("1000000000000")


@dataclass(frozen=True, slots=True)
class MoneySettings:
    organization_id: uuid.UUID
    reporting_currency: str | None
    duo_split_percent: int
    rates: list[ExchangeRateRow]


async def money_settings(*, viewer: Viewer, organization_id: Any = None) -> MoneySettings:
    """Reporting currency, its exchange rates and the default duo split of an organization."""
    org = await administered_organization(viewer, organization_id, refusal=MONEY_REFUSAL)
    return await _settings(connections.get("default"), org)


async def _settings(db: BaseDBAsyncClient, org: uuid.UUID) -> MoneySettings:
    found = await Organization.get(id=org).using_db(db)
    rates = await ExchangeRateRow.filter(organization_id=org).using_db(db).order_by("currency")
    return MoneySettings(org, found.reporting_currency, found.duo_split_percent, list(rates))


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
    changes: dict[str, Any] = {}
    if clear_reporting_currency or target is not None:
        changes["reporting_currency"] = None if clear_reporting_currency else target
    if duo_split_percent is not None:
        changes["duo_split_percent"] = duo_split_percent
    async with in_transaction() as db:
        if changes:
            await Organization.filter(id=org).using_db(db).update(**changes)
        if rates is not None:
            await ExchangeRateRow.filter(organization_id=org).using_db(db).delete()
            for currency, rate in checked:
                await ExchangeRateRow.create(
                    using_db=db, organization_id=org, currency=currency, rate=rate, updated_by=viewer.subject
                )
        return await _settings(db, org)
