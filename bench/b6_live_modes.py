"""B6: live delay by serving mode. One websocket subscriber (graphql-transport-ws) follows one
profile's `profileViews` and `engagementUpdates` while single-view `trackEvent` calls are
sent one at a time, each awaited (view and snapshot received) before the next, in two modes:

* one process: `serve` with its in-process worker and the memory bus (what ./run.sh runs);
* split: `serve --no-worker` plus a worker process, over Redis (REDIS_URL) or PostgreSQL,
  so every frame crossed a process boundary.

Delays of each call: from its HTTP response to the view's frame, from its HTTP request to the
same frame, and from its response to the first engagement snapshot after it.

Raw limit, same run: a bare asyncpg NOTIFY -> LISTEN round trip on the same PostgreSQL, the
wake-up a worker waits for in both modes once the API has committed the view.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

from bench.common import Result, Stack, percentile
from bench.generator import Dataset

TRACK = "mutation($e: TrackEventInput!) { trackEvent(event: $e) { accepted rejected { index field reason } } }"
VIEWS = "subscription($p: ID!) { profileViews(profileId: $p) { eventId occurredAt country browser } }"
ENGAGEMENT = "subscription($p: ID!) { engagementUpdates(profileId: $p) { views uniqueVisitors updatedAt } }"
WAIT = 15.0  # seconds for one expected frame


class Follower:
    """One websocket following a profile's views and snapshots; frames filed by operation
    with the time they were read off the socket."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: defaultdict[str, asyncio.Queue[tuple[float, dict[str, Any]]]] = defaultdict(asyncio.Queue)
        self.errors: list[str] = []
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, ws_url: str, token: str, profile_id: str) -> Follower:
        ws = await connect(ws_url, subprotocols=["graphql-transport-ws"], open_timeout=60, proxy=None)  # type: ignore[list-item]
        await ws.send(orjson.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}}).decode())
        ack = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
        if ack.get("type") != "connection_ack":
            raise SystemExit(f"B6: connection_init refused: {ack}")
        for op, query in (("views", VIEWS), ("engagement", ENGAGEMENT)):
            payload = {"query": query, "variables": {"p": profile_id}}
            await ws.send(orjson.dumps({"id": op, "type": "subscribe", "payload": payload}).decode())
        return cls(ws)

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for raw in self.ws:
                now = time.perf_counter()
                message = orjson.loads(raw)
                if message.get("type") == "next" and message["payload"].get("data"):
                    self.frames[message["id"]].put_nowait((now, message["payload"]["data"]))
                elif message.get("type") == "ping":
                    await self.ws.send('{"type":"pong"}')
                elif message.get("type") in ("next", "error", "complete"):
                    self.errors.append(str(message)[:300])

    async def _next(self, op: str) -> tuple[float, dict[str, Any]]:
        try:
            return await asyncio.wait_for(self.frames[op].get(), WAIT)
        except TimeoutError:
            raise SystemExit(f"B6: no {op} frame within {WAIT:.0f} s; {self.errors[:3]}") from None

    async def view(self, event_id: str) -> float:
        """When the view with this id arrived (other views are skipped)."""
        while True:
            at, data = await self._next("views")
            if data["profileViews"]["eventId"] == event_id:
                return at

    async def snapshot(self, views: int) -> tuple[float, int]:
        """When the first snapshot counting at least `views` views arrived, and its count."""
        while True:
            at, data = await self._next("engagement")
            if data["engagementUpdates"]["views"] >= views:
                return at, data["engagementUpdates"]["views"]

    async def close(self) -> None:
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)
        await self.ws.close()


def view(profile_id: str) -> dict[str, Any]:
    return {
        "eventId": f"b6-{uuid.uuid4().hex}", "type": "profile.viewed", "profileId": profile_id,
        "occurredAt": datetime.now(UTC).isoformat(), "anonymousId": f"b6-visitor-{uuid.uuid4().hex[:8]}",
        "context": {"ip": "203.0.113.7", "url": "https://example.com/p", "referrer": "https://www.google.com/"},
    }  # fmt: skip


