"""An organization's fraud profile: its commerce health over a range (orders, refunds,
payment attempts and failures, account age) and its alerts still being worked on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from app.auth import Viewer, administered_organization
from app.database import connection
from app.errors import NotFound
from app.runners import QueryRunner, Tenant
from app.services.fraud.alerts import ACTIVE
from app.services.fraud.rules import FRAUD_REFUSAL, RISKS
from app.timebuckets import RangeSpec, TimeRange, resolve_range, utcnow
from app.vocabulary import ORDER_PAID, ORDER_REFUNDED, PAYMENT_FAILED


@dataclass(frozen=True, slots=True)
class FraudProfile:
    organization_id: uuid.UUID
    range: TimeRange
    orders: int
    refunds: int
    payment_attempts: int
    failed_payments: int
    account_age_days: int
    open_alerts: dict[str, int]

    @property
    def refund_rate(self) -> float:
        return self.refunds / self.orders if self.orders else 0.0

    @property
    def failed_payment_rate(self) -> float:
        return self.failed_payments / self.payment_attempts if self.payment_attempts else 0.0


_PROFILE_COUNTS = f"""
SELECT count(*) FILTER (WHERE type = '{ORDER_PAID}') AS orders,
       count(*) FILTER (WHERE type = '{ORDER_REFUNDED}') AS refunds,
       count(*) FILTER (WHERE type = '{PAYMENT_FAILED}') AS failed
FROM events
WHERE organization_id = $1 AND type = ANY($2::text[]) AND occurred_at >= $3 AND occurred_at < $4
"""


class FraudProfileQuery(QueryRunner[uuid.UUID, None, FraudProfile]):
    """Commerce health of an organization over a range, and its alerts still being worked on."""

    kind = "organization_fraud_profile"

    async def scope(self) -> uuid.UUID:
        return await administered_organization(self.viewer, self.inputs.get("organization_id"), refusal=FRAUD_REFUSAL)

    def tenant(self, org: uuid.UUID) -> Tenant:
        return Tenant(org)

    async def fetch(self, org: uuid.UUID, plan: None) -> FraudProfile:
        return await _fraud_profile(org, self.inputs["time_range"])


async def organization_profile(*, viewer: Viewer, organization_id: Any = None, time_range: RangeSpec) -> FraudProfile:
    return await FraudProfileQuery(viewer=viewer, organization_id=organization_id, time_range=time_range).run()


async def _fraud_profile(org: uuid.UUID, time_range: RangeSpec) -> FraudProfile:
    async with connection() as conn:
        row = await conn.fetchrow("SELECT timezone, created_at FROM organizations WHERE id = $1", org)
        if row is None:
            raise NotFound("organization not found", field="organizationId")
        span = resolve_range(time_range, row["timezone"])
        counts = await conn.fetchrow(_PROFILE_COUNTS, org, [ORDER_PAID, ORDER_REFUNDED, PAYMENT_FAILED], span.start, span.end)
        open_alerts = await conn.fetch(
            "SELECT risk, count(*) AS n FROM fraud_alerts WHERE organization_id = $1 AND status = ANY($2::text[])"
            " GROUP BY risk",
            org,
            list(ACTIVE),
        )
    by_risk = {r["risk"]: r["n"] for r in open_alerts}
    return FraudProfile(
        organization_id=org, range=span, orders=counts["orders"], refunds=counts["refunds"],
        payment_attempts=counts["orders"] + counts["failed"], failed_payments=counts["failed"],
        account_age_days=max(0, (utcnow() - row["created_at"].astimezone(UTC)).days),
        open_alerts={risk: by_risk.get(risk, 0) for risk in RISKS},
    )  # fmt: skip
