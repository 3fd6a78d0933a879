"""Real pulsegraph stacks for end-to-end tests: the API under uvicorn and the outbox worker.

A stack is started with `subprocess` (see tests/support/processes.py), is ready once
GET /healthz answers 200 with the bus connected, and is stopped by its processes' pids.
The kinds the fixtures offer (tests/support/stack_fixtures.py):

* split: `pulsegraph serve --no-worker` plus a separate `python -m workers.outbox`, sharing
  BROADCAST_URL = REDIS_URL when set, else the stack's database as postgres://. The API
  process never publishes, so every live message a subscriber gets crossed a process
  boundary through Redis or PostgreSQL.
* one process: `pulsegraph serve` with the worker in-process and BROADCAST_URL = memory://,
  the one-command mode of ./run.sh.
* two processes: `pulsegraph serve --workers 2` (two API processes behind one port, each
  with its in-process worker) over the cross-process broadcast; ready once both processes
  have answered /healthz.

Each stack gets its own database, created next to the session's test database (same server,
name suffixed) and dropped after the stack stops. A worker drains the whole outbox of its
database, so a worker process on the shared test database would claim events that another
stack, or another module's in-process `worker.drain()`, is waiting for, and publish them
where nobody listens. Tenants are made inside a stack's database by a helper process
(tests/support/provision.py); `stack.tenant()` hands out a fresh one per call.

A stack prints any tracebacks or ERROR lines its processes logged when it stops, even if
every test passed; `server_logs_on_failure` prints the tail of every log after a failure.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.support.postgres import create_database, drop_database
from tests.support.processes import Process, free_port, server_env
from tests.support.provision import StackTenant, provision_tenants

READY_TIMEOUT = 30.0  # seconds for an API process to answer /healthz
WORKER_SETTLE = 1.0  # a worker that dies at import or on a bad URL does so within this
START_ATTEMPTS = 3  # a free port can be taken between probing and binding it
PROVISION_BATCH = 12  # tenants made per helper process


def postgres_broadcast_url(database_url: str) -> str:
    """The test database as a broadcaster URL (`postgres://`, which the bus also accepts)."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgres"))


def cross_process_broadcast_url(database_url: str) -> str:
    return os.environ.get("REDIS_URL") or postgres_broadcast_url(database_url)


def broadcast_kind(url: str) -> str:
    return urlsplit(url).scheme.replace("postgresql", "postgres")


@dataclass
class Stack:
    """An API process (and maybe a worker process) serving some tests."""

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
                print(f"\n[stacks] {self.name}/{process.name} (pid {process.pid}) exited with {code} on SIGTERM")
        for process in self.processes:
            problems = process.problems()
            if problems:
                print(f"\n[stacks] {self.name}/{process.name} logged {len(problems)} error lines ({process.log_path}):")
                print("\n".join(problems[-60:]))


# Every stack that is running now, so a failing test can print their logs.
RUNNING: list[Stack] = []


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
    env = {**server_env(database_url, broadcast_url, work_dir / "data"), **(extra_env or {})}
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
            RUNNING.append(stack)
            print(
                f"\n[stacks] {name}: API pid {stack.api.pid} on {stack.base_url}"
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


@contextlib.contextmanager
def running_stack(name: str, **options: object) -> Iterator[Stack]:
    """`start_stack(...)` for one test: stopped (SIGTERM, then SIGKILL) however the test ends."""
    stack = start_stack(name, **options)  # type: ignore[arg-type]
    try:
        yield stack
    finally:
        stack.stop()
        with contextlib.suppress(ValueError):
            RUNNING.remove(stack)


@contextlib.contextmanager
def stack_with_database(
    name: str, suffix: str, server_database_url: str, work_dir: Path, *, broadcast_url: str | None, in_process_worker: bool,
    api_processes: int = 1,
) -> Iterator[Stack]:  # fmt: skip
    """A stack on a database of its own (created beside `server_database_url`, dropped after);
    `broadcast_url=None` means the cross-process bus (Redis, else PostgreSQL)."""
    database_url = create_database(server_database_url, suffix)
    try:
        with running_stack(
            name,
            database_url=database_url,
            broadcast_url=broadcast_url or cross_process_broadcast_url(database_url),
            work_dir=work_dir,
            in_process_worker=in_process_worker,
            api_processes=api_processes,
        ) as stack:
            yield stack
    finally:
        drop_database(server_database_url, database_url)
