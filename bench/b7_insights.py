"""B7: product insights through GraphQL (a real API process, result cache off, so every call
computes) against hand-written SQL for the same answer on the same database:

* trends: page views over 30 days, daily, broken down by country (top 10 + other);
* funnel: signup -> search -> booking, ordered, over 30 days, 7-day window; and the same
  broken down by country (first touch, top 10 + other);
* retention: weekly, 8 weeks, first-time cohorts of signup, returning with any page view;
* lifecycle: daily page-view lifecycle over 30 days.

The data: one organization (Europe/Berlin) with `--insight-events` product events over 120
days from ~300,000 persons (a tenth browsed anonymously, then identified), COPY'd straight into
`events` and `person_aliases`, each month's heap then put in time order as ingestion leaves it;
it stays in the database for `--reuse`.
"""

from __future__ import annotations

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

ORG_ID = uuid.UUID("00000000-0000-4000-8000-0000000000b7")
TIMEZONE = "Europe/Berlin"
DAYS = 120
COUNTRIES = ["DE", "US", "FR", "GB", "NL", "ES", "IT", "PL", "SE", "AT", "CH", "BE", "DK", "IE", "PT", "CZ", "NO",
             "FI", "IN", "BR", "CA", "AU", "JP", "MX", "ZA"]  # fmt: skip
PLANS = ["free", "pro", "team"]
TARGET = "p95 <= 1000 ms and <= 1.5x hand-written SQL p95"

TRENDS = """query($q: TrendsQueryInput!) { trends(query: $q) {
  series { breakdownValue total points { start value } } } }"""

RAW_TRENDS = """
WITH g AS (
    SELECT (date_trunc('day', occurred_at AT TIME ZONE $4) AT TIME ZONE $4) AS day, country, count(*) AS n
    FROM events
    WHERE organization_id = $1 AND type = 'page.viewed' AND occurred_at >= $2 AND occurred_at < $3
    GROUP BY 1, 2
), t AS (
    SELECT country, row_number() OVER (ORDER BY sum(n) DESC, country NULLS LAST) AS r FROM g GROUP BY 1
)
SELECT day, CASE WHEN t.r <= 10 THEN g.country::text ELSE '$other' END AS value, sum(n)
FROM g JOIN t ON t.country IS NOT DISTINCT FROM g.country
GROUP BY GROUPING SETS ((1, 2), (2))
"""

RETENTION = """query($q: RetentionQueryInput!) { retention(query: $q) { cohorts { start size counts } } }"""

# Weekly cohorts of first sign-ups (first ever, over all history) and their page views in
# each of the 8 weeks after: persons through identity links, weeks by local Monday starts.
RAW_RETENTION = """
WITH ev AS (
    SELECT COALESCE(pa.person_id, e.visitor_id) AS p, e.type, e.occurred_at
    FROM events e LEFT JOIN person_aliases pa ON pa.organization_id = e.organization_id AND pa.alias = e.visitor_id
    WHERE e.organization_id = $1 AND e.visitor_id IS NOT NULL AND e.type IN ('signup', 'page.viewed') AND e.occurred_at < $3
),
cohort AS (
    SELECT p, width_bucket(min(occurred_at), $4::timestamptz[]) AS c FROM ev WHERE type = 'signup' GROUP BY p
    HAVING min(occurred_at) >= $2 AND min(occurred_at) < $5
),
back AS (SELECT DISTINCT p, width_bucket(occurred_at, $4::timestamptz[]) AS w FROM ev WHERE type = 'page.viewed' AND occurred_at >= $2)
SELECT c, 0 AS k, count(*) FROM cohort GROUP BY 1
UNION ALL
SELECT c.c, b.w - c.c, count(*) FROM cohort c JOIN back b ON b.p = c.p AND b.w > c.c AND b.w <= c.c + 8 GROUP BY 1, 2
"""

LIFECYCLE = """query($q: LifecycleQueryInput!) { lifecycle(query: $q) { periods { start new returning resurrecting dormant } } }"""

