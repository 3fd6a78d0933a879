"""The test world: a fresh PostgreSQL database per session, the real app on it, a worker,
and tenants. Helpers live in tests/support/; real server processes come from the fixtures
in tests/support/stack_fixtures.py, registered here once for every module.

The database is created on the server named by DATABASE_URL, or in an embedded PostgreSQL
when DATABASE_URL is unset, and dropped at the end of the session.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from app.settings import Settings, override_settings
from tests.support.postgres import create_session_database, drop_session_database, shared_server_url
from tests.support.receivers import SmtpReceiver, WebhookReceiver
from tests.support.settings import TEST_JWT_SECRET
from tests.support.tenants import Tenant, make_tenant

pytest_plugins = ["tests.support.stack_fixtures"]


@pytest.fixture(scope="session")
def server_url() -> str:
    """A PostgreSQL server to create the test database on."""
    return shared_server_url()


@pytest_asyncio.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    url = await create_session_database(server_url)
    yield url
    await drop_session_database(server_url, url)


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    value = Settings(
        database_url=database_url,
        broadcast_url="memory://",
        data_dir=tmp_path_factory.mktemp("pulsegraph-data"),
        jwt_secret=TEST_JWT_SECRET,
        demo_on_start=False,
    )
    override_settings(value)
    return value


@pytest_asyncio.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[Any]:
    """The real application with its lifespan running (database, bus, enrichment)."""
    from app.asgi import create_app

    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture(scope="session")
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest_asyncio.fixture(scope="session")
async def worker(app: Any, settings: Settings) -> Any:
    """An outbox worker bound to the app's bus; tests call `await worker.drain()`."""
    from workers.outbox import OutboxWorker

    return OutboxWorker(bus=app.state.bus, settings=settings, name="test")


@pytest_asyncio.fixture
async def tenant(app: Any, settings: Settings) -> Tenant:
    return await make_tenant(settings)


@pytest_asyncio.fixture
async def other_tenant(app: Any, settings: Settings) -> Tenant:
    return await make_tenant(settings)


@pytest.fixture(scope="module")
def smtp() -> Any:
    """A real local SMTP server for the module's tests (tests.support.receivers)."""
    server = SmtpReceiver()
    server.start()
    yield server
    server.stop()


@pytest_asyncio.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    """A real local HTTP receiver of webhooks, listening, for one test."""
    hook = WebhookReceiver()
    await hook.start()
    yield hook
    await hook.stop()
