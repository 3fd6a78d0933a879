"""Gov detection: whether an IP address belongs to a government or law-enforcement network."""

from __future__ import annotations

import strawberry


@strawberry.type(description="Whether an IP address belongs to a government, military or law-enforcement network, and why.")
class GovIpCheck:
    ip: str = strawberry.field(description="The address checked, normalized (IPv4-mapped IPv6 becomes IPv4).")
    is_government: bool = strawberry.field(description="True when the confidence reaches the threshold (0.7).")
    confidence: float = strawberry.field(
        description="Combined evidence in [0, 1]: curated list 0.95, government domain 0.8, keyword 0.75, weak keyword 0.35 (name evidence capped at 0.9, halved for commercial names)."
    )
    organization: str | None = strawberry.field(description="The network's organization (ASN database, else the curated list).")
    asn: int | None = strawberry.field(description="The autonomous system number, when the ASN database knows the address.")
    country: str | None = strawberry.field(description="ISO 3166 country of the address, when known.")
    reasons: list[str] = strawberry.field(description="Human-readable evidence behind the confidence, strongest first.")
    signals: list[str] = strawberry.field(
        description="Signals available to this check: asn-database, city-database, curated-list."
    )
