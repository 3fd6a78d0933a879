"""Gov detection (thin: viewer, call, convert)."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from app.auth import Access
from app.services import gov_detection as service
from resolvers.common import guarded, viewer_of
from schema.gov_detection import GovIpCheck


def to_check(value: service.GovCheck) -> GovIpCheck:
    return GovIpCheck(
        ip=value.ip,
        is_government=value.is_government,
        confidence=value.confidence,
        organization=value.organization,
        asn=value.asn,
        country=value.country,
        reasons=list(value.reasons),
        signals=list(value.signals),
    )


def check_ip(
    info: Info, ip: Annotated[str, strawberry.argument(description="An IPv4 or IPv6 address.")]
) -> GovIpCheck:
    return to_check(service.check_ip(viewer=viewer_of(info), ip=ip))


# -- the domain's fields ------------------------------------------------------------------


@strawberry.type
class Query:
    """The gov detection domain's reads, merged into the root by schema.root."""

    check_ip: GovIpCheck = guarded(
        Access.READERS, check_ip,
        "Whether an IP address belongs to a government, military or law-enforcement network, with the evidence (any reader).",
    )
