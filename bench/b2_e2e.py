"""B2: API to processed-by-worker (rollups updated) with 1 and 2 worker processes, under the
same load as B1. Lag of each event = outbox.processed_at - outbox.received_at (both
stamped by PostgreSQL); the raw limit is the API's own accept rate in the same run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg

from app.vocabulary import PROFILE_EVENT_TYPES
from bench.b1_ingest import client_streams, send_all
from bench.common import ProcessSampler, Result, Stack, percentile
from bench.generator import Dataset

LAG = """
SELECT EXTRACT(EPOCH FROM processed_at - received_at) AS lag,
       EXTRACT(EPOCH FROM processed_at) AS done, EXTRACT(EPOCH FROM received_at) AS received
FROM outbox WHERE received_at >= $1 AND type = ANY($2::text[])
"""


async def run(
    database_url: str, broadcast_url: str, work_dir: Path, dataset: Dataset, tokens: dict, *,
    events: int, clients: int, workers: int, stream_base: int, api_processes: int,
) -> list[Result]:  # fmt: skip
    streams = client_streams(dataset, clients, events // clients, stream_base=stream_base)
    conn = await asyncpg.connect(database_url)
    # Whatever B1 left pending is not this run's load.
    await conn.execute("UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL")
    since = await conn.fetchval("SELECT now()")
    stack = Stack(
        database_url, broadcast_url, work_dir / f"b2-{workers}", workers=workers, api_processes=api_processes,
        tag=f"-b2w{workers}",
    )  # fmt: skip
    with stack:
        stack.start_workers()
        await asyncio.sleep(2)
        with ProcessSampler(stack.pids()) as rss:
            accepted, seconds, _ = await send_all(stack.url, streams, dataset, tokens)
            deadline = time.monotonic() + 600
            while await conn.fetchval("SELECT count(*) FROM outbox WHERE processed_at IS NULL") > 0:
                if time.monotonic() > deadline:
                    raise SystemExit("B2: workers did not drain the outbox within 10 minutes")
                await asyncio.sleep(0.2)
    rows = await conn.fetch(LAG, since, sorted(PROFILE_EVENT_TYPES))
    await conn.close()
    lags = [float(r["lag"]) for r in rows]
    first = min(float(r["received"]) for r in rows)
    last = max(float(r["done"]) for r in rows)
    e2e_rate = accepted / (last - first)
    api_rate = accepted / seconds
    worker_rss = max(v for k, v in rss.peak.items() if k.startswith("worker"))
    return [
        Result(
            "B2", f"API ({api_processes} processes) -> processed, {workers} worker process(es): events/s end to end",
            e2e_rate,
            raw=api_rate, unit="events/s", raw_label="API accept rate in the same run", ratio=e2e_rate / api_rate,
            target="keeps up (ratio ~1) with 2 workers, lag p95 < 2 s" if workers == 2 else "",
            passed=(e2e_rate / api_rate >= 0.95 and percentile(lags, 0.95) < 2) if workers == 2 else None,
            extra={"lag_p50_s": percentile(lags, 0.5), "lag_p95_s": percentile(lags, 0.95), "lag_max_s": max(lags),
                   "worker_events": len(lags), "accepted": accepted, "api_processes": api_processes,
                   **rss.api_extra(accepted), "worker_rss_mb": worker_rss},
        )  # fmt: skip
    ]
