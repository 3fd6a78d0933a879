"""B1: trackEvents over HTTP (batches of 1,000, several concurrent clients) against a raw
asyncpg binary COPY of the same rows into the same `events` table (same batch size, same
concurrency). Accepted events are durable: trackEvents returns after the commit."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import ProcessSampler, Result, Stack, chunks
from bench.generator import Dataset, Event, api_event, event_record

TRACK = "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted duplicates rejected { index field reason } } }"
BATCH = 1000


def client_streams(dataset: Dataset, clients: int, per_client: int, stream_base: int) -> list[list[Event]]:
    """Each client sends one organization's traffic of the last two days."""
    end = datetime.now().astimezone() - timedelta(minutes=1)
    start = end - timedelta(days=2)
    return [
        list(dataset.events(per_client, start=start, end=end, org=i % len(dataset.orgs), stream=stream_base + i, money=True))
        for i in range(clients)
    ]


async def send_all(url: str, streams: list[list[Event]], dataset: Dataset, tokens: dict) -> tuple[int, float, list[float]]:
    """POST every batch of every client concurrently; (accepted, seconds, per-call ms)."""
    bodies = []
    for i, events in enumerate(streams):
        token = tokens[str(dataset.orgs[i % len(dataset.orgs)].id)]["service"]
        payloads = [orjson.dumps({"query": TRACK, "variables": {"e": [api_event(e) for e in batch]}})
                    for batch in chunks(events, BATCH)]  # fmt: skip
        bodies.append((token, payloads))
    latencies: list[float] = []

    async def client(http: httpx.AsyncClient, token: str, payloads: list[bytes]) -> int:
        # A new connection per batch, as beacons and short-lived senders make them: a kept-alive
        # connection stays with the API process that accepted it, which would pin all four
        # clients to whichever process accepted first (see README, "Several API processes").
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Connection": "close"}
        accepted = 0
        for payload in payloads:
            started = time.perf_counter()
            response = await http.post("/graphql", content=payload, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            body = response.json()
            if "errors" in body or body["data"]["trackEvents"]["rejected"]:
                raise SystemExit(f"trackEvents failed: {str(body)[:800]}")
            accepted += body["data"]["trackEvents"]["accepted"]
        return accepted

    limits = httpx.Limits(max_connections=len(bodies) * 2)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits, trust_env=False) as http:
        started = time.perf_counter()
        accepted = await asyncio.gather(*(client(http, token, payloads) for token, payloads in bodies))
        seconds = time.perf_counter() - started
    return sum(accepted), seconds, latencies


async def raw_copy(database_url: str, streams: list[list[Event]]) -> tuple[int, float]:
    """The same rows (enriched offline), COPY'd in batches of 1,000 over one connection per client."""
    from app.services.ingestion import EVENT_COLUMNS

    prepared = []
    for events in streams:
        org = uuid.uuid4()  # a tenant of its own: the API run stores the same event ids
        prepared.append([[event_record(e, org) for e in batch] for batch in chunks(events, BATCH)])
    conns = [await asyncpg.connect(database_url) for _ in streams]

    async def client(conn: asyncpg.Connection, batches: list[list[tuple[Any, ...]]]) -> int:
        for batch in batches:
            await conn.copy_records_to_table("events", records=batch, columns=EVENT_COLUMNS)
        return sum(len(b) for b in batches)

    try:
        started = time.perf_counter()
        copied = await asyncio.gather(*(client(c, b) for c, b in zip(conns, prepared, strict=True)))
        seconds = time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()
    return sum(copied), seconds


async def run(
    database_url: str, broadcast_url: str, work_dir: Path, dataset: Dataset, tokens: dict, *, events: int, clients: int,
    api_processes: int,
) -> tuple[list[Result], float]:  # fmt: skip
    streams = client_streams(dataset, clients, events // clients, stream_base=1000)
    copied, raw_seconds = await raw_copy(database_url, streams)
    raw_rate = copied / raw_seconds
    stack = Stack(database_url, broadcast_url, work_dir / "b1", api_processes=api_processes)
    with stack, ProcessSampler(stack.pids()) as rss:
        accepted, seconds, latencies = await send_all(stack.url, streams, dataset, tokens)
    rate = accepted / seconds
    conn = await asyncpg.connect(database_url)
    try:
        ids = [e.event_id for s in streams for e in s]
        durable = await conn.fetchval(
            "SELECT count(*) FROM events WHERE organization_id = ANY($1::uuid[]) AND event_id = ANY($2::text[])",
            [o.id for o in dataset.orgs], ids,
        )  # fmt: skip
    finally:
        await conn.close()
    latencies.sort()
    result = Result(
        "B1", f"trackEvents, {clients} clients x batches of {BATCH}, {api_processes} API processes: events/s accepted+durable",
        rate,
        raw=raw_rate, unit="events/s", raw_label="asyncpg binary COPY, same rows/batches/concurrency",
        ratio=rate / raw_rate, target=">= 30,000/s and >= 25% of raw COPY",
        passed=rate >= 30_000 and rate / raw_rate >= 0.25,
        extra={"accepted": accepted, "durable": durable, "seconds": seconds, "raw_seconds": raw_seconds,
               "call_p50_ms": latencies[len(latencies) // 2], "call_p95_ms": latencies[int(len(latencies) * 0.95)],
               "api_processes": api_processes, **rss.api_extra(accepted)},
    )  # fmt: skip
    return [result], rate
