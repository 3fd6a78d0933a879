"""A well-behaved producer for fault tests: trackEvents batches with its own eventIds, each
call filed as acknowledged (the response said the events were accepted, or were duplicates
of an earlier call), retryable (UNAVAILABLE, an HTTP 5xx, a transport error) or unexpected.
Retryable batches are sent again later with the same eventIds, as a beacon or backend does;
what it acknowledged is what the server promised to keep."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

TRACK = """
mutation Track($events: [TrackEventInput!]!) {
  trackEvents(events: $events) { accepted duplicates dropped eventIds rejected { index field reason } }
}"""
HTTP_TIMEOUT = 10.0  # a request that takes longer is a wedge, counted as such
RETRY_DEADLINE = 45.0  # seconds to get every retryable batch acknowledged after a fault


@dataclass
class Ingestor:
    """A well-behaved producer: eventIds of its own, retries with the same ids."""

    http: httpx.AsyncClient
    url: str
    key: str
    profile_id: str
    prefix: str
    batch_size: int = 20
    acknowledged: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)
    to_retry: list[list[dict[str, Any]]] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    failure_latency: list[float] = field(default_factory=list)
    first_try_duplicates: int = 0
    last_success_at: float = 0.0
    _counter: int = 0

    async def send_one(self) -> str:
        """Send a single event and return its id; anything but success fails the test."""
        events = self.batch()[:1]
        assert await self.send(events) == "ok", self.unexpected
        return events[0]["eventId"]

    def batch(self) -> list[dict[str, Any]]:
        events = []
        for _ in range(self.batch_size):
            self._counter += 1
            event_id = f"{self.prefix}-{self._counter}"
            events.append(
                {
                    "type": "profile.viewed",
                    "eventId": event_id,
                    "profileId": self.profile_id,
                    "occurredAt": datetime.now(UTC).isoformat(),
                    "anonymousId": f"visitor-{random.randrange(200)}",
                }
            )
            self.sent.add(event_id)
        return events

    async def send(self, events: list[dict[str, Any]], *, retry: bool = False) -> str:
        """One trackEvents call; returns "ok" or the kind of failure (the batch is then
        queued for a retry, unless the failure is unexpected)."""
        started = time.monotonic()
        outcome = await self._call(events, retry=retry)
        self.outcomes[outcome] += 1
        if outcome == "ok":
            self.last_success_at = time.monotonic()
        else:
            self.failure_latency.append(time.monotonic() - started)
            self.to_retry.append(events)
        return outcome

    async def _call(self, events: list[dict[str, Any]], *, retry: bool) -> str:
        try:
            response = await self.http.post(
                self.url,
                json={"query": TRACK, "variables": {"events": events}},
                headers={"Authorization": f"Bearer {self.key}"},
                timeout=HTTP_TIMEOUT,
            )
        except httpx.TimeoutException:
            return "timeout"
        except httpx.TransportError:
            return "transport"
        if response.status_code != 200:
            return f"http-{response.status_code}"
        body = response.json()
        errors = body.get("errors") or []
        if errors:
            codes = sorted(
                {(e.get("extensions") or {}).get("code") or "?" for e in errors}
            )
            if codes == ["UNAVAILABLE"] and not body.get("data"):
                return "unavailable"
            self.unexpected.append(json.dumps(body)[:500])
            return "error-" + "+".join(codes)
        result = body["data"]["trackEvents"]
        ids = [e["eventId"] for e in events]
        if result["rejected"] or result["accepted"] + result["duplicates"] != len(ids):
            self.unexpected.append(json.dumps(result)[:500])
            return "partial"
        if not retry:
            self.first_try_duplicates += result["duplicates"]
        assert set(result["eventIds"]) <= set(ids), result
        self.acknowledged.update(ids)
        return "ok"

    async def retry_all(self, deadline: float = RETRY_DEADLINE) -> None:
        """Send every failed batch again (same eventIds) until each one is acknowledged."""
        give_up = time.monotonic() + deadline
        while self.to_retry:
            pending, self.to_retry = self.to_retry, []
            for events in pending:
                if await self.send(events, retry=True) != "ok":
                    await asyncio.sleep(0.2)
            if self.to_retry:
                assert time.monotonic() < give_up, (
                    f"{len(self.to_retry)} batches still refused after {deadline:.0f}s: {self.outcomes}"
                )

    def failures(self) -> Counter[str]:
        return Counter({k: v for k, v in self.outcomes.items() if k != "ok"})


def start_producers(
    http: Any, stack: Any, tenant: Any, *, prefix: str, batch_size: int, events_per_second: int, count: int = 3
) -> tuple[list[Ingestor], asyncio.Event, list[asyncio.Task]]:
    """`count` producers paced to `events_per_second` in all, sending until `stop` is set."""
    ingestors = [
        Ingestor(http, stack.graphql_url, tenant.ingestion_key, tenant.profile_id, prefix=f"{prefix}{i}", batch_size=batch_size)
        for i in range(count)
    ]
    stop = asyncio.Event()
    interval = count * 100 / events_per_second  # seconds per call per producer
    senders = [asyncio.create_task(send_until(i, stop, interval=interval)) for i in ingestors]
    return ingestors, stop, senders


async def send_until(
    ingestor: Ingestor,
    stop: asyncio.Event,
    *,
    pause: float = 0.01,
    interval: float = 0.0,
) -> None:
    """Send batches until `stop`: `pause` seconds between calls, or one call per `interval`
    seconds (a fixed rate, whatever each call takes) when that is set."""
    next_at = time.monotonic()
    while not stop.is_set():
        outcome = await ingestor.send(ingestor.batch())
        next_at += interval
        wait = next_at - time.monotonic() if interval else pause
        await asyncio.sleep(max(0.0, wait) if outcome == "ok" else max(0.1, wait))


def merge(ingestors: list[Ingestor]) -> Ingestor:
    """One producer's view of what several producers sent, acknowledged and saw fail."""
    merged = Ingestor(ingestors[0].http, "", "", "", prefix="all")
    for ingestor in ingestors:
        merged.acknowledged |= ingestor.acknowledged
        merged.sent |= ingestor.sent
        merged.outcomes += ingestor.outcomes
        merged.unexpected += ingestor.unexpected
        merged.failure_latency += ingestor.failure_latency
        merged.first_try_duplicates += ingestor.first_try_duplicates
    merged.failure_latency = merged.failure_latency or [0.0]
    return merged