# Daily page-view lifecycle: every page view up to the range's end (a person is new on the
# day of their first page view ever), each person's active days with the previous and next.
RAW_LIFECYCLE = """
WITH a AS (
    SELECT COALESCE(pa.person_id, e.visitor_id) AS p, width_bucket(e.occurred_at, $2::timestamptz[]) AS d
    FROM events e LEFT JOIN person_aliases pa ON pa.organization_id = e.organization_id AND pa.alias = e.visitor_id
    WHERE e.organization_id = $1 AND e.visitor_id IS NOT NULL AND e.type = 'page.viewed' AND e.occurred_at < $3
    GROUP BY 1, 2
),
m AS (SELECT d, lag(d) OVER w AS prev, lead(d) OVER w AS next FROM a WINDOW w AS (PARTITION BY p ORDER BY d))
SELECT d, count(*) FILTER (WHERE prev IS NULL) AS new, count(*) FILTER (WHERE prev = d - 1) AS returning,
       count(*) FILTER (WHERE prev < d - 1) AS resurrecting, 0 AS dormant
FROM m WHERE d >= 2 GROUP BY d
UNION ALL
SELECT d + 1, 0, 0, 0, count(*) FROM m WHERE d BETWEEN 1 AND $4 AND (next IS NULL OR next > d + 1) GROUP BY d + 1
"""

FUNNEL = """query($q: FunnelQueryInput!) { funnel(query: $q) {
  steps { index count conversionRate averageSecondsToConvert medianSecondsToConvert } } }"""

# signup -> search -> booking, ordered, 7-day window, entries in the range: the latest-start
# model (each step keeps the latest attempt standing on it; an event fills one step), persons
# through identity links, counts only: the funnel also computes times between steps, which
# this SQL leaves out, so it is a lower bound for the same answer.
RAW_FUNNEL = """
WITH ev AS (
    SELECT COALESCE(pa.person_id, e.visitor_id) AS p, e.occurred_at AS t, e.received_at AS r, e.event_id AS id, e.type
    FROM events e LEFT JOIN person_aliases pa ON pa.organization_id = e.organization_id AND pa.alias = e.visitor_id
    WHERE e.organization_id = $1 AND e.visitor_id IS NOT NULL AND e.type IN ('signup', 'search', 'booking')
      AND e.occurred_at >= $2 AND e.occurred_at <= $3::timestamptz + $4::interval
),
s0 AS (
    SELECT *, max(CASE WHEN type = 'signup' AND t < $3 THEN t END) OVER w AS l0
    FROM ev WINDOW w AS (PARTITION BY p ORDER BY t, r, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
s1 AS (
    SELECT *, CASE WHEN type = 'search' AND t <= l0 + $4::interval THEN l0 END AS c1 FROM s0
),
s2 AS (
    SELECT *, max(c1) OVER w AS l1
    FROM s1 WINDOW w AS (PARTITION BY p ORDER BY t, r, id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
),
persons AS (
    SELECT p, bool_or(type = 'signup' AND t < $3) AS at0, bool_or(c1 IS NOT NULL) AS at1,
           bool_or(type = 'booking' AND t <= l1 + $4::interval) AS at2
    FROM s2 GROUP BY p
)
SELECT count(*) FILTER (WHERE at0), count(*) FILTER (WHERE at1), count(*) FILTER (WHERE at2) FROM persons
"""

FUNNEL_BY_COUNTRY = """query($q: FunnelQueryInput!) { funnel(query: $q) {
  steps { count } breakdowns { value isOther steps { count } } } }"""

