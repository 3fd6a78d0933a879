"""B9: the services marketplace.

* serviceMetrics (GraphQL, result cache off, so every call computes) over the last 30 local
  days, daily, at `--b9-executions` stored executions, against PostgreSQL's exact
  percentile_cont over the same rows for the same answer (p50/p95/p99 and the average per
  service and overall): p95 ms and the ratio; and the KLL sketches' measured error at p50,
  p95 and p99: relative to the exact value, and in rank (the bound is 1.65%).
* GET /stream delivery with `--b9-clients` connected SSE clients on one API process (one
  worker process, the Redis bus when REDIS_URL is set, as B4): p50/p99 from the
  publishDomainEvents response of one execution to each client's receipt of the counters
  update that counts it. B4 measures the same path over websocket.
* single-event POST /track at a steady 200 requests/s for `--b9-seconds`: p50/p95/p99 ms
  (the promise: writes under 10 ms, tracking p95 under 50 ms).

The executions are bench setup: COPY'd into `events` over 35 days, and rolled up by the
worker's own code (`rollups.execution_deltas` / `write_deltas`) in batches; they stay for
`--reuse`.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson

from bench.common import ProcessSampler, Result, Stack, percentile

ORG_ID = uuid.UUID("00000000-0000-4000-8000-0000000000b9")
LIVE_ORG_ID = uuid.UUID("00000000-0000-4000-8000-0000000001b9")
TIMEZONE = "Europe/Berlin"
DAYS = 35
SERVICES = [(f"svc-{n:02d}", ["design", "writing", "audio", "video", "data"][n % 5], 20.0 * 1.25**n) for n in range(24)]
QUANTILES = (0.5, 0.95, 0.99)
RANK_BOUND = 0.0165
SERVICE_METRICS = """query($org: ID!, $range: TimeRangeInput!) {
  serviceMetrics(organizationId: $org, range: $range, granularity: DAY, limit: 100) {
    total { executions averageMs p50Ms p95Ms p99Ms } services { serviceId total { executions p50Ms p95Ms p99Ms } } } }"""
EXACT = """
SELECT e.properties ->> 'serviceId' AS service, count(*) AS n, avg((e.properties ->> 'latencyMs')::float8) AS average,
       percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY (e.properties ->> 'latencyMs')::float8) AS q
FROM events e
WHERE e.organization_id = $1 AND e.type = 'service.executed' AND e.occurred_at >= $2 AND e.occurred_at < $3
GROUP BY GROUPING SETS ((1), ())
"""
RANKS = """
SELECT count(*) FILTER (WHERE (properties ->> 'latencyMs')::float8 <= $4) / count(*)::float8
FROM events WHERE organization_id = $1 AND type = 'service.executed' AND occurred_at >= $2 AND occurred_at < $3
"""
PUBLISH = """mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted } }"""


# -- data -------------------------------------------------------------------------------------


def executions(count: int, *, seed: int, end: datetime) -> Iterator[tuple[datetime, str, str, float, bool, str | None]]:
    """(time, service, category, latency ms, success, error code): a Zipf-like service mix,
    lognormal latencies around each service's median, 3% failures."""
    rng = random.Random(seed)
    weights = [1 / (n + 1) for n in range(len(SERVICES))]
    span = DAYS * 86400
    for _ in range(count):
        service, category, median = rng.choices(SERVICES, weights)[0]
        success = rng.random() > 0.03
        yield (end - timedelta(seconds=rng.random() * span), service, category, round(median * rng.lognormvariate(0, 0.7), 2),
               success, None if success else rng.choice(("TIMEOUT", "UPSTREAM_502")))  # fmt: skip


