"""`pulsegraph serve` as an operator runs it: one process on an embedded PostgreSQL in its own
data dir, stopped with a signal; and the PostgreSQL processes a data dir left running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.support.processes import ROOT, free_port
from tests.support.settings import TEST_JWT_SECRET

READY_SECONDS = 120.0  # a first start runs initdb (and seeds the demo when asked)
STOP_SECONDS = 30.0


class Serve:
    """One real `pulsegraph serve` process on an embedded PostgreSQL in its own data dir."""

    def __init__(self, data_dir: Path, *, demo: bool = False, database_url: str | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        env = {**os.environ, "PULSEGRAPH_DATA_DIR": str(data_dir), "PULSEGRAPH_JWT_SECRET": TEST_JWT_SECRET,
               "PULSEGRAPH_DEMO": "1" if demo else "0", "BROADCAST_URL": "memory://", "PYTHONUNBUFFERED": "1"}  # fmt: skip
        env.pop("PULSEGRAPH_LOG_LEVEL", None)
        env.pop("DATABASE_URL", None)
        if database_url:
            env["DATABASE_URL"] = database_url
        self.output = data_dir.parent / f"serve-{self.port}.log"
        with open(self.output, "wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve", "--port", str(self.port)],
                cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            assert self.popen.poll() is None, f"serve exited with {self.popen.returncode}:\n{self.text()}"
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve was not ready in {READY_SECONDS:.0f}s:\n{self.text()}")

    def stop(self, signum: int = signal.SIGTERM) -> int:
        self.popen.send_signal(signum)
        return self.popen.wait(STOP_SECONDS)

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(STOP_SECONDS)


def postgres_serving(pgdata: Path) -> list[psutil.Process]:
    """The embedded PostgreSQL processes of this data dir, wherever their parent went."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline and cmdline[0].endswith("postgres") and str(pgdata) in cmdline:
            found.append(process)
    return found
