"""B3: profileOverview / profileTimeseries through GraphQL (a real API process, rollups
plus the open hour from raw events) against the same answer computed by plain SQL over the
raw `events` table, for 30 days daily, 90 days daily and 12 months monthly."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import orjson

from bench.common import ProcessSampler, Result, Stack, percentile
from bench.generator import Dataset

OVERVIEW = """query($id: ID!, $range: TimeRangeInput!) { profileOverview(profileId: $id, range: $range) {
  views uniqueVisitors inquiries conversions conversionRate avgTimeOnProfileSeconds
  topReferrers { referrer views } revenue { amountMinor currency } } }"""
SERIES = """query($id: ID!, $range: TimeRangeInput!, $g: Granularity!) {
  profileTimeseries(profileId: $id, range: $range, granularity: $g) { buckets views uniqueVisitors inquiries conversions engagementSeconds } }"""

RAW_OVERVIEW = [
    """SELECT count(*) FILTER (WHERE type = 'profile.viewed') AS views,
              count(DISTINCT visitor_id) FILTER (WHERE type = 'profile.viewed') AS visitors,
              count(*) FILTER (WHERE type = 'profile.inquiry') AS inquiries,
              count(DISTINCT visitor_id) FILTER (WHERE type = 'profile.inquiry') AS inquirers,
              count(*) FILTER (WHERE type = 'booking.completed') AS conversions,
              COALESCE(sum(engagement_ms), 0) AS engagement_ms
       FROM events WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4""",
    """SELECT COALESCE(referrer_domain, 'direct') AS referrer, count(*) AS views FROM events
       WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4
         AND type = 'profile.viewed' GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10""",
    """SELECT currency, sum(amount_minor) FROM events
       WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4
         AND type IN ('gift.purchased', 'booking.completed', 'subscription.charged') AND amount_minor IS NOT NULL
       GROUP BY 1 ORDER BY 1""",
]
RAW_SERIES = """
SELECT date_trunc($6, occurred_at AT TIME ZONE $5) AS bucket,
       count(*) FILTER (WHERE type = 'profile.viewed') AS views,
       count(DISTINCT visitor_id) FILTER (WHERE type = 'profile.viewed') AS visitors,
       count(*) FILTER (WHERE type = 'profile.inquiry') AS inquiries,
       count(*) FILTER (WHERE type = 'booking.completed') AS conversions,
       COALESCE(sum(engagement_ms), 0) AS engagement_ms
FROM events WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4
GROUP BY 1 ORDER BY 1
"""


def ranges(tz: str, now: datetime) -> dict[str, tuple[datetime, datetime, str]]:
    zone = ZoneInfo(tz)
    today = now.astimezone(zone).date()
    tomorrow = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    first = today.replace(day=1)
    for _ in range(11):
        first = (first - timedelta(days=1)).replace(day=1)
    return {
        "30 days, daily": (tomorrow - timedelta(days=30), tomorrow, "DAY"),
        "90 days, daily": (tomorrow - timedelta(days=90), tomorrow, "DAY"),
        "12 months, monthly": (datetime.combine(first, datetime.min.time(), tzinfo=zone), tomorrow, "MONTH"),
    }


async def _time_api(http: httpx.AsyncClient, token: str, body: dict[str, Any], repeats: int) -> tuple[list[float], Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    payload = orjson.dumps(body)
    samples = []
    answer = None
    for i in range(repeats + 3):
        started = time.perf_counter()
        response = await http.post("/graphql", content=payload, headers=headers)
        elapsed = (time.perf_counter() - started) * 1000
        answer = response.json()
        if "errors" in answer:
            raise SystemExit(f"B3 query failed: {answer['errors']}")
        if i >= 3:  # warm-up: parser/validation caches, connection pool
            samples.append(elapsed)
    return samples, answer


async def _time_sql(conn: asyncpg.Connection, statements: list[tuple[str, tuple]], repeats: int) -> list[float]:
    samples = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        for sql, args in statements:
            await conn.fetch(sql, *args)
        if i >= 1:
            samples.append((time.perf_counter() - started) * 1000)
    return samples


async def run(
    database_url: str, broadcast_url: str, work_dir: Path, dataset: Dataset, tokens: dict, events: int, *,
    repeats: int, raw_repeats: int,
) -> list[Result]:  # fmt: skip
    org = dataset.orgs[0]
    token = tokens[str(org.id)]["provider"]
    profile = str(org.top_profile)
    now = datetime.now(ZoneInfo("UTC"))
    results: list[Result] = []
    conn = await asyncpg.connect(database_url)
    profile_events = await conn.fetchval(
        "SELECT count(*) FROM events WHERE organization_id = $1 AND profile_id = $2", org.id, org.top_profile
    )
    with Stack(database_url, broadcast_url, work_dir / "b3") as stack, ProcessSampler(stack.pids()) as rss:
        async with httpx.AsyncClient(base_url=stack.url, timeout=60, trust_env=False) as http:
            for label, (start, end, grain) in ranges(org.timezone, now).items():
                range_ = {"from": start.isoformat(), "to": end.isoformat()}
                unit = grain.lower()
                cases = [
                    ("profileOverview", {"query": OVERVIEW, "variables": {"id": profile, "range": range_}},
                     [(sql, (org.id, org.top_profile, start, end)) for sql in RAW_OVERVIEW]),
                    (f"profileTimeseries ({unit})",
                     {"query": SERIES, "variables": {"id": profile, "range": range_, "g": grain}},
                     [(RAW_SERIES, (org.id, org.top_profile, start, end, org.timezone, unit))]),
                ]  # fmt: skip
                for name, body, statements in cases:
                    api, answer = await _time_api(http, token, body, repeats)
                    raw = await _time_sql(conn, statements, raw_repeats)
                    p50, p95, raw_p50, raw_p95 = (percentile(api, 0.5), percentile(api, 0.95),
                                                  percentile(raw, 0.5), percentile(raw, 0.95))  # fmt: skip
                    speedup = raw_p50 / p95
                    results.append(
                        Result(
                            "B3", f"{name} {label}: p95 ms ({events:,} events)", p95, raw=raw_p50, unit="ms",
                            raw_label="plain SQL over raw events, p50 ms", ratio=speedup,
                            target="p95 <= 30 ms and >= 50x faster than raw SQL",
                            passed=p95 <= 30 and speedup >= 50,
                            extra={"p50_ms": p50, "p95_ms": p95, "raw_p50_ms": raw_p50, "raw_p95_ms": raw_p95,
                                   "samples": len(api), "raw_samples": len(raw),
                                   "profile_raw_events": profile_events},
                        )  # fmt: skip
                    )
    await conn.close()
    for r in results:
        r.extra["api_rss_mb"] = rss.peak_of("api")
    return results
