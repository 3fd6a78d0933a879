"""B8: an experiment's results through GraphQL (a real API process reading the worker's
sufficient statistics) against the SQL computing the same numbers from raw events, on the
same database in the same run.

The data: one organization with a running experiment of 3 variants and a conversion metric
(checkout.completed within 7 days of the first exposure): `--exposures` persons (1,000,000 by
default), each with one `experiment.exposed` event, and a conversion for about 8, 10 and 12%
of them; COPY'd into `events` and `outbox` (processed). The statistics are then made by the
worker's own code (`record_exposures`, in chunks, under the experiment's lock: each person's
backfill from their processed events), so both sides must agree on every variant's exposures
and conversions. Setup is timed, not measured; the data stays for `--reuse`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.b7_insights import ensure_partitions, time_api, time_sql
from bench.common import ProcessSampler, Result, Stack, percentile

ORG_ID = uuid.UUID("00000000-0000-4000-8000-0000000000b8")
EXPERIMENT_ID = uuid.UUID("00000000-0000-4000-8000-0000000008b8")
KEY = "b8-checkout"
VARIANTS = ("control", "b", "c")
RATES = {"control": 0.08, "b": 0.10, "c": 0.12}
DAYS = 14
WINDOW_HOURS = 168
CHUNK = 20_000
TARGET = "p95 <= 100 ms and >= 20x faster than SQL over raw events"

RESULTS = """query($id: ID!) { experimentResults(experimentId: $id) {
  srmPValue srmFlagged exposures { key n }
  metrics { key analysis { winner confidence variants { key n mean
    absolute { estimate ciLow ciHigh pValue adjustedPValue } relative { estimate ciLow ciHigh } } } } } }"""

# Each person's first exposure and its variant, and whether a conversion followed within the
# window: the numbers experimentResults starts from, from raw events.
RAW = f"""
WITH x AS (
    SELECT visitor_id AS p, min(occurred_at) AS t0, (array_agg(properties ->> 'variant' ORDER BY occurred_at))[1] AS variant
    FROM events
    WHERE organization_id = $1 AND type = 'experiment.exposed' AND properties ->> 'experimentKey' = $2
    GROUP BY visitor_id
), c AS (
    SELECT DISTINCT x.p FROM x
    JOIN events e ON e.organization_id = $1 AND e.visitor_id = x.p AND e.type = 'checkout.completed'
     AND e.occurred_at >= x.t0 AND e.occurred_at < x.t0 + interval '{WINDOW_HOURS} hours'
)
SELECT x.variant, count(*) AS n, count(c.p) AS conversions FROM x LEFT JOIN c ON c.p = x.p GROUP BY x.variant
"""


def metric_definition() -> list[dict[str, Any]]:
    return [{"key": "converted", "name": "Checkout within 7 days", "role": "primary", "kind": "conversion",
             "event": {"event": "checkout.completed", "filters": []}, "windowHours": WINDOW_HOURS}]  # fmt: skip


def raw_events(count: int, *, seed: int, end: datetime) -> Iterator[tuple[Any, ...]]:
    """Exposures of `count` persons (assigned by the real hash) and their conversions."""
    from app.services.experiments.assignment import variant_for
    from app.services.experiments.definitions import Variant
    from app.services.ingestion import EVENT_COLUMNS

    rng = random.Random(seed)
    column = {name: i for i, name in enumerate(EVENT_COLUMNS)}
    blank: list[Any] = [None] * len(EVENT_COLUMNS)
    blank[column["organization_id"]] = ORG_ID
    blank[column["dnt"]] = False
    variants = tuple(Variant(v, v, 1.0) for v in VARIANTS)
    for n in range(count):
        person = f"b8-{seed}-{n}"
        variant = variant_for(KEY, variants, 1.0, f"u:{person}")
        assert variant is not None
        t0 = end - timedelta(seconds=rng.random() * DAYS * 86400)
        row = list(blank)
        row[column["occurred_at"]], row[column["event_id"]], row[column["type"]] = t0, f"{person}-x", "experiment.exposed"
        row[column["visitor_id"]], row[column["user_id"]] = f"u:{person}", person
        row[column["properties"]] = f'{{"experimentKey": "{KEY}", "variant": "{variant}"}}'
        yield tuple(row)
        if rng.random() < RATES[variant]:
            at = min(t0 + timedelta(hours=rng.uniform(0.1, 240)), end - timedelta(seconds=1))
            row = list(blank)
            row[column["occurred_at"]], row[column["event_id"]], row[column["type"]] = at, f"{person}-c", "checkout.completed"
            row[column["visitor_id"]], row[column["user_id"]], row[column["properties"]] = f"u:{person}", person, "{}"
            yield tuple(row)


async def stored_exposures(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM experiment_exposures WHERE organization_id = $1", ORG_ID))


async def load(database_url: str, count: int, *, seed: int, end: datetime) -> float:
    """Bench setup (not a measurement): the organization, the experiment, its events, then the
    worker's statistics through its own code."""
    from app.services.ingestion import EVENT_COLUMNS

    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET synchronous_commit = off")
        await create_experiment(conn, end)
        await ensure_partitions(conn, end - timedelta(days=DAYS + 1), end)
        batch: list[tuple[Any, ...]] = []
        at, event_id, kind = EVENT_COLUMNS.index("occurred_at"), EVENT_COLUMNS.index("event_id"), EVENT_COLUMNS.index("type")
        for row in raw_events(count, seed=seed, end=end):
            batch.append(row)
            if len(batch) >= 100_000:
                await copy(conn, batch, at, event_id, kind)
                batch = []
        if batch:
            await copy(conn, batch, at, event_id, kind)
        await conn.execute("ANALYZE events")
        await conn.execute("ANALYZE outbox")
        await build_statistics(conn)
    finally:
        await conn.close()
    return time.perf_counter() - started


