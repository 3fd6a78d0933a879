"""The ASGI application: Starlette routes, lifespan, and the process-wide objects.

`create_app()` is the only factory; uvicorn, the CLI and the tests all use it. The lifespan
opens the database (embedded when DATABASE_URL is unset), the event bus and the enrichment
readers (reloaded when `pulsegraph geoip update` replaces their files), starts the revocation
watcher (app/revocation.py), the Server-Sent Events hub (GET /stream) and the API timing
recorder (app/services/system_health; GET /metrics), and optionally runs the outbox worker in
the same process for one-command use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator
from datetime import timedelta

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app.database import close_database, connection, init_database
from app.eventbus import EventBus
from app.geoip_reload import geoip_reloading
from app.graphiql import graphiql_assets
from app.graphql import PulsegraphGraphQL
from app.ratelimit import RateLimiter
from app.result_cache import result_cache
from app.revocation import RevocationWatcher
from app.services.enrichment import GeoLocator
from app.services.gov_detection import get_detector
from app.services.marketplace.stream import StreamHub
from app.services.system_health.metrics import metrics_endpoint
from app.services.system_health.recorder import recorder
from app.services.system_health.timing import TimedRoutes
from app.settings import Settings, get_settings
from resolvers.cohorts import members_csv_endpoint
from resolvers.ingestion import track_batch_endpoint, track_endpoint
from resolvers.marketplace import stream_endpoint
from schema import build_schema

log = logging.getLogger("pulsegraph.app")


class BodySizeLimit:
    """Refuse request bodies over the limit before anything parses them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            {"errors": [{"message": f"request body exceeds {self.max_bytes} bytes", "extensions": {"code": "PAYLOAD_TOO_LARGE"}}]},
            status_code=413,
        )
        await response(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


async def health(request: Request) -> JSONResponse:
    """Liveness plus the two dependencies that matter: database and event bus. With several
    API processes behind one port (`serve --workers N`) each answers for itself, so the
    answer names the process (its pid)."""
    database_ok = True
    try:
        async with connection() as conn:
            await conn.fetchval("SELECT 1")
    except Exception:  # noqa: BLE001 - health reports, it does not raise
        database_ok = False
    bus: EventBus = request.app.state.bus
    body = {
        "status": "ok" if database_ok else "degraded", "database": database_ok, "broadcast": bus.connected,
        "process": os.getpid(),
    }  # fmt: skip
    return JSONResponse(body, status_code=200 if database_ok else 503)


def create_app(
    settings: Settings | None = None, *, with_worker: bool = False, seed_demo: bool = False, public_url: str = "http://127.0.0.1:8000"
) -> Starlette:
    settings = settings or get_settings()
    graphql = PulsegraphGraphQL(
        build_schema(_extensions(settings)),
        keep_alive=settings.ws_keepalive_seconds > 0,
        keep_alive_interval=settings.ws_keepalive_seconds,
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout_seconds),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await init_database(settings, statement_timeout_ms=settings.statement_timeout_ms)
        app.state.bus = EventBus(settings.broadcast_url, queue_size=settings.subscriber_queue_size)
        # A self-hosted API starts without its broadcast backend (healthz: "broadcast": false)
        # and connects it in the background; queries and ingestion do not need it.
        await app.state.bus.connect(required=False)
        result_cache().enabled = settings.result_cache
        if settings.result_cache and settings.redis_url:
            result_cache().share(settings.redis_url)
        await result_cache().listen(app.state.bus)
        app.state.geo = GeoLocator(settings.geoip_city_db, settings.geoip_asn_db)
        detector = get_detector(settings)  # a missing or corrupt GeoIP file fails here, at start, not per request
        app.state.revocations = RevocationWatcher()
        app.state.revocations.add_listener(graphql.open_sockets.close_revoked)
        app.state.streams = StreamHub(
            app.state.bus, queue_size=settings.subscriber_queue_size, replay_events=settings.sse_replay_events,
            replay_seconds=settings.sse_replay_seconds,
        )  # fmt: skip
        app.state.revocations.add_listener(app.state.streams.close_revoked)
        await app.state.revocations.start()
        worker_task = None
        try:
            if seed_demo:
                from app.services.demo import ensure_demo

                await ensure_demo(settings, url=public_url)
            if settings.api_timings:
                recorder().start(interval_seconds=settings.api_timings_flush_seconds, bus=app.state.bus)
            if with_worker:
                worker_task = await _start_worker(app, settings)
            async with geoip_reloading([app.state.geo, detector], settings.geoip_reload_seconds):
                yield
        finally:
            if worker_task is not None:
                await app.state.worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            await recorder().stop(app.state.bus)
            await app.state.revocations.stop()
            await app.state.streams.close()
            await result_cache().close()
            await app.state.bus.disconnect()
            app.state.geo.close()
            await close_database()

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            graphiql_assets(),
            Route("/track", track_endpoint, methods=["POST"]),
            Route("/track/batch", track_batch_endpoint, methods=["POST"]),
            Route("/cohorts/{cohort_id}/members.csv", members_csv_endpoint, methods=["GET"]),
            Route("/stream", stream_endpoint, methods=["GET"]),
            Route("/healthz", health, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.ingest_rate_per_second, settings.ingest_rate_burst)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    # Bearer tokens, not cookies, carry credentials, so any origin may call the API; beacons
    # on customers' sites need this for fetch() with JSON or an Authorization header.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=["*"],
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=86400,
    )
    if settings.api_timings:
        app.add_middleware(TimedRoutes)
    return app


def _extensions(settings: Settings) -> list:
    from app.graphql import schema_extensions

    return schema_extensions(settings)


async def _start_worker(app: Starlette, settings: Settings) -> asyncio.Task:
    from workers.outbox import OutboxWorker
    from workers.scheduler import run_with_jobs

    app.state.worker = OutboxWorker(bus=app.state.bus, settings=settings, name="in-process")
    return asyncio.create_task(run_with_jobs(app.state.worker, settings), name="pulsegraph-worker")
