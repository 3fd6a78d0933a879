"""B5: rebuild every rollup from the stored events (`pulsegraph rollups rebuild`), against
one plain SQL pass that aggregates the same events by local hour (no sketches, no writes)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import asyncpg

from bench.common import Proc, ProcessSampler, Result, process_env

RAW_SQL = """
SELECT pe.organization_id, pe.profile_id,
       pe.occurred_at - ((pe.occurred_at AT TIME ZONE o.timezone) - date_trunc('hour', pe.occurred_at AT TIME ZONE o.timezone)),
       count(*) FILTER (WHERE kind = 'view'), count(*) FILTER (WHERE kind = 'inquiry'),
       count(*) FILTER (WHERE kind = 'booking'), sum(engagement_ms),
       count(DISTINCT visitor_id) FILTER (WHERE kind = 'view')
FROM profile_events pe JOIN organizations o ON o.id = pe.organization_id
GROUP BY 1, 2, 3
"""


async def run(database_url: str, work_dir: Path, events: int) -> list[Result]:
    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        rows = await conn.fetch(RAW_SQL)
        raw_seconds = time.perf_counter() - started
        profile_events = await conn.fetchval("SELECT count(*) FROM profile_events")
    finally:
        await conn.close()
    env = process_env(database_url, "memory://", work_dir / "data")
    proc = Proc("rebuild", [sys.executable, "-m", "app.cli", "rollups", "rebuild", "--json"], env, work_dir)
    started = time.perf_counter()
    proc.start()
    with ProcessSampler({"rebuild": proc.pid}, interval=0.05) as rss:
        proc.popen.wait()
    seconds = time.perf_counter() - started
    proc.stop()
    output = proc.log_path.read_text().strip().splitlines()
    stats = json.loads(next(line for line in reversed(output) if line.startswith("{")))
    return [
        Result(
            "B5", f"rebuild all rollups from {events:,} events (s, whole CLI process)", seconds,
            raw=raw_seconds, unit="s", raw_label="one SQL GROUP BY hour (no sketches, no writes)",
            ratio=seconds / raw_seconds, target="<= 10 s per 1M events",
            passed=seconds <= 10 * max(1, events / 1_000_000),
            extra={"service_seconds": stats["seconds"], "stats": stats, "profile_events": profile_events,
                   "raw_groups": len(rows), "rss_mb": rss.peak_of("rebuild")},
        )  # fmt: skip
    ]
