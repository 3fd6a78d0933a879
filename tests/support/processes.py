"""Child processes of the test session: started with `subprocess` from this checkout, their
output in a log file each, stopped by their own pid (SIGTERM, then SIGKILL after a timeout).

Nothing here runs in the test's event loop, and nothing ever signals a process by name.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.settings import TEST_JWT_SECRET

ROOT = Path(__file__).resolve().parents[2]  # the checkout: cwd and import path of every child
STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
LOG_TAIL_LINES = 150


def free_port() -> int:
    """A loopback port nobody listens on right now (it may be taken before it is bound)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(database_url: str, broadcast_url: str, data_dir: Path) -> dict[str, str]:
    """The environment of a server process: this checkout, the given database and bus, and
    the session's JWT secret (tokens issued by the test process are valid there)."""
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


@dataclass
class Process:
    """One child process with its output in a log file."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None

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
                print(f"[processes] {self.name} (pid {self.pid}) ignored SIGTERM for {timeout:.0f}s: SIGKILL")
                self.popen.kill()
                self.popen.wait(timeout)
        if self._log_file is not None:
            self._log_file.close()
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
