"""A generated services marketplace for the marketplace tests and the demo's checks: the
events to publish and plain-Python answers over them (nothing here imports the code under
test)."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.support.graphql import gql

PUBLISH = """mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted duplicates rejected { index field reason } } }"""
SERVICES = {"translate": "language", "summarize": "language", "resize": "images", "ocr": "images", "transcribe": "audio"}
ERROR_CODES = ("TIMEOUT", "RATE_LIMITED", "UPSTREAM_500")


@dataclass
class Execution:
    service: str
    category: str
    latency: float
    success: bool
    code: str | None
    at: datetime


@dataclass
class Market:
    events: list[dict[str, Any]] = field(default_factory=list)
    executions: list[Execution] = field(default_factory=list)


def executions(rng: random.Random, now: datetime, *, count: int, days: float, tag: str | None = None) -> Market:
    """`count` executions spread over the `days` before `now` (some in the current hour)."""
    tag = tag or uuid.uuid4().hex[:8]
    market = Market()
    names = sorted(SERVICES)
    for i in range(count):
        service = names[i % len(names)] if i < len(names) else rng.choice(names)
        base = {"translate": 80, "summarize": 400, "resize": 30, "ocr": 250, "transcribe": 1200}[service]
        latency = round(rng.lognormvariate(0, 0.6) * base, 1)
        success = rng.random() > 0.08
        code = None if success else (rng.choice(ERROR_CODES) if rng.random() > 0.2 else None)
        at = now - timedelta(seconds=rng.uniform(1, days * 86400)) if i % 10 else now - timedelta(seconds=rng.uniform(1, 600))
        market.executions.append(Execution(service, SERVICES[service], latency, success, code, at))
        props: dict[str, Any] = {"serviceId": service, "executionId": f"x-{i}", "latencyMs": latency, "success": success,
                                 "category": SERVICES[service]}  # fmt: skip
        if code:
            props["errorCode"] = code
        market.events.append(
            {"eventId": f"{tag}-x{i}", "type": "SERVICE_EXECUTED", "occurredAt": at.isoformat(), "properties": props}
        )
    return market


async def publish(client: Any, token: str, events: list[dict[str, Any]]) -> None:
    """Publish in batches the API takes; every event must be accepted."""
    for start in range(0, len(events), 1000):
        body = await gql(client, PUBLISH, {"e": events[start : start + 1000]}, token=token)
        assert body.get("errors") is None, body
        assert body["data"]["publishDomainEvents"]["rejected"] == [], body
