"""What every benchmark needs: a database of its own, real API/worker processes with RSS
sampling, bench data loading, percentiles and result rows."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

from bench.generator import PROFILE_EVENT_COLUMNS, Dataset, event_record, profile_event_record

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "bench-secret-" + "b" * 40
EMAIL_HASH_SECRET = "bench-email-secret-" + "e" * 40  # B10 hashes its buyers' emails with it, as the API does


# -- results --------------------------------------------------------------------------------


@dataclass
class Result:
    bench: str
    metric: str
    value: float | None
    raw: float | None = None
    unit: str = ""
    raw_label: str = ""
    ratio: float | None = None  # value / raw, or raw / value for latencies (see `better`)
    target: str = ""
    passed: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- the database ---------------------------------------------------------------------------


def server_url() -> str:
    """DATABASE_URL's server, or an embedded PostgreSQL (like tests/conftest.py)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from app.database import start_embedded_postgres

    data = ROOT / ".pulsegraph" / "bench-pgdata"
    data.parent.mkdir(parents=True, exist_ok=True)
    return start_embedded_postgres(data, database="postgres")


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def create_database(server: str, name: str, *, reuse: bool) -> bool:
    """True when a new database was made (False: reusing an existing one)."""
    admin = await asyncpg.connect(server)
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists and reuse:
            return False
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await admin.close()


async def drop_database(server: str, name: str) -> None:
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def migrate(database_url: str, data_dir: Path) -> None:
    """Apply the migrations the way the app does (a helper process, so this one stays clean)."""
    env = process_env(database_url, "memory://", data_dir)
    code = "import asyncio;from app.settings import get_settings;from app.database import init_database,close_database\n" \
        "async def m():\n    await init_database(get_settings());await close_database()\nasyncio.run(m())"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"migration failed:\n{done.stdout}{done.stderr}")


async def provision(conn: asyncpg.Connection, dataset: Dataset) -> None:
    """Organizations and profiles with the dataset's deterministic ids."""
    for org in dataset.orgs:
        await conn.execute(
            "INSERT INTO organizations (id, slug, name, timezone, currency) VALUES ($1, $2, $3, $4, 'EUR')"
            " ON CONFLICT DO NOTHING",
            org.id, org.slug, org.name, org.timezone,
        )  # fmt: skip
        await conn.copy_records_to_table(
            "profiles",
            records=[(org.id, p, f"p-{i}", f"Profile {i}") for i, p in enumerate(org.profiles)],
            columns=("organization_id", "id", "slug", "name"),
        )


def tokens(dataset: Dataset) -> dict[str, dict[str, str]]:
    from app.auth import Role, issue_token
    from app.settings import Settings

    settings = Settings(database_url=None, broadcast_url="memory://", data_dir=Path("/tmp"), jwt_secret=JWT_SECRET)
    out = {}
    for org in dataset.orgs:
        out[str(org.id)] = {
            "service": issue_token(role=Role.SERVICE, organization_id=org.id, settings=settings),
            "org_admin": issue_token(role=Role.ORG_ADMIN, organization_id=org.id, settings=settings),
            "provider": issue_token(
                role=Role.PROVIDER, organization_id=org.id, profile_id=org.top_profile, settings=settings
            ),
        }
    return out


