"""`python -m bench`: create a database, load generated data, run B1-B10, print a table and
write bench/results/<timestamp>.json.

Every benchmark measures pulsegraph and its raw limit in the same run on the same data
(the machine is shared, so absolute numbers drift; the ratio is what to compare).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from bench import (
    b1_ingest,
    b2_e2e,
    b3_query,
    b4_live,
    b5_rollup,
    b6_live_modes,
    b7_insights,
    b8_experiments,
    b9_marketplace,
    b10_support_search,
)
from bench.common import (
    API_PROCESSES,
    ROOT,
    Result,
    create_database,
    drop_database,
    load_events,
    migrate,
    provision,
    server_url,
    tokens,
    with_database,
)
from bench.generator import Dataset

ALL = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000, help="stored events for B3/B5 (default 1,000,000)")
    parser.add_argument("--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run in about a minute")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--ingest-events", type=int, default=200_000, help="events sent through trackEvents in B1/B2")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP clients in B1/B2")
    parser.add_argument(
        "--api-processes", type=int, default=API_PROCESSES,
        help=f"`serve --workers` in B1/B2 (default {API_PROCESSES}); B3 and B4 run one API process",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=40, help="timed GraphQL calls per B3 query")
    parser.add_argument("--b4-sends", type=int, default=60, help="views sent per subscriber count in B4")
    parser.add_argument("--b6-sends", type=int, default=40, help="views sent one at a time per serving mode in B6")
    parser.add_argument(
        "--insight-events", type=int, default=10_000_000, help="product events of B7's organization (default 10,000,000)"
    )
    parser.add_argument(
        "--exposures", type=int, default=1_000_000, help="exposed persons of B8's experiment (default 1,000,000)"
    )
    parser.add_argument(
        "--b9-executions", type=int, default=10_000_000, help="service executions of B9's organization (default 10,000,000)"
    )
    parser.add_argument("--b9-clients", type=int, default=1000, help="SSE clients connected in B9 (default 1,000)")
    parser.add_argument("--b9-sends", type=int, default=20, help="executions sent one at a time to B9's SSE clients")
    parser.add_argument("--b9-seconds", type=float, default=30.0, help="seconds of single-event POST /track in B9")
    parser.add_argument("--b9-rate", type=int, default=200, help="POST /track requests per second in B9 (default 200)")
    parser.add_argument("--b10-orders", type=int, default=1_000_000, help="order transactions searched in B10 (default 1,000,000)")
    parser.add_argument("--b10-scans", type=int, default=1_000_000, help="ticket scans searched in B10 (default 1,000,000)")
    parser.add_argument("--db", default=None, help="database name (default pulsegraph_bench_<events>)")
    parser.add_argument("--reuse", action="store_true", help="reuse --db if it exists (skip loading)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args(argv)
    if args.quick:
        args.events = min(args.events, 100_000)
        args.ingest_events = min(args.ingest_events, 20_000)
        args.repeats = min(args.repeats, 10)
        args.b4_sends = min(args.b4_sends, 20)
        args.b6_sends = min(args.b6_sends, 10)
        args.insight_events = min(args.insight_events, 200_000)
        args.exposures = min(args.exposures, 50_000)
        args.b9_executions = min(args.b9_executions, 200_000)
        args.b9_clients = min(args.b9_clients, 100)
        args.b9_sends = min(args.b9_sends, 5)
        args.b9_seconds = min(args.b9_seconds, 5.0)
        args.b10_orders = min(args.b10_orders, 50_000)
        args.b10_scans = min(args.b10_scans, 50_000)
    args.only = [b.strip().upper() for b in args.only.split(",") if b.strip()]
    return args


def print_table(results: list[Result]) -> None:
    head = ("bench", "metric", "pulsegraph", "raw limit", "ratio", "target", "pass")
    rows = [head]
    for r in results:
        rows.append((
            r.bench, r.metric, _num(r.value, r.unit), _num(r.raw, r.unit), _ratio(r),
            r.target, {True: "PASS", False: "FAIL", None: "-"}[r.passed],
        ))  # fmt: skip
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(head))]
    widths[1] = min(widths[1], 70)
    for i, row in enumerate(rows):
        print("  ".join(str(cell)[: widths[j]].ljust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    for r in results:
        details = ", ".join(f"{k}={_short(v)}" for k, v in r.extra.items())
        print(f"  {r.bench} {r.metric[:50]}: raw = {r.raw_label}; {details}")


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit in ("events/s",):
        return f"{value:,.0f} {unit}"
    return f"{value:,.1f} {unit}" if value >= 10 else f"{value:,.2f} {unit}"


def _ratio(r: Result) -> str:
    if r.ratio is None:
        return "-"
    if r.bench == "B3":
        return f"{r.ratio:,.0f}x faster"
    if r.bench in ("B7", "B9", "B10"):
        return f"{r.ratio:.2f}x SQL"
    if r.bench == "B8":
        return f"{r.ratio:,.0f}x faster"
    if r.bench in ("B4", "B5", "B6", "RSS"):
        return f"{r.ratio:.1f}x raw"
    return f"{r.ratio:.0%} of raw"


def _short(value: object) -> str:
    if isinstance(value, dict):
        return "{" + " ".join(f"{k}:{_short(v)}" for k, v in value.items()) + "}"
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


async def stored_events(database_url: str) -> int:
    """Events in a reused database (it may have been loaded with another --events)."""
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM events"))
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> list[Result]:
    server = server_url()
    name = args.db or f"pulsegraph_bench_{args.events}"
    database_url = with_database(server, name)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    work_dir = Path(os.environ.get("PULSEGRAPH_BENCH_DIR", f"/tmp/pulsegraph-bench-{stamp}"))
    work_dir.mkdir(parents=True, exist_ok=True)
    broadcast_url = os.environ.get("REDIS_URL") or database_url.replace("postgresql://", "postgres://", 1)
    dataset = Dataset(seed=args.seed)
    keys = tokens(dataset)
    fresh = await create_database(server, name, reuse=args.reuse)
    setup: dict[str, float] = {}
    if not fresh:
        dataset.run_tag = f"{stamp}-"
    results: list[Result] = []
    try:
        if fresh:
            await migrate(database_url, work_dir / "data")
            conn = await asyncpg.connect(database_url)
            await provision(conn, dataset)
            await conn.close()
        if not fresh and ({"B3", "B5"} & set(args.only)):
            args.events = await stored_events(database_url)  # label the rows with what is there
        if fresh and ({"B3", "B5"} & set(args.only)):
            print(f"setup: loading {args.events:,} generated events with COPY (events + profile_events) ...", flush=True)
            setup = await load_events(database_url, dataset, args.events, end=datetime.now(UTC))
            print(f"setup: loaded in {setup['seconds']:.1f} s", flush=True)
        if "B5" in args.only or ("B3" in args.only and fresh):
            print("B5: rebuilding rollups ...", flush=True)
            b5 = await b5_rollup.run(database_url, work_dir, args.events)
            if "B5" in args.only:
                results += b5
        if "B3" in args.only:
            print("B3: queries ...", flush=True)
            results += await b3_query.run(
                database_url, broadcast_url, work_dir, dataset, keys, args.events,
                repeats=args.repeats, raw_repeats=max(3, args.repeats // 8),
            )  # fmt: skip
        if {"B1", "B2", "B4", "B6"} & set(args.only) and not fresh:
            # A reused database carries the dead outbox/session rows of earlier runs; on a
            # server with autovacuum off (or behind) the worker's claim query walks them all.
            conn = await asyncpg.connect(database_url)
            await conn.execute("UPDATE outbox SET processed_at = now() WHERE processed_at IS NULL")
            await conn.execute("VACUUM (ANALYZE) outbox, sessions")
            await conn.close()
        if "B4" in args.only:
            print("B4: live subscriptions ...", flush=True)
            results += await b4_live.run(database_url, broadcast_url, work_dir, dataset, keys, sends=args.b4_sends)
        if "B6" in args.only:
            print("B6: live delay by serving mode ...", flush=True)
            results += await b6_live_modes.run(database_url, broadcast_url, work_dir, dataset, keys, sends=args.b6_sends)
        if "B7" in args.only:
            print("B7: insights ...", flush=True)
            results += await b7_insights.run(
                database_url, broadcast_url, work_dir, events=args.insight_events, repeats=args.repeats, seed=args.seed
            )
        if "B8" in args.only:
            print("B8: experiment results ...", flush=True)
            results += await b8_experiments.run(
                database_url, broadcast_url, work_dir, exposures=args.exposures, repeats=args.repeats, seed=args.seed
            )
        if "B9" in args.only:
            print("B9: marketplace ...", flush=True)
            results += await b9_marketplace.run(
                database_url, broadcast_url, work_dir, executions_count=args.b9_executions, clients=args.b9_clients,
                sends=args.b9_sends, track_seconds=args.b9_seconds, repeats=args.repeats, seed=args.seed, rate=args.b9_rate,
                api_processes=args.api_processes,
            )  # fmt: skip
        if "B10" in args.only:
            print("B10: support search ...", flush=True)
            results += await b10_support_search.run(
                database_url, broadcast_url, work_dir, orders=args.b10_orders, scans=args.b10_scans,
                repeats=max(args.repeats * 5, 60), seed=args.seed,
            )
        if "B1" in args.only:
            print(f"B1: ingest {args.ingest_events:,} events ...", flush=True)
            b1, _ = await b1_ingest.run(
                database_url, broadcast_url, work_dir, dataset, keys, events=args.ingest_events, clients=args.clients,
                api_processes=args.api_processes,
            )  # fmt: skip
            results += b1
        if "B2" in args.only:
            for workers in (1, 2):
                print(f"B2: end to end with {workers} worker(s) ...", flush=True)
                results += await b2_e2e.run(
                    database_url, broadcast_url, work_dir, dataset, keys, events=args.ingest_events,
                    clients=args.clients, workers=workers, stream_base=2000 + 100 * workers,
                    api_processes=args.api_processes,
                )  # fmt: skip
    finally:
        if not args.keep:
            await drop_database(server, name)
    for r in results:
        r.extra.setdefault("setup", setup) if r.bench in ("B3", "B5") else None
    results += rss_summary(results)
    return results


def rss_summary(results: list[Result]) -> list[Result]:
    """Peak RSS of the API and worker processes over every benchmark of the run: the largest
    single process (the target), and for the API the peak sum of its processes per benchmark."""
    out = []
    for role in ("api", "worker"):
        peaks: dict[str, float] = {}
        sums: dict[str, float] = {}
        for r in results:
            if r.extra.get(f"{role}_rss_mb"):
                peaks[r.bench] = max(peaks.get(r.bench, 0.0), r.extra[f"{role}_rss_mb"])
            if r.extra.get(f"{role}_rss_sum_mb"):
                sums[r.bench] = max(sums.get(r.bench, 0.0), r.extra[f"{role}_rss_sum_mb"])
        if peaks:
            peak = max(peaks.values())
            extra = {"per_bench_mb": peaks, **({"sum_of_processes_per_bench_mb": sums} if sums else {})}
            out.append(Result("RSS", f"peak {role} process RSS over {','.join(sorted(peaks))}", peak, unit="MB",
                              target="<= 300 MB per process", passed=peak <= 300, raw_label="-", extra=extra))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    results = asyncio.run(run(args))
    print()
    print_table(results)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    meta = {
        "argv": sys.argv[1:], "events": args.events, "ingest_events": args.ingest_events, "clients": args.clients,
        "seed": args.seed, "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                       "platform": platform.platform()},
        "seconds": time.perf_counter() - started,
    }  # fmt: skip
    path.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2, default=str))
    print(f"\nresults: {path}")
    return 0 if all(r.passed is not False for r in results) else 1
