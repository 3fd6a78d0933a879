"""The ledger's vocabulary and its ingestion contract.

Ledger rows have a type (TYPES) and a status (STATUSES; REVENUE_STATUSES count as revenue);
SALE_TYPE says which domain event records which type. The money properties the worker reads
from an event (fees, text ids, duo split, partner, status) are checked at ingestion by
`check_properties`, which names the bad field, so that the worker can trust them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from app.vocabulary import (
    AFFILIATE_COMMISSION,
    BOOKING_COMPLETED,
    GIFT_PURCHASED,
    LEDGER_EVENT_TYPES,
    MARKETPLACE_CONVERTED,
    ORDER_PAID,
    PAYMENT_FAILED,
    SUBSCRIPTION_CHARGED,
)

TYPES = ("booking", "gift", "subscription", "affiliate", "order")
STATUSES = ("pending", "completed", "refunded", "failed")
REVENUE_STATUSES = ("completed", "refunded")
SALE_TYPE = {
    BOOKING_COMPLETED: "booking",
    GIFT_PURCHASED: "gift",
    SUBSCRIPTION_CHARGED: "subscription",
    AFFILIATE_COMMISSION: "affiliate",
    ORDER_PAID: "order",
    PAYMENT_FAILED: "order",
    MARKETPLACE_CONVERTED: "order",
}
FEE_PROPERTIES = {"platformFeeMinor": "platform", "serviceFeeMinor": "service", "processorFeeMinor": "processor"}
TEXT_PROPERTIES = ("category", "orderId", "originalEventId", "payoutId", "creatorId")
TAKE_RATE_MAX_BPS = 10_000
# Months one subscription charge pays for (properties.interval; month when absent).
INTERVAL_MONTHS = {"month": 1, "quarter": 3, "year": 12}
TEXT_PROPERTY_MAX_CHARS = 128
DEFAULT_GIFT_CATEGORY = "other"
BIGINT_MAX = 2**63 - 1


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """The money properties the ledger reads, checked at ingestion so the worker can trust
    them: (field, reason) of the first bad one, None when they are fine."""
    if event_type not in LEDGER_EVENT_TYPES or not isinstance(properties, Mapping):
        return None
    for name in FEE_PROPERTIES:
        value = properties.get(name)
        if value is not None and (type(value) is not int or not 0 <= value <= BIGINT_MAX):
            return f"properties.{name}", f"properties.{name} must be a non-negative integer in minor units"
    for name in TEXT_PROPERTIES:
        value = properties.get(name)
        if value is not None and (not isinstance(value, str) or not value.strip() or len(value) > TEXT_PROPERTY_MAX_CHARS):
            return f"properties.{name}", f"properties.{name} must be text of 1 to {TEXT_PROPERTY_MAX_CHARS} characters"
    split = properties.get("splitPercent")
    if split is not None and (type(split) is not int or not 1 <= split <= 99):
        return "properties.splitPercent", "properties.splitPercent must be an integer from 1 to 99"
    partner = properties.get("partnerProfileId")
    if partner is not None:
        try:
            uuid.UUID(str(partner))
        except ValueError:
            return "properties.partnerProfileId", "properties.partnerProfileId is not a valid id"
    status = properties.get("status")
    if status is not None and status not in ("pending", "completed"):
        return "properties.status", "properties.status must be pending or completed"
    bps = properties.get("takeRateBps")
    if bps is not None and (type(bps) is not int or not 0 <= bps <= TAKE_RATE_MAX_BPS):
        return "properties.takeRateBps", f"properties.takeRateBps must be an integer from 0 to {TAKE_RATE_MAX_BPS} (basis points)"
    interval = properties.get("interval")
    if event_type == SUBSCRIPTION_CHARGED and interval is not None and interval not in INTERVAL_MONTHS:
        return "properties.interval", "properties.interval must be month, quarter or year"
    return None


def platform_fee(properties: Mapping[str, Any], amount_minor: int) -> int:
    """The platform's cut of a sale: properties.platformFeeMinor, else the take rate's share
    of the amount rounded half up, else 0."""
    fee = properties.get("platformFeeMinor")
    if type(fee) is int and fee >= 0:
        return fee
    bps = properties.get("takeRateBps")
    if type(bps) is int and 0 <= bps <= TAKE_RATE_MAX_BPS:
        return (abs(amount_minor) * bps + TAKE_RATE_MAX_BPS // 2) // TAKE_RATE_MAX_BPS
    return 0
