"""`pulsegraph serve` as an operator meets it: a busy port, the first screen, and stopping it
with the signals systemd, Docker and a terminal send, with the embedded PostgreSQL."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import ROOT
from tests.support.serve import READY_SECONDS, Serve, postgres_serving
from tests.support.settings import TEST_JWT_SECRET


def handles(pgdata: Path) -> list[int]:
    path = pgdata / ".handle_pids.json"
    return json.loads(path.read_text()) if path.exists() else []


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "data"
    yield folder
    for process in postgres_serving(folder / "pgdata"):  # never leave a server behind, pass or fail
        process.kill()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stopping_serve_stops_its_embedded_postgres(data_dir, signum):
    serve = Serve(data_dir)
    serve.wait_ready()
    assert postgres_serving(serve.pgdata), "the embedded PostgreSQL should run while serve does"

    assert serve.stop(signum) == 128 + signum, serve.text()
    assert postgres_serving(serve.pgdata) == [], serve.text()
    assert handles(serve.pgdata) == []


@pytest.mark.slow
def test_a_killed_servers_postgres_is_stopped_by_the_next_serve(data_dir):
    """SIGKILL leaves the server running and the dead pid in its handle file; the next start
    forgets that pid, so stopping it stops PostgreSQL too."""
    first = Serve(data_dir)
    first.wait_ready()
    first.kill()
    assert postgres_serving(first.pgdata) and handles(first.pgdata) == [first.popen.pid]

    second = Serve(data_dir)
    try:
        second.wait_ready()
        assert handles(second.pgdata) == [second.popen.pid]
        assert second.stop() == 128 + signal.SIGTERM, second.text()
    finally:
        second.kill()
    assert postgres_serving(second.pgdata) == []


@pytest.mark.slow
def test_the_banner_comes_first_and_the_port_already_answers(data_dir):
    """What a newcomer sees first is the banner, not library or initdb chatter, and by the
    time it is printed the port takes connections."""
    serve = Serve(data_dir, demo=True)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while "pulsegraph is ready" not in serve.text():
            assert serve.popen.poll() is None and time.monotonic() < deadline, serve.text()
            time.sleep(0.05)
        socket.create_connection(("127.0.0.1", serve.port), timeout=2).close()
        lines = [line for line in serve.text().splitlines() if line.strip()]
        assert lines[0].startswith("pulsegraph is ready"), serve.text()
        assert not [line for line in lines if " INFO " in line or "initdb" in line or "Running commandline" in line]
        serve.wait_ready()
        assert serve.stop() == 128 + signal.SIGTERM
    finally:
        serve.kill()


def test_a_busy_port_is_one_clear_line_before_anything_starts(data_dir, database_url):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**os.environ, "DATABASE_URL": database_url, "PULSEGRAPH_DATA_DIR": str(data_dir),
               "PULSEGRAPH_JWT_SECRET": TEST_JWT_SECRET, "PULSEGRAPH_DEMO": "1"}  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""  # no banner, no token
    assert done.stderr.strip().splitlines() == [f"error: port {port} on 127.0.0.1 is already in use; choose another with --port"]


@pytest.mark.slow
def test_cli_commands_are_quiet_unless_asked(data_dir):
    """On the embedded PostgreSQL, a command prints its answer and nothing else; --verbose
    adds pulsegraph's own progress; only debug shows the library's command lines."""
    env = {**os.environ, "PULSEGRAPH_DATA_DIR": str(data_dir), "PULSEGRAPH_JWT_SECRET": TEST_JWT_SECRET}
    env.pop("DATABASE_URL", None)
    env.pop("PULSEGRAPH_LOG_LEVEL", None)

    def migrate(*extra: str, **more_env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate", "--json", *extra], cwd=ROOT, env={**env, **more_env},
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.strip().splitlines()) == 1 and json.loads(done.stdout)["applied"]
        return done

    assert migrate().stderr == ""
    verbose = migrate("--verbose").stderr
    assert " INFO pulsegraph.database: DATABASE_URL is not set" in verbose
    assert "Running commandline" not in verbose
    assert "Running commandline" in migrate(PULSEGRAPH_LOG_LEVEL="debug").stderr
    assert postgres_serving(data_dir / "pgdata") == []  # each command stopped the server it started