async def copy(conn: asyncpg.Connection, rows: list[tuple[Any, ...]], at: int, event_id: int, kind: int) -> None:
    from app.services.ingestion import EVENT_COLUMNS

    await conn.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)
    await conn.copy_records_to_table(
        "outbox", records=[(ORG_ID, r[event_id], r[at], r[kind], r[at]) for r in rows],
        columns=("organization_id", "event_id", "occurred_at", "type", "processed_at"),
    )  # fmt: skip


async def create_experiment(conn: asyncpg.Connection, end: datetime) -> None:
    import orjson

    await conn.execute(
        "INSERT INTO organizations (id, slug, name, timezone, currency) VALUES ($1, 'b8', 'B8 market', 'UTC', 'EUR')"
        " ON CONFLICT DO NOTHING", ORG_ID,
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO experiments (organization_id, id, key, name, status, variants, metrics, tracked_types, started_at,"
        " created_by) VALUES ($1, $2, $3, 'B8 checkout', 'running', $4::jsonb, $5::jsonb, $6, $7, 'bench')"
        " ON CONFLICT DO NOTHING",
        ORG_ID, EXPERIMENT_ID, KEY, orjson.dumps([{"key": v, "name": v, "weight": 1.0} for v in VARIANTS]).decode(),
        orjson.dumps(metric_definition()).decode(), ["checkout.completed"], end - timedelta(days=DAYS),
    )  # fmt: skip
    await conn.execute(
        "INSERT INTO experiment_statistics (organization_id, experiment_id, metric, variant)"
        " SELECT $1, $2, 'converted', v FROM unnest($3::text[]) v ON CONFLICT DO NOTHING", ORG_ID, EXPERIMENT_ID, list(VARIANTS),
    )  # fmt: skip


async def build_statistics(conn: asyncpg.Connection) -> None:
    """What the worker's consumer does for each batch of exposures, CHUNK persons at a time."""
    from app.services.experiments.definitions import COLUMNS, from_row
    from app.services.experiments.exposures import Exposure, lock_experiment, record_exposures

    experiment = from_row(await conn.fetchrow(f"SELECT {COLUMNS} FROM experiments WHERE organization_id = $1 AND id = $2",
                                              ORG_ID, EXPERIMENT_ID))  # fmt: skip
    rows = await conn.fetch(
        "SELECT visitor_id, occurred_at, properties ->> 'variant' AS variant FROM events"
        " WHERE organization_id = $1 AND type = 'experiment.exposed' ORDER BY visitor_id", ORG_ID,
    )  # fmt: skip
    for i in range(0, len(rows), CHUNK):
        async with conn.transaction():
            await lock_experiment(conn, EXPERIMENT_ID)
            await record_exposures(conn, experiment, [Exposure(r["visitor_id"], r["variant"], r["occurred_at"]) for r in rows[i : i + CHUNK]])


def checksum(answer: dict[str, Any], rows: list[asyncpg.Record]) -> tuple[list[tuple[str, int, float]], list[tuple[str, int, float]]]:
    """Per variant (exposures, conversions) from both sides."""
    [metric] = answer["experimentResults"]["metrics"]
    ours = sorted((v["key"], v["n"], round(v["mean"] * v["n"])) for v in metric["analysis"]["variants"])
    theirs = sorted((r["variant"], r["n"], r["conversions"]) for r in rows)
    return ours, theirs


async def run(database_url: str, broadcast_url: str, work_dir: Path, *, exposures: int, repeats: int, seed: int) -> list[Result]:
    from app.auth import Role, issue_token
    from app.settings import Settings
    from bench.common import JWT_SECRET

    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    await conn.execute("SET jit = off")
    setup = 0.0
    if await stored_exposures(conn) < exposures:
        print(f"B8: loading {exposures:,} exposures and their conversions, then the worker's statistics ...", flush=True)
        setup = await load(database_url, exposures, seed=seed, end=now)
        print(f"B8: loaded in {setup:.0f} s", flush=True)
    stored = await stored_exposures(conn)
    settings = Settings(database_url=None, broadcast_url="memory://", data_dir=Path("/tmp"), jwt_secret=JWT_SECRET)
    token = issue_token(role=Role.ORG_ADMIN, organization_id=ORG_ID, settings=settings)
    stack = Stack(database_url, broadcast_url, work_dir / "b8")
    stack.env["PULSEGRAPH_RESULT_CACHE"] = "0"
    stack.env["PULSEGRAPH_STATEMENT_TIMEOUT_MS"] = "300000"
    with stack, ProcessSampler(stack.pids()) as rss:
        async with httpx.AsyncClient(base_url=stack.url, timeout=120, trust_env=False) as http:
            body = {"query": RESULTS, "variables": {"id": str(EXPERIMENT_ID)}}
            api, answer = await time_api(http, token, body, repeats)
            raw, rows = await time_sql(conn, RAW, (ORG_ID, KEY), max(3, repeats // 8))
    await conn.close()
    ours, theirs = checksum(answer, rows)
    p50, p95, raw_p50, raw_p95 = percentile(api, 0.5), percentile(api, 0.95), percentile(raw, 0.5), percentile(raw, 0.95)
    speedup = raw_p95 / p95
    return [
        Result(
            "B8", f"experimentResults: p95 ms ({stored:,} exposures, 3 variants)", p95, raw=raw_p95, unit="ms",
            raw_label="SQL computing the same exposures and conversions from raw events, p95 ms", ratio=speedup,
            target=TARGET, passed=p95 <= 100 and speedup >= 20 and ours == theirs,
            extra={"same_answer": ours == theirs, "per_variant": ours, "p50_ms": p50, "p95_ms": p95, "raw_p50_ms": raw_p50,
                   "raw_p95_ms": raw_p95, "samples": len(api), "raw_samples": len(raw), "setup_s": setup,
                   "api_rss_mb": rss.peak_of("api")},
        )  # fmt: skip
    ]
