"""Product events as an SDK sends them: trackEvents batches through the API, and the plain
Python facts insight tests compute their references from (not the SQL under test)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from tests.support.graphql import gql
from tests.support.tracking import TRACK_EVENTS

BATCH = 500


@dataclass
class ProductEvent:
    """One event as sent; `batch` is the order of arrival (a later batch arrives later)."""

    event_id: str
    type: str
    occurred_at: datetime
    user_id: str | None = None
    anonymous_id: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    url: str | None = None
    batch: int = 0
    session_id: str | None = None  # the client's own session id (else ingestion assigns one)
    context: dict[str, Any] = field(default_factory=dict)  # more of the SDK's context (utmSource, ...)

    def as_input(self) -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": self.type,
            "eventId": self.event_id,
            "occurredAt": self.occurred_at.astimezone(UTC).isoformat(),
            "properties": self.properties,
        }
        if self.user_id is not None:
            item["userId"] = self.user_id
        if self.anonymous_id is not None:
            item["anonymousId"] = self.anonymous_id
        context = {**self.context, **({"url": self.url} if self.url is not None else {})}
        if context:
            item["context"] = context
        if self.session_id is not None:
            item["sessionId"] = self.session_id
        return item

    def key(self, links: dict[str, str]) -> str:
        """The person, as every insight defines it: the user, else the (linked) anonymous id."""
        if self.user_id:
            return f"u:{self.user_id}"
        alias = f"a:{self.anonymous_id}"
        return links.get(alias, alias)


async def send(client: httpx.AsyncClient, token: str, events: list[ProductEvent]) -> None:
    """Send `events` in order, BATCH at a time; every one must be accepted. Events of the
    same `batch` number go in one call, so arrival order follows `batch`."""
    groups: dict[int, list[ProductEvent]] = {}
    for event in events:
        groups.setdefault(event.batch, []).append(event)
    for number in sorted(groups):
        group = groups[number]
        for i in range(0, len(group), BATCH):
            chunk = group[i : i + BATCH]
            body = await gql(client, TRACK_EVENTS, {"events": [e.as_input() for e in chunk]}, token=token)
            result = body["data"]["trackEvents"] if body.get("data") else None
            assert result and result["accepted"] == len(chunk) and not result["rejected"], body


def ordered(events: list[ProductEvent]) -> list[ProductEvent]:
    """A person's events in insight order: event time, then arrival, then event id."""
    return sorted(events, key=lambda e: (e.occurred_at, e.batch, e.event_id))