# The same funnel by the country of the counted attempt's sign-up (a person's country is theirs
# alone in this data, so any of their sign-ups gives it): the top 10 countries by persons at
# step 0 (ties to the lower value hash, as pulsegraph breaks them), then the others together.
RAW_FUNNEL_BY_COUNTRY = (
    RAW_FUNNEL.replace("e.event_id AS id, e.type", "e.event_id AS id, e.type, e.country::text AS country")
    .replace("SELECT p, bool_or(", "SELECT p, max(country) AS country, bool_or(")
    .split("\nSELECT count(*) FILTER")[0]
    + """,
g AS (
    SELECT country, count(*) FILTER (WHERE at0) AS n0, count(*) FILTER (WHERE at1) AS n1, count(*) FILTER (WHERE at2) AS n2
    FROM persons WHERE at0 GROUP BY 1
),
ranked AS (SELECT g.*, row_number() OVER (ORDER BY n0 DESC, hashtextextended(country, 0) NULLS FIRST) AS r FROM g)
SELECT CASE WHEN r <= 10 THEN country ELSE '$other' END, sum(n0), sum(n1), sum(n2) FROM ranked GROUP BY 1
"""
)


# -- data -------------------------------------------------------------------------------------


def product_events(count: int, *, seed: int, end: datetime) -> Iterator[tuple[Any, ...]]:
    """`count` events of persons who arrive over DAYS days and stay a few weeks: page views
    mostly, searches, listing views, a signup once and some bookings (EVENT_COLUMNS order)."""
    from app.services.ingestion import EVENT_COLUMNS

    rng = random.Random(seed)
    start = end - timedelta(days=DAYS)
    produced = 0
    column = {name: i for i, name in enumerate(EVENT_COLUMNS)}
    blank: list[Any] = [None] * len(EVENT_COLUMNS)
    blank[column["organization_id"]] = ORG_ID
    blank[column["properties"]] = "{}"
    blank[column["dnt"]] = False
    person = 0
    while produced < count:
        person += 1
        arrival = start + timedelta(seconds=rng.random() * DAYS * 86400)
        stay = timedelta(days=rng.expovariate(1 / 21))
        visits = max(1, int(rng.paretovariate(1.6) * 3))
        user = f"user-{seed}-{person}"
        anonymous = f"anon-{seed}-{person}" if person % 10 == 0 else None
        country = COUNTRIES[min(int(rng.paretovariate(1.2)) - 1, len(COUNTRIES) - 1)]
        plan = rng.choice(PLANS)
        signed_up = False
        for _ in range(visits):
            at = arrival + stay * rng.random()
            if at >= end:
                continue
            for step in range(rng.randint(1, 12)):
                at += timedelta(seconds=rng.randint(5, 300))
                kind = "page.viewed"
                roll = rng.random()
                if not signed_up and step == 0:
                    kind, signed_up = "signup", True
                elif roll < 0.22:
                    kind = "search"
                elif roll < 0.37:
                    kind = "listing.viewed"
                elif roll < 0.40:
                    kind = "booking"
                row = list(blank)
                row[column["occurred_at"]] = at
                row[column["event_id"]] = f"b7-{produced}"
                row[column["type"]] = kind
                known = anonymous is None or at > arrival + stay / 2
                row[column["visitor_id"]] = f"u:{user}" if known else f"a:{anonymous}"
                row[column["user_id"]] = user if known else None
                row[column["anonymous_id"]] = anonymous
                row[column["country"]] = country
                row[column["url"]] = f"https://market.example/{kind.replace('.', '/')}"
                if kind == "booking":
                    row[column["properties"]] = json.dumps({"plan": plan, "price": rng.randint(10, 900)})
                yield tuple(row)
                produced += 1
                if produced >= count:
                    return