async def load_events(
    database_url: str, dataset: Dataset, count: int, *, end: datetime, days: int = 365, progress: bool = True
) -> dict[str, float]:
    """Bench setup (not a measurement of the API): COPY `count` generated events straight into
    `events` and the worker's `profile_events`, on two connections in parallel."""
    start = end - timedelta(days=days)
    from app.services.ingestion import EVENT_COLUMNS

    started = time.perf_counter()
    conns = [await asyncpg.connect(database_url) for _ in range(2)]
    try:
        for conn in conns:
            await conn.execute("SET synchronous_commit = off")
        org_ids = {o.index: o.id for o in dataset.orgs}
        chunk = 50_000
        loaded = 0
        pending: list[asyncio.Task] = []
        events: list[tuple] = []
        profile_events: list[tuple] = []

        async def flush(ev: list[tuple], pe: list[tuple]) -> None:
            await asyncio.gather(
                conns[0].copy_records_to_table("events", records=ev, columns=EVENT_COLUMNS),
                conns[1].copy_records_to_table("profile_events", records=pe, columns=PROFILE_EVENT_COLUMNS),
            )

        for event in dataset.events(count, start=start, end=end):
            org_id = org_ids[event.org]
            events.append(event_record(event, org_id))
            record = profile_event_record(event, org_id)
            if record is not None:
                profile_events.append(record)
            if len(events) >= chunk:
                if pending:
                    await pending.pop()
                pending.append(asyncio.create_task(flush(events, profile_events)))
                await asyncio.sleep(0)
                loaded += len(events)
                events, profile_events = [], []
                if progress and loaded % 1_000_000 == 0:
                    rate = loaded / (time.perf_counter() - started)
                    print(f"  loaded {loaded:,} events ({rate:,.0f}/s)", flush=True)
        if pending:
            await pending.pop()
        if events:
            await flush(events, profile_events)
        await conns[0].execute("ANALYZE events")
        await conns[0].execute("ANALYZE profile_events")
    finally:
        for conn in conns:
            await conn.close()
    return {"events": count, "seconds": time.perf_counter() - started}


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_env(database_url: str, broadcast_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "BROADCAST_URL": broadcast_url,
        "PULSEGRAPH_DATA_DIR": str(data_dir),
        "PULSEGRAPH_JWT_SECRET": JWT_SECRET,
        "PULSEGRAPH_EMAIL_HASH_SECRET": EMAIL_HASH_SECRET,
        "PULSEGRAPH_DEMO": "0",
        "PULSEGRAPH_INGEST_RATE": "100000000",  # the bench measures throughput, not the limiter
        "PULSEGRAPH_INGEST_BURST": "100000000",
        "PULSEGRAPH_LOG_LEVEL": "WARNING",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


class Proc:
    """A child process (API or worker) with its log file and RSS peak sampling."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.popen: subprocess.Popen | None = None
        self._log = None

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def stop(self, timeout: float = 15) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout)
        if self._log:
            self._log.close()
            self._log = None


class ProcessSampler:
    """Peak RSS (MB) of the given processes, the peak of each group's sum, and the CPU time
    each group used while sampled, every `interval` seconds in a thread. A group is one
    process (its pid) or several (a callable returning {label: pid}, e.g. the API's
    processes behind one port). CPU time per event says what a change saved even when the
    shared machine's load makes events/s drift."""

    def __init__(self, procs: dict[str, int | Callable[[], dict[str, int]]], interval: float = 0.1) -> None:
        self.procs = procs
        self.interval = interval
        self.peak: dict[str, float] = {}
        self.peak_sum: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._cpu_used: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _handles(self) -> dict[str, tuple[str, psutil.Process]]:
        """{label: (group, process)} for every process sampled."""
        handles: dict[str, tuple[str, psutil.Process]] = {}
        for group, pid_or_pids in self.procs.items():
            if callable(pid_or_pids):
                for label, pid in pid_or_pids().items():
                    handles[label] = (group, psutil.Process(pid))
            else:
                handles[group] = (group, psutil.Process(pid_or_pids))
        return handles

    def _run(self) -> None:
        handles = self._handles()
        started = {label: _cpu(handle) for label, (_, handle) in handles.items()}
        while not self._stop.is_set():
            totals: dict[str, float] = {}
            for label, (group, handle) in handles.items():
                with contextlib.suppress(psutil.Error):
                    rss = handle.memory_info().rss / 2**20
                    self.peak[label] = max(self.peak.get(label, 0.0), rss)
                    totals[group] = totals.get(group, 0.0) + rss
            for group, total in totals.items():
                self.peak_sum[group] = max(self.peak_sum.get(group, 0.0), total)
            self._add_cpu(handles, started)
            self._stop.wait(self.interval)

    def _add_cpu(self, handles: dict[str, tuple[str, psutil.Process]], started: dict[str, float]) -> None:
        """CPU seconds per group since sampling started (a process that is gone keeps its last)."""
        for label, (_, handle) in handles.items():
            now = _cpu(handle)
            if now:
                self._cpu_used[label] = now - started[label]
        self.cpu_seconds = {}
        for label, used in self._cpu_used.items():
            group = handles[label][0]
            self.cpu_seconds[group] = self.cpu_seconds.get(group, 0.0) + used

    def peak_of(self, group: str) -> float:
        """The largest single process of the group (the per-process RSS target)."""
        return max((v for k, v in self.peak.items() if k == group or k.startswith(f"{group}-")), default=0.0)

    def api_extra(self, events: int) -> dict[str, Any]:
        """What B1/B2 report about the API: each process's RSS peak, the largest and their
        sum, and the CPU time all of them used per event."""
        per_process = {k: round(v, 1) for k, v in self.peak.items() if k.startswith("api")}
        return {"api_rss_mb": self.peak_of("api"), "api_rss_sum_mb": self.peak_sum.get("api", 0.0),
                "api_rss_per_process_mb": per_process,
                "api_cpu_us_per_event": self.cpu_seconds.get("api", 0.0) / max(events, 1) * 1e6}  # fmt: skip

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu(handle: psutil.Process) -> float:
    """User + system CPU seconds of a process so far (0.0 once it is gone)."""
    with contextlib.suppress(psutil.Error):
        times = handle.cpu_times()
        return times.user + times.system
    return 0.0


API_PROCESSES = 2  # `serve --workers` of B1/B2 (the bench's --api-processes); B3 and B4 use one


class Stack:
    """`pulsegraph serve --no-worker --workers N` plus M `pulsegraph worker` processes; or, with
    `in_process_worker`, `serve` running the worker itself (the one-process mode)."""

    def __init__(
        self, database_url: str, broadcast_url: str, work_dir: Path, *, workers: int = 0, api_processes: int = 1,
        tag: str = "", in_process_worker: bool = False,
    ) -> None:  # fmt: skip
        work_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.env = process_env(database_url, broadcast_url, work_dir / "data")
        py = sys.executable
        serve = [py, "-m", "app.cli", "serve", "--no-demo", "--host", "127.0.0.1",
                 "--port", str(self.port), "--log-level", "warning"]  # fmt: skip
        if not in_process_worker:
            serve.append("--no-worker")
        if api_processes > 1:
            serve += ["--workers", str(api_processes)]
        self.api = Proc(f"api{tag}", serve, self.env, work_dir)
        self.api_processes = api_processes
        self.work_dir = work_dir
        self.tag = tag
        self.spies: list[subprocess.Popen] = []
        self.workers = [Proc(f"worker{tag}-{i}", [py, "-m", "workers.outbox"], self.env, work_dir) for i in range(workers)]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serving_pids(self) -> list[int]:
        """The processes that answer requests: `serve` itself, or the ones uvicorn spawned."""
        if self.api_processes == 1:
            return [self.api.pid]
        children = psutil.Process(self.api.pid).children()
        return [c.pid for c in children if "spawn_main" in " ".join(c.cmdline())]

    def api_pids(self) -> dict[str, int]:
        """Every API process by label; with several, uvicorn's supervisor counts too."""
        if self.api_processes == 1:
            return {"api": self.api.pid}
        serving = {f"api-{i}": pid for i, pid in enumerate(self.serving_pids(), 1)}
        return {"api-supervisor": self.api.pid, **serving}

    def pids(self) -> dict[str, int | Callable[[], dict[str, int]]]:
        out: dict[str, int | Callable[[], dict[str, int]]] = {"api": self.api_pids}
        out.update({f"worker{i}": w.pid for i, w in enumerate(self.workers)})
        return out

    def start_workers(self) -> None:
        for worker in self.workers:
            worker.start()
            if os.environ.get("BENCH_PYSPY"):
                self.spies.append(self._spy(worker.pid, f"{worker.name}.pyspy.txt"))

    def _spy(self, pid: int, name: str) -> subprocess.Popen:
        """py-spy collapsed stacks of one process (BENCH_PYSPY=1), for profiling."""
        spy = str(Path(sys.executable).with_name("py-spy"))
        return subprocess.Popen([spy, "record", "--format", "raw", "--rate", "100", "--nonblocking",
                                 "--pid", str(pid), "-o", str(self.work_dir / name)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip

    def __enter__(self) -> Stack:
        self.api.start()
        deadline = time.monotonic() + 60
        answered: set[int] = set()
        # A new connection per probe: each is accepted by whichever API process is free.
        with httpx.Client(timeout=2, trust_env=False, headers={"Connection": "close"}) as http:
            while not self._serving(http, answered):
                if self.api.popen.poll() is not None:
                    raise SystemExit(f"API exited; see {self.api.log_path}")
                if time.monotonic() > deadline:
                    raise SystemExit(f"API not ready; see {self.api.log_path}")
                time.sleep(0.05)
        if os.environ.get("BENCH_PYSPY"):  # collapsed stacks of the API processes, for profiling
            for i, pid in enumerate(self.serving_pids(), 1):
                self.spies.append(self._spy(pid, f"api{self.tag}-{i}.pyspy.txt"))
        return self

    def _serving(self, http: httpx.Client, answered: set[int]) -> bool:
        """Every API process has answered /healthz (each names itself): all of them accept."""
        with contextlib.suppress(httpx.HTTPError):
            response = http.get(f"{self.url}/healthz")
            if response.status_code == 200:
                answered.add(response.json()["process"])
        serving = self.serving_pids()
        return len(serving) == self.api_processes and answered.issuperset(serving)

    def __exit__(self, *exc: object) -> None:
        for spy in self.spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        for worker in self.workers:
            worker.stop()
        self.api.stop()


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def now_utc() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> uuid.UUID:
    return uuid.uuid4()


def flatten(groups: Iterable[Iterable[Any]]) -> list[Any]:
    return [x for g in groups for x in g]