async def send_one(http: httpx.AsyncClient, token: str, profile_id: str) -> tuple[str, float, float]:
    """One trackEvent call: (event id, perf_counter before the request, after the response)."""
    body = view(profile_id)
    requested = time.perf_counter()
    response = await http.post("/graphql", content=orjson.dumps({"query": TRACK, "variables": {"e": body}}),
                               headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
    answered = time.perf_counter()
    result = response.json()
    if "errors" in result or result["data"]["trackEvent"]["accepted"] != 1:
        raise SystemExit(f"B6: trackEvent failed: {str(result)[:500]}")
    return body["eventId"], requested, answered


async def warm_up(http: httpx.AsyncClient, follower: Follower, token: str, profile_id: str) -> int:
    """Views until the subscription delivers one (graphql-transport-ws has no subscribe ack);
    returns the views counted by the snapshot of that view."""
    deadline = time.monotonic() + 60
    while True:
        event_id, _, _ = await send_one(http, token, profile_id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await follower.view(event_id)
                break
        if time.monotonic() > deadline:
            raise SystemExit(f"B6: the subscriber never got a view; {follower.errors[:3]}")
    _, counted = await follower.snapshot(1)
    return counted


async def measure(
    http: httpx.AsyncClient, follower: Follower, token: str, profile_id: str, sends: int, counted: int
) -> dict[str, list[float]]:
    """Delays in ms of `sends` calls, each awaited (its view and its snapshot) before the next."""
    delays: dict[str, list[float]] = {"response": [], "request": [], "snapshot": []}
    for _ in range(sends):
        event_id, requested, answered = await send_one(http, token, profile_id)
        arrived = await follower.view(event_id)
        snapshot, counted = await follower.snapshot(counted + 1)
        delays["response"].append((arrived - answered) * 1000)
        delays["request"].append((arrived - requested) * 1000)
        delays["snapshot"].append((snapshot - answered) * 1000)
        await asyncio.sleep(0.02)
    return delays


async def notify_round_trip(database_url: str, count: int) -> list[float]:
    """Bare NOTIFY -> LISTEN delivery on the same PostgreSQL (ms), one message at a time."""
    listener, sender = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    channel = f"pulsegraph_bench_b6_{uuid.uuid4().hex[:8]}"
    arrived: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener(channel, lambda *_: arrived.put_nowait(time.perf_counter()))
    out: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            await sender.execute(f"NOTIFY {channel}, 'x'")
            out.append((await asyncio.wait_for(arrived.get(), 5) - started) * 1000)
            await asyncio.sleep(0.002)
    finally:
        await listener.close()
        await sender.close()
    return out


async def run(
    database_url: str, broadcast_url: str, work_dir: Path, dataset: Dataset, tokens: dict, *, sends: int = 40
) -> list[Result]:
    org = dataset.orgs[0]
    profile_id = str(org.profiles[-1])
    keys = tokens[str(org.id)]
    conn = await asyncpg.connect(database_url)
    try:  # whatever earlier benches left pending is not this run's load
        await conn.execute("UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL")
    finally:
        await conn.close()
    modes = {
        "one process, memory bus": Stack(database_url, "memory://", work_dir / "b6-one", in_process_worker=True, tag="-b6one"),
        f"API + worker process, {broadcast_url.split(':', 1)[0]} bus": Stack(
            database_url, broadcast_url, work_dir / "b6-split", workers=1, tag="-b6split"
        ),
    }
    results = []
    for mode, stack in modes.items():
        with stack:
            stack.start_workers()
            async with httpx.AsyncClient(base_url=stack.url, timeout=60, trust_env=False) as http:
                follower = await Follower.connect(stack.url.replace("http://", "ws://") + "/graphql", keys["org_admin"], profile_id)
                try:
                    counted = await warm_up(http, follower, keys["service"], profile_id)
                    delays = await measure(http, follower, keys["service"], profile_id, sends, counted)
                finally:
                    await follower.close()
        raw = await notify_round_trip(database_url, max(200, sends))
        results.append(result(mode, delays, raw, sends))
        print(f"  {mode}: view p50 {percentile(delays['response'], 0.5):.1f} ms, p99 {percentile(delays['response'], 0.99):.1f} ms;"
              f" snapshot p50 {percentile(delays['snapshot'], 0.5):.1f} ms", flush=True)  # fmt: skip
    return results


def result(mode: str, delays: dict[str, list[float]], raw: list[float], sends: int) -> Result:
    p99, raw99 = percentile(delays["response"], 0.99), percentile(raw, 0.99)
    return Result(
        "B6", f"profileViews + engagementUpdates, {mode}: p99 ms trackEvent response -> view frame", p99,
        raw=raw99, unit="ms", raw_label="asyncpg NOTIFY -> LISTEN, same PostgreSQL", ratio=p99 / raw99 if raw99 else None,
        extra={"sends": sends, "view_p50_ms": percentile(delays["response"], 0.5),
               "view_from_request_p50_ms": percentile(delays["request"], 0.5),
               "view_from_request_p99_ms": percentile(delays["request"], 0.99),
               "snapshot_p50_ms": percentile(delays["snapshot"], 0.5),
               "snapshot_p99_ms": percentile(delays["snapshot"], 0.99), "raw_p50_ms": percentile(raw, 0.5)},
    )  # fmt: skip