async def loaded_events(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM events WHERE organization_id = $1", ORG_ID))


async def load(database_url: str, count: int, *, seed: int, end: datetime) -> float:
    """Bench setup (not a measurement): the organization, its events and identity links."""
    from app.services.ingestion import EVENT_COLUMNS

    started = time.perf_counter()
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute(
            "INSERT INTO organizations (id, slug, name, timezone, currency) VALUES ($1, 'b7', 'B7 market', $2, 'EUR')"
            " ON CONFLICT DO NOTHING",
            ORG_ID, TIMEZONE,
        )  # fmt: skip
        await ensure_partitions(conn, end - timedelta(days=DAYS + 1), end)
        batch: list[tuple[Any, ...]] = []
        aliases: set[tuple[str, str]] = set()
        anon_at, user_at = EVENT_COLUMNS.index("anonymous_id"), EVENT_COLUMNS.index("user_id")
        for row in product_events(count, seed=seed, end=end):
            batch.append(row)
            if row[anon_at] and row[user_at]:
                aliases.add((f"a:{row[anon_at]}", f"u:{row[user_at]}"))
            if len(batch) >= 100_000:
                await conn.copy_records_to_table("events", records=batch, columns=EVENT_COLUMNS)
                batch = []
        if batch:
            await conn.copy_records_to_table("events", records=batch, columns=EVENT_COLUMNS)
        await conn.copy_records_to_table(
            "person_aliases", records=[(ORG_ID, a, p) for a, p in aliases], columns=("organization_id", "alias", "person_id")
        )
        # Ingestion appends events in about the order they happen, so a month's heap is in time
        # order; the generator writes them person by person, so the heap is put in time order
        # as ingestion would have left it (rows a query reads by time then share pages).
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("CLUSTER events USING events_pkey")
        # what autovacuum does after a large insert: statistics, and the visibility map that
        # lets the funnel's index-only scans skip the heap
        await conn.execute("VACUUM (ANALYZE) events")
        await conn.execute("ANALYZE person_aliases")
    finally:
        await conn.close()
    return time.perf_counter() - started


async def ensure_partitions(conn: asyncpg.Connection, start: datetime, end: datetime) -> None:
    """The monthly partitions the range needs, as ingestion would create them."""
    from app.partitions import ensure, month_of

    months, day = set(), start
    while day <= end:
        months.add(("events", month_of(day)))
        day += timedelta(days=27)
    months.add(("events", month_of(end)))
    await ensure(conn, months)


# -- timing ---------------------------------------------------------------------------------


async def time_api(http: httpx.AsyncClient, token: str, body: dict[str, Any], repeats: int) -> tuple[list[float], Any]:
    samples, answer = [], None
    for _ in range(repeats + 1):
        started = time.perf_counter()
        response = await http.post("/graphql", content=orjson.dumps(body),
                                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
        elapsed = (time.perf_counter() - started) * 1000
        payload = response.json()
        if payload.get("errors"):
            raise SystemExit(f"B7 query failed: {payload['errors']}")
        samples.append(elapsed)
        answer = payload["data"]
    return samples[1:], answer  # the first call warms the process's caches


async def time_sql(
    conn: asyncpg.Connection, statement: str, args: tuple[Any, ...], repeats: int
) -> tuple[list[float], list[asyncpg.Record]]:
    samples, rows = [], []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        rows = await conn.fetch(statement, *args)
        samples.append((time.perf_counter() - started) * 1000)
    return samples[1:], rows


def checksum(answer: Any, rows: list[asyncpg.Record]) -> tuple[float, float]:
    """One number both answers must share: events counted, cohort cells, or lifecycle moves."""
    if "trends" in answer:
        api = sum(p["value"] for line in answer["trends"]["series"] for p in line["points"])
        return api, float(sum(r[2] for r in rows if r[0] is not None))
    if "retention" in answer:
        api = sum(c or 0 for cohort in answer["retention"]["cohorts"] for c in cohort["counts"])
        return float(api), float(sum(r[2] for r in rows))
    if "funnel" in answer and answer["funnel"].get("breakdowns"):
        api_groups = sorted((b["value"], *(step["count"] for step in b["steps"])) for b in answer["funnel"]["breakdowns"])
        sql_groups = sorted((r[0], *map(int, r[1:])) for r in rows)
        return float(sum(sum(g[1:]) for g in api_groups)), float(sum(sum(g[1:]) for g in sql_groups)) + (
            0.5 if api_groups != sql_groups else 0.0
        )  # the same sum, and the same groups
    if "funnel" in answer:
        return float(sum(step["count"] for step in answer["funnel"]["steps"])), float(sum(rows[0]))
    periods = answer["lifecycle"]["periods"][1:]  # the first period's previous one is not in the SQL's days
    api = sum((p["new"] or 0) + (p["returning"] or 0) + (p["resurrecting"] or 0) - (p["dormant"] or 0) for p in periods)
    return float(api), float(sum(r[1] + r[2] + r[3] + r[4] for r in rows if r[0] >= 3))


def local_days_back(days: int, now: datetime) -> tuple[datetime, datetime]:
    """The last `days` local days, today included: [start of the first, start of tomorrow)."""
    zone = ZoneInfo(TIMEZONE)
    today = now.astimezone(zone).date()
    end = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=zone).astimezone(UTC)
    start = datetime.combine(today - timedelta(days=days - 1), datetime.min.time(), tzinfo=zone).astimezone(UTC)
    return start, end


def cases(now: datetime) -> list[tuple[str, dict[str, Any], str, tuple[Any, ...]]]:
    """(name, GraphQL body, hand-written SQL, its arguments) per insight."""
    start, end = local_days_back(30, now)
    window = {"from": start.isoformat(), "to": end.isoformat()}
    trends = {
        "organizationId": str(ORG_ID), "range": window, "granularity": "DAY",
        "series": [{"event": "page.viewed"}], "breakdown": {"source": "DIMENSION", "key": "country", "limit": 10},
    }  # fmt: skip
    funnel = {
        "organizationId": str(ORG_ID), "range": window, "order": "ORDERED", "conversionWindowSeconds": 7 * 86400,
        "steps": [{"event": "signup"}, {"event": "search"}, {"event": "booking"}],
    }  # fmt: skip
    by_country = {**funnel, "breakdown": {"source": "DIMENSION", "key": "country", "limit": 10}}
    weeks = local_weeks(now)
    retention = {
        "organizationId": str(ORG_ID), "range": {"from": weeks[0].isoformat(), "to": weeks[8].isoformat()},
        "startEvent": {"event": "signup"}, "returnEvent": {"event": "page.viewed"}, "period": "WEEK", "periods": 8,
        "cohortKind": "FIRST_TIME", "mode": "EXACT",
    }  # fmt: skip
    days = local_day_starts(start, end)
    lifecycle = {"organizationId": str(ORG_ID), "range": window, "event": {"event": "page.viewed"}, "granularity": "DAY"}
    return [
        ("trends 30 d daily by country", {"query": TRENDS, "variables": {"q": trends}}, RAW_TRENDS,
         (ORG_ID, start, end, TIMEZONE)),
        ("funnel 3 steps ordered, 30 d, 7-day window", {"query": FUNNEL, "variables": {"q": funnel}}, RAW_FUNNEL,
         (ORG_ID, start, end, timedelta(days=7))),
        ("funnel by country, 3 steps, 30 d, 7-day window", {"query": FUNNEL_BY_COUNTRY, "variables": {"q": by_country}},
         RAW_FUNNEL_BY_COUNTRY, (ORG_ID, start, end, timedelta(days=7))),
        ("retention weekly, 8 weeks", {"query": RETENTION, "variables": {"q": retention}}, RAW_RETENTION,
         (ORG_ID, weeks[0], weeks[16], weeks[:-1], weeks[8])),
        ("lifecycle 30 d daily", {"query": LIFECYCLE, "variables": {"q": lifecycle}}, RAW_LIFECYCLE,
         (ORG_ID, [days[0] - (days[1] - days[0]), *days[:-1]], end, 30)),
    ]  # fmt: skip


def local_weeks(now: datetime) -> list[datetime]:
    """17 local Monday starts: the 8 cohort weeks ending 8 weeks ago, then 8 (+1) return weeks."""
    zone = ZoneInfo(TIMEZONE)
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    first = monday - timedelta(weeks=16)
    return [datetime.combine(first + timedelta(weeks=k), datetime.min.time(), tzinfo=zone).astimezone(UTC) for k in range(17)]


def local_day_starts(start: datetime, end: datetime) -> list[datetime]:
    """Local midnights from `start` to `end` inclusive."""
    zone = ZoneInfo(TIMEZONE)
    first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    return [datetime.combine(first + timedelta(days=k), datetime.min.time(), tzinfo=zone).astimezone(UTC)
            for k in range((last - first).days + 1)]  # fmt: skip


async def fold_queue(conn: asyncpg.Connection) -> None:
    """Fold the events COPY queued into the pre-aggregates, as a running worker does after
    ingestion: the API reads tables and queue together, so timing it over a queue of millions
    would measure a state a live installation leaves within minutes."""
    from app.services.insights import rollups

    started = time.perf_counter()
    folded = await rollups.fold(conn, batch=1_000_000)
    # what a worker does once it has folded this much (a vacuum of a clean queue costs nothing)
    await rollups.tidy(conn, folded_since_vacuum=rollups.VACUUM_QUEUE_AFTER, folded_since_analyze=rollups.ANALYZE_AGGREGATES_AFTER)
    if folded:
        print(f"B7: folded {folded:,} queued events into the aggregates in {time.perf_counter() - started:.0f} s"
              " (a worker's job, with its vacuum of the queue)", flush=True)  # fmt: skip


async def run(database_url: str, broadcast_url: str, work_dir: Path, *, events: int, repeats: int, seed: int) -> list[Result]:
    from app.auth import Role, issue_token
    from app.settings import Settings
    from bench.common import JWT_SECRET

    now = datetime.now(UTC)
    conn = await asyncpg.connect(database_url)
    await conn.execute("SET jit = off")  # as the insights run: compiling these aggregates costs more than it saves
    stored = await loaded_events(conn)
    setup = 0.0
    if stored < events:
        print(f"B7: loading {events - stored:,} product events with COPY ...", flush=True)
        setup = await load(database_url, events - stored, seed=seed + stored, end=now)
        stored = await loaded_events(conn)
        print(f"B7: loaded in {setup:.0f} s", flush=True)
    await fold_queue(conn)
    settings = Settings(database_url=None, broadcast_url="memory://", data_dir=Path("/tmp"), jwt_secret=JWT_SECRET)
    token = issue_token(role=Role.ORG_ADMIN, organization_id=ORG_ID, settings=settings)
    results: list[Result] = []
    stack = Stack(database_url, broadcast_url, work_dir / "b7")
    stack.env["PULSEGRAPH_RESULT_CACHE"] = "0"  # every call computes
    stack.env["PULSEGRAPH_STATEMENT_TIMEOUT_MS"] = "300000"  # measure what a slow answer costs, not the refusal
    with stack, ProcessSampler(stack.pids()) as rss:
        async with httpx.AsyncClient(base_url=stack.url, timeout=120, trust_env=False) as http:
            for name, body, statement, args in cases(now):
                print(f"B7: {name} ...", flush=True)
                api, answer = await time_api(http, token, body, repeats)
                raw, rows = await time_sql(conn, statement, args, repeats)
                ours, theirs = checksum(answer, rows)
                p50, p95, raw_p50, raw_p95 = (percentile(api, 0.5), percentile(api, 0.95),
                                              percentile(raw, 0.5), percentile(raw, 0.95))  # fmt: skip
                ratio = p95 / raw_p95
                results.append(
                    Result(
                        "B7", f"{name}: p95 ms ({stored:,} events)", p95, raw=raw_p95, unit="ms",
                        raw_label="hand-written SQL for the same answer, p95 ms", ratio=ratio, target=TARGET,
                        passed=p95 <= 1000 and ratio <= 1.5 and ours == theirs,
                        extra={"same_answer": ours == theirs, "checksum": ours, "sql_checksum": theirs, "p50_ms": p50, "p95_ms": p95, "raw_p50_ms": raw_p50, "raw_p95_ms": raw_p95,
                               "samples": len(api), "samples_ms": [round(x) for x in api], "setup_s": setup},
                    )  # fmt: skip
                )
    await conn.close()
    for r in results:
        r.extra["api_rss_mb"] = rss.peak_of("api")
    return results