async def loaded(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM events WHERE organization_id = $1 AND type = 'service.executed'", ORG_ID))


async def load(database_url: str, count: int, *, seed: int, end: datetime) -> float:
    """Bench setup (not a measurement): the organizations, the executions and their rollups."""
    from app.services.ingestion import EVENT_COLUMNS
    from app.services.marketplace.rollups import execution_deltas, write_deltas
    from bench.b7_insights import ensure_partitions

    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET synchronous_commit = off")
        for org, slug in ((ORG_ID, "b9"), (LIVE_ORG_ID, "b9-live")):
            await conn.execute(
                "INSERT INTO organizations (id, slug, name, timezone, currency) VALUES ($1, $2, $2, $3, 'EUR') ON CONFLICT DO NOTHING",
                org, slug, TIMEZONE,
            )  # fmt: skip
        await ensure_partitions(conn, end - timedelta(days=DAYS + 1), end)
        column = {name: i for i, name in enumerate(EVENT_COLUMNS)}
        blank: list[Any] = [None] * len(EVENT_COLUMNS)
        blank[column["organization_id"]], blank[column["type"]], blank[column["dnt"]] = ORG_ID, "service.executed", False
        rows: list[tuple[Any, ...]] = []
        facts: list[dict[str, Any]] = []
        for n, (at, service, category, latency, success, code) in enumerate(executions(count, seed=seed, end=end)):
            row = list(blank)
            props = {"serviceId": service, "category": category, "latencyMs": latency, "success": success}
            if code:
                props["errorCode"] = code
            row[column["occurred_at"]], row[column["event_id"]] = at, f"b9-{seed}-{n}"
            row[column["properties"]] = json.dumps(props)
            rows.append(tuple(row))
            facts.append({"organization_id": ORG_ID, "occurred_at": at, "service_id": service, "category": category,
                          "latency_ms": latency, "success": success, "error_code": code})  # fmt: skip
            if len(rows) >= 200_000:
                await _store(conn, rows, facts, EVENT_COLUMNS, execution_deltas, write_deltas)
                rows, facts = [], []
        if rows:
            await _store(conn, rows, facts, EVENT_COLUMNS, execution_deltas, write_deltas)
        await conn.execute("ANALYZE events")
        await conn.execute("ANALYZE service_rollups")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def _store(conn: asyncpg.Connection, rows: list[tuple[Any, ...]], facts: list[dict[str, Any]], columns: Any,
                 deltas_of: Any, write: Any) -> None:  # fmt: skip
    async with conn.transaction():
        await conn.copy_records_to_table("events", records=rows, columns=columns)
        await write(conn, deltas_of(facts, {ORG_ID: TIMEZONE}))


# -- service metrics against exact percentiles ------------------------------------------------


def last_30_days(now: datetime) -> tuple[datetime, datetime]:
    zone = ZoneInfo(TIMEZONE)
    today = now.astimezone(zone).date()
    start = datetime.combine(today - timedelta(days=29), datetime.min.time(), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=zone).astimezone(UTC)
    return start, end


async def service_metrics_results(http: httpx.AsyncClient, conn: asyncpg.Connection, token: str, *, stored: int,
                                  repeats: int, now: datetime) -> list[Result]:  # fmt: skip
    start, end = last_30_days(now)
    body = {"query": SERVICE_METRICS, "variables": {"org": str(ORG_ID), "range": {"preset": "LAST_30_DAYS"}}}
    api, answer = [], None
    for _ in range(repeats + 1):
        began = time.perf_counter()
        payload = (await http.post("/graphql", json=body, headers={"Authorization": f"Bearer {token}"})).json()
        api.append((time.perf_counter() - began) * 1000)
        if payload.get("errors"):
            raise SystemExit(f"B9 serviceMetrics failed: {payload['errors']}")
        answer = payload["data"]["serviceMetrics"]
    raw, exact = [], []
    for _ in range(max(3, repeats // 4) + 1):
        began = time.perf_counter()
        exact = await conn.fetch(EXACT, ORG_ID, start, end)
        raw.append((time.perf_counter() - began) * 1000)
    api, raw = api[1:], raw[1:]
    errors = await sketch_errors(conn, answer, exact, start, end)
    p95, raw_p95 = percentile(api, 0.95), percentile(raw, 0.95)
    same = answer["total"]["executions"] == next(r["n"] for r in exact if r["service"] is None)
    results = [Result(
        "B9", f"serviceMetrics 30 d daily p95 ms ({stored:,} executions)", p95, raw=raw_p95, unit="ms",
        raw_label="exact percentile_cont per service and overall, p95 ms", ratio=p95 / raw_p95,
        target="p95 <= 1000 ms and faster than the exact SQL", passed=p95 <= 1000 and p95 <= raw_p95 and same,
        extra={"p50_ms": percentile(api, 0.5), "raw_p50_ms": percentile(raw, 0.5), "same_count": same, "samples": len(api)},
    )]  # fmt: skip
    for q in QUANTILES:
        worst_relative, worst_rank = errors[q]
        results.append(Result(
            "B9", f"KLL p{int(q * 100)}: worst relative error over services and overall", worst_relative * 100, unit="%",
            raw_label="exact percentile_cont", target=f"rank error <= {RANK_BOUND:.2%}", passed=worst_rank <= RANK_BOUND,
            extra={"worst_rank_error_pct": worst_rank * 100},
        ))  # fmt: skip
    return results


async def sketch_errors(conn: asyncpg.Connection, answer: dict[str, Any], exact: list[asyncpg.Record], start: datetime,
                        end: datetime) -> dict[float, tuple[float, float]]:  # fmt: skip
    """Per quantile: the worst relative error against percentile_cont over the services and
    the total, and the total's rank error (the share of executions at or below the answer, minus q)."""
    truth = {r["service"]: r["q"] for r in exact}
    answers = {s["serviceId"]: s["total"] for s in answer["services"]} | {None: answer["total"]}
    out = {}
    for i, q in enumerate(QUANTILES):
        key = f"p{int(q * 100)}Ms"
        relative = max(abs(a[key] - truth[s][i]) / truth[s][i] for s, a in answers.items() if s in truth and truth[s][i])
        rank = await conn.fetchval(RANKS, ORG_ID, start, end, answer["total"][key])
        out[q] = (relative, abs(rank - q))
    return out


# -- SSE delivery ------------------------------------------------------------------------------


class Listener:
    """One SSE client: the time it first saw counters with at least `executions`."""

    def __init__(self) -> None:
        self.seen: dict[int, float] = {}
        self.ready = asyncio.Event()

    async def run(self, http: httpx.AsyncClient, token: str) -> None:
        async with http.stream("GET", "/stream", params={"access_token": token}) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"channel":"counters"' in line:
                    executions = orjson.loads(line[6:])["data"]["executions"]
                    self.seen.setdefault(executions, time.perf_counter())
                    self.ready.set()


async def stream_results(stack_url: str, token: str, service_token: str, *, clients: int, sends: int) -> list[Result]:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    async with httpx.AsyncClient(base_url=stack_url, timeout=httpx.Timeout(60.0, read=None), limits=limits, trust_env=False) as http:
        listeners = [Listener() for _ in range(clients)]
        tasks = [asyncio.create_task(listener.run(http, token)) for listener in listeners]
        try:
            await asyncio.wait_for(asyncio.gather(*(listener.ready.wait() for listener in listeners)), 120)
            first = max(max(listener.seen) for listener in listeners)
            delays: list[float] = []
            for k in range(1, sends + 1):
                event = {"eventId": f"b9-live-{uuid.uuid4().hex}", "type": "SERVICE_EXECUTED",
                         "properties": {"serviceId": "live", "latencyMs": 10, "success": True}}  # fmt: skip
                await http.post("/graphql", json={"query": PUBLISH, "variables": {"e": [event]}},
                                headers={"Authorization": f"Bearer {service_token}"})  # fmt: skip
                answered = time.perf_counter()
                want = first + k
                deadline = answered + 15
                while time.perf_counter() < deadline and not all(any(n >= want for n in lsn.seen) for lsn in listeners):
                    await asyncio.sleep(0.005)
                for listener in listeners:
                    got = [t for n, t in listener.seen.items() if n >= want]
                    if got:
                        delays.append((min(got) - answered) * 1000)
            missing = clients * sends - len(delays)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    p99 = percentile(delays, 0.99)
    return [Result(
        "B9", f"/stream delivery p99 ms, {clients:,} SSE clients", p99, unit="ms", raw_label="B4: the websocket's figure",
        target="p99 <= 1000 ms, every update delivered", passed=p99 <= 1000 and missing == 0,
        extra={"p50_ms": percentile(delays, 0.5), "missing": missing, "sends": sends},
    )]  # fmt: skip


# -- POST /track at a steady rate --------------------------------------------------------------


TRACKED = {  # what a single-event POST /track sends: a page view (stored only), a marketplace execution (rolled up)
    "page.viewed": {"type": "page.viewed", "context": {"url": "https://market.example/services"}},
    "service.executed": {"type": "service.executed", "properties": {"serviceId": "tracked", "latencyMs": 12, "success": True}},
}


async def drained(database_url: str, timeout: float = 300) -> None:
    """Until the worker has caught up, so one run's backlog does not load the next."""
    conn = await asyncpg.connect(database_url)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and await conn.fetchval("SELECT count(*) FROM outbox WHERE processed_at IS NULL"):
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def track_results(stack_url: str, service_token: str, *, rate: int, seconds: float, kind: str) -> list[Result]:
    """Open loop: request n is sent at start + n / rate whatever the answers before it; the
    first seconds at the same rate only warm the processes (connection pools grow), unmeasured."""
    headers = {"Authorization": f"Bearer {service_token}", "Content-Type": "application/json"}
    body = orjson.dumps(TRACKED[kind])
    async with httpx.AsyncClient(base_url=stack_url, timeout=30, trust_env=False, limits=httpx.Limits(max_connections=64)) as http:
        await _steady(http, headers, body, rate=rate, seconds=min(3.0, seconds))
        latencies, failures = await _steady(http, headers, body, rate=rate, seconds=seconds)
    p50, p95, p99 = (percentile(latencies, q) for q in (0.5, 0.95, 0.99))
    return [Result(
        "B9", f"POST /track single {kind} at {rate}/s, p99 ms", p99, unit="ms", raw_label="-",
        target="p50 <= 10 ms, p95 <= 50 ms", passed=p50 <= 10 and p95 <= 50 and failures == 0,
        extra={"p50_ms": p50, "p95_ms": p95, "requests": len(latencies), "failures": failures},
    )]  # fmt: skip


async def _steady(http: httpx.AsyncClient, headers: dict[str, str], body: bytes, *, rate: int,
                  seconds: float) -> tuple[list[float], int]:  # fmt: skip
    latencies: list[float] = []
    failures = 0

    async def one(at: float) -> None:
        nonlocal failures
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        began = time.perf_counter()
        response = await http.post("/track", content=body, headers=headers)
        latencies.append((time.perf_counter() - began) * 1000)
        failures += response.status_code != 200

    start = time.perf_counter() + 0.2
    await asyncio.gather(*(one(start + n / rate) for n in range(int(rate * seconds))))
    return latencies, failures


async def run(database_url: str, broadcast_url: str, work_dir: Path, *, executions_count: int, clients: int, sends: int,
              track_seconds: float, repeats: int, seed: int, rate: int = 200, api_processes: int = 2) -> list[Result]:  # fmt: skip
    from app.auth import Role, issue_token
    from app.settings import Settings
    from bench.common import JWT_SECRET

    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    await conn.execute("SET jit = off")
    stored = await loaded(conn)
    if stored < executions_count:
        print(f"B9: loading {executions_count - stored:,} executions with COPY and rolling them up ...", flush=True)
        setup = await load(database_url, executions_count - stored, seed=seed + stored, end=now)
        stored = await loaded(conn)
        print(f"B9: loaded in {setup:.0f} s", flush=True)
    settings = Settings(database_url=None, broadcast_url="memory://", data_dir=Path("/tmp"), jwt_secret=JWT_SECRET)
    admin = issue_token(role=Role.ORG_ADMIN, organization_id=ORG_ID, settings=settings)
    live_admin = issue_token(role=Role.ORG_ADMIN, organization_id=LIVE_ORG_ID, settings=settings)
    live_service = issue_token(role=Role.SERVICE, organization_id=LIVE_ORG_ID, settings=settings)
    results: list[Result] = []
    stack = Stack(database_url, broadcast_url, work_dir / "b9", workers=1)
    stack.env["PULSEGRAPH_RESULT_CACHE"] = "0"  # every call computes
    stack.env["PULSEGRAPH_STATEMENT_TIMEOUT_MS"] = "300000"
    with stack:
        stack.start_workers()
        with ProcessSampler(stack.pids()) as rss:
            results += await _measure(stack, conn, admin, live_admin, live_service, stored=stored, clients=clients,
                                      sends=sends, repeats=repeats, now=now)  # fmt: skip
    await conn.close()
    for r in results:
        r.extra["api_rss_mb"] = rss.peak_of("api")
    return results + await _measure_tracking(
        database_url, broadcast_url, work_dir, live_service, rate=rate, seconds=track_seconds, api_processes=api_processes
    )


async def _measure(stack: Stack, conn: asyncpg.Connection, admin: str, live_admin: str, live_service: str, *, stored: int,
                   clients: int, sends: int, repeats: int, now: datetime) -> list[Result]:  # fmt: skip
    results: list[Result] = []
    async with httpx.AsyncClient(base_url=stack.url, timeout=300, trust_env=False) as http:
        results += await service_metrics_results(http, conn, admin, stored=stored, repeats=repeats, now=now)
    print(f"B9: /stream with {clients:,} clients ...", flush=True)
    results += await stream_results(stack.url, live_admin, live_service, clients=clients, sends=sends)
    return results


async def _measure_tracking(database_url: str, broadcast_url: str, work_dir: Path, token: str, *, rate: int,
                            seconds: float, api_processes: int) -> list[Result]:  # fmt: skip
    """POST /track as B1 serves it: `serve --workers N` and one worker process."""
    stack = Stack(database_url, broadcast_url, work_dir / "b9-track", workers=1, api_processes=api_processes, tag="-track")
    with stack:
        stack.start_workers()
        with ProcessSampler(stack.pids()) as rss:
            results = []
            for kind in TRACKED:
                await drained(database_url)
                print(f"B9: POST /track {kind} at {rate}/s for {seconds:.0f} s on {api_processes} API processes ...", flush=True)
                results += await track_results(stack.url, token, rate=rate, seconds=seconds, kind=kind)
    for r in results:
        r.extra.update(api_processes=api_processes, api_rss_mb=rss.peak_of("api"))
    return results
