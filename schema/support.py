"""The support desk's GraphQL types: search hits and organization notes."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry


@strawberry.enum(description="What a support search matched.")
class SupportMatch(Enum):
    TRANSACTION_ID = strawberry.enum_value("transaction_id", description="A transaction's id (the event id that recorded it).")
    ORDER_ID = strawberry.enum_value("order_id", description="The order a transaction belongs to.")
    ORGANIZATION_NAME = strawberry.enum_value("organization_name", description="An organization's name, exactly or as a prefix.")


@strawberry.type(description="One thing a support search found: a transaction, or an organization (transaction fields null).")
class SupportHit:
    matched: SupportMatch = strawberry.field(description="What the query matched.")
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    organization_name: str = strawberry.field(description="Its name.")
    transaction_id: str | None = strawberry.field(description="The transaction's id (its event id).")
    order_id: str | None = strawberry.field(description="Its order id, if any.")
    type: str | None = strawberry.field(description="booking, gift, subscription, affiliate or order.")
    status: str | None = strawberry.field(description="pending, completed, refunded or failed.")
    amount_minor: int | None = strawberry.field(description="Amount in integer minor units (negative: a refund).")
    currency: str | None = strawberry.field(description="ISO 4217 currency of the amount.")
    occurred_at: datetime | None = strawberry.field(description="When it happened (UTC).")


@strawberry.type(description="A platform admin's internal note on an organization; its members never see it.")
class OrganizationNote:
    id: strawberry.ID = strawberry.field(description="The note's id.")
    organization_id: strawberry.ID = strawberry.field(description="The organization.")
    author: str = strawberry.field(description="Who wrote it (user:<id>).")
    body: str = strawberry.field(description="The note.")
    created_at: datetime = strawberry.field(description="When it was written.")
