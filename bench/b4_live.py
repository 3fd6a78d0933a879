"""B4: live `profileViews` fan-out. One API process (`serve --no-worker`) and one worker
process share a Redis event bus (BROADCAST_URL=redis://...). N = 1, 100, 1,000 websocket
subscribers (graphql-transport-ws, the `websockets` library, all in this process on one
asyncio loop) follow the SAME profile: the worst case for fan-out, one bus message becomes
N websocket sends by one API process. Single-view `trackEvent` calls are sent one at a
time; the delay of each (call, subscriber) pair is from the HTTP response of the call to
the moment that subscriber's socket delivered the view to this process.

The path measured: commit -> NOTIFY -> worker claims, applies and commits the view ->
Redis PUBLISH -> API bus listener -> N strawberry subscription tasks -> N websocket frames
-> this process's N receive loops (whose own CPU is inside the number: the bench shares the
2 cores with the API and the worker).

Raw limit, same run: a bare redis.asyncio PUBLISH -> pubsub receive round trip (one
subscriber connection) on the same Redis.
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
import psutil
from redis import asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from bench.common import ProcessSampler, Result, Stack, percentile
from bench.generator import Dataset

TRACK = "mutation($e: TrackEventInput!) { trackEvent(event: $e) { accepted duplicates rejected { index field reason } } }"
FOLLOW = "subscription($p: ID!) { profileViews(profileId: $p) { eventId occurredAt country browser } }"
SIZES = (1, 100, 1000)
TARGET_MS = 50.0


class Subscribers:
    """Websocket subscribers of one profile, all recording arrival times per event id."""

    def __init__(self, ws_url: str, token: str, profile_id: str) -> None:
        self.ws_url = ws_url
        self.token = token
        self.profile_id = profile_id
        self.sockets: list[ClientConnection] = []
        self.tasks: list[asyncio.Task] = []
        self.arrivals: dict[str, list[float]] = defaultdict(list)
        self.waiting: dict[str, tuple[int, asyncio.Event]] = {}
        self.errors: list[str] = []

    async def add(self, count: int, *, parallel: int = 50) -> None:
        sem = asyncio.Semaphore(parallel)

        async def one() -> None:
            async with sem:
                ws = await connect(self.ws_url, subprotocols=["graphql-transport-ws"], max_size=2**20,
                                   ping_interval=None, open_timeout=60)  # fmt: skip
                await ws.send(orjson.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {self.token}"}}).decode())
                ack = orjson.loads(await asyncio.wait_for(ws.recv(), 60))
                if ack.get("type") != "connection_ack":
                    raise SystemExit(f"B4: connection_init refused: {ack}")
                await ws.send(orjson.dumps({"id": "1", "type": "subscribe", "payload": {
                    "query": FOLLOW, "variables": {"p": self.profile_id}}}).decode())  # fmt: skip
                self.sockets.append(ws)
                self.tasks.append(asyncio.create_task(self._receive(ws)))

        await asyncio.gather(*(one() for _ in range(count)))

    async def _receive(self, ws: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                now = time.perf_counter()
                message = orjson.loads(raw)
                kind = message.get("type")
                if kind == "next":
                    data = message["payload"].get("data")
                    if not data:
                        self.errors.append(str(message)[:300])
                        continue
                    event_id = data["profileViews"]["eventId"]
                    arrived = self.arrivals[event_id]
                    arrived.append(now)
                    wanted = self.waiting.get(event_id)
                    if wanted is not None and len(arrived) >= wanted[0]:
                        wanted[1].set()
                elif kind == "ping":
                    await ws.send('{"type":"pong"}')
                elif kind in ("error", "complete"):
                    self.errors.append(str(message)[:300])
                    return

    def expect(self, event_id: str) -> asyncio.Event:
        done = asyncio.Event()
        self.waiting[event_id] = (len(self.sockets), done)
        return done

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)


def view(profile_id: str) -> dict[str, Any]:
    return {
        "eventId": f"b4-{uuid.uuid4().hex}",
        "type": "profile.viewed",
        "occurredAt": datetime.now(UTC).isoformat(),
        "anonymousId": f"b4-visitor-{uuid.uuid4().hex[:8]}",
        "profileId": profile_id,
        "context": {"ip": "203.0.113.7", "url": "https://example.com/p", "referrer": "https://www.google.com/",
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                                 "Chrome/124.0 Safari/537.36"},
    }  # fmt: skip


async def send_views(
    http: httpx.AsyncClient, subs: Subscribers, token: str, count: int, *, timeout: float = 10.0, gap: float = 0.02
) -> tuple[list[float], int]:
    """`count` views one after the other; (delays in ms over every subscriber, views lost)."""
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    delays: list[float] = []
    lost = 0
    for _ in range(count):
        body = view(subs.profile_id)
        done = subs.expect(body["eventId"])
        response = await http.post("/graphql", content=orjson.dumps({"query": TRACK, "variables": {"e": body}}),
                                   headers=headers)  # fmt: skip
        answered = time.perf_counter()
        result = response.json()
        if "errors" in result or result["data"]["trackEvent"]["accepted"] != 1:
            raise SystemExit(f"B4: trackEvent failed: {str(result)[:500]}")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout)
        arrived = subs.arrivals.pop(body["eventId"], [])
        subs.waiting.pop(body["eventId"], None)
        lost += len(subs.sockets) - len(arrived)
        delays += [(t - answered) * 1000 for t in arrived]
        await asyncio.sleep(gap)
    return delays, lost


async def redis_round_trip(redis_url: str, count: int) -> list[float]:
    """Bare PUBLISH -> pubsub receive on the same Redis (ms), one message at a time."""
    client = aioredis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    channel = f"pulsegraph-bench-b4-raw-{uuid.uuid4().hex}"
    await pubsub.subscribe(channel)
    await pubsub.get_message(timeout=5)  # the subscribe confirmation
    payload = orjson.dumps({"eventId": "x" * 36, "profileId": str(uuid.uuid4()), "occurredAt": "2026-01-01T00:00:00+00:00"})
    out: list[float] = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            await client.publish(channel, payload)
            while True:
                message = await pubsub.get_message(timeout=5)
                if message is not None and message["type"] == "message":
                    break
            out.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.002)
    finally:
        await pubsub.unsubscribe(channel)
        await pubsub.aclose()
        await client.aclose()
    return out


async def run(
    database_url: str, broadcast_url: str, work_dir: Path, dataset: Dataset, tokens: dict, *,
    sizes: tuple[int, ...] = SIZES, sends: int = 60,
) -> list[Result]:  # fmt: skip
    if not broadcast_url.startswith("redis"):
        print("B4: skipped (needs REDIS_URL: the API and the worker share a Redis event bus)")
        return []
    org = dataset.orgs[0]
    profile_id = str(org.top_profile)
    keys = tokens[str(org.id)]
    conn = await asyncpg.connect(database_url)
    try:  # whatever earlier benches left pending is not this run's load
        await conn.execute("UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL")
    finally:
        await conn.close()
    results: list[Result] = []
    stack = Stack(database_url, broadcast_url, work_dir / "b4", workers=1, tag="-b4")
    with stack:
        stack.start_workers()
        await asyncio.sleep(2)
        subs = Subscribers(stack.url.replace("http://", "ws://") + "/graphql", keys["org_admin"], profile_id)
        limits = httpx.Limits(max_connections=4)
        async with httpx.AsyncClient(base_url=stack.url, timeout=60, limits=limits, trust_env=False) as http:
            with ProcessSampler(stack.pids()) as rss:
                try:
                    for size in sizes:
                        await subs.add(size - len(subs.sockets))
                        # Warm up until every subscriber is live on the bus (the subscribe
                        # message has no acknowledgement in graphql-transport-ws).
                        deadline = time.monotonic() + 60
                        while True:
                            _, lost = await send_views(http, subs, keys["service"], 1, timeout=3)
                            if lost == 0:
                                break
                            if time.monotonic() > deadline:
                                raise SystemExit(f"B4: {lost} of {size} subscribers never got a view; {subs.errors[:3]}")
                        raw = await redis_round_trip(broadcast_url, max(200, sends))
                        procs = {"api": psutil.Process(stack.api.pid), "worker": psutil.Process(stack.workers[0].pid),
                                 "bench": psutil.Process()}  # fmt: skip
                        before = {k: sum(v.cpu_times()[:2]) for k, v in procs.items()}
                        timed = time.perf_counter()
                        delays, lost = await send_views(http, subs, keys["service"], sends)
                        timed = time.perf_counter() - timed
                        cpu = {k: sum(v.cpu_times()[:2]) - before[k] for k, v in procs.items()}
                        p50, p99 = percentile(delays, 0.5), percentile(delays, 0.99)
                        raw50, raw99 = percentile(raw, 0.5), percentile(raw, 0.99)
                        api_rss = rss.peak_of("api")
                        final = size == max(sizes)
                        print(f"  N={size}: p50 {p50:.1f} ms, p99 {p99:.1f} ms (redis p99 {raw99:.2f} ms), lost {lost}, "
                              f"API RSS {api_rss:.0f} MB, CPU s api {cpu['api']:.1f} worker {cpu['worker']:.1f} "
                              f"bench {cpu['bench']:.1f} in {timed:.1f} s", flush=True)  # fmt: skip
                        results.append(Result(
                            "B4", f"profileViews, {size} subscriber(s) on one profile: p99 ms trackEvent response -> received",
                            p99, raw=raw99, unit="ms", raw_label="redis.asyncio PUBLISH -> pubsub receive, same Redis",
                            ratio=p99 / raw99 if raw99 else None,
                            target=f"p99 <= {TARGET_MS:.0f} ms, API RSS <= 300 MB" if final else "",
                            passed=(p99 <= TARGET_MS and api_rss <= 300 and lost == 0) if final else None,
                            extra={"subscribers": size, "sends": sends, "samples": len(delays), "lost": lost,
                                   "p50_ms": p50, "p95_ms": percentile(delays, 0.95), "max_ms": max(delays, default=0),
                                   "raw_p50_ms": raw50, "raw_p99_ms": raw99, "api_rss_mb": api_rss,
                                   "worker_rss_mb": rss.peak.get("worker0", 0.0), "errors": len(subs.errors),
                                   "timed_s": timed, "cpu_s": cpu,
                                   "api_cpu_us_per_delivery": cpu["api"] / max(1, len(delays)) * 1e6,
                                   "bench_cpu_us_per_delivery": cpu["bench"] / max(1, len(delays)) * 1e6},
                        ))  # fmt: skip
                finally:
                    await subs.close()
    return results
