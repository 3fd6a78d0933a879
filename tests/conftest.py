"""Shared fixtures: a fresh PostgreSQL database per test session, the app, and tenants.

Tests never share data through a tenant: each test that writes gets its own organization
(the `tenant` fixture), which is also how production isolates customers. The database is
the one named by DATABASE_URL (a fresh database is created on that server), or an
embedded PostgreSQL when DATABASE_URL is unset.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.auth import Role, issue_token
from app.settings import Settings, override_settings

TEST_JWT_SECRET = "test-secret-" + "x" * 40
CHECKOUT = Path(__file__).resolve().parent.parent  # the embedded test server lives here: one per checkout


def _with_database(url: str, database: str) -> str:
    parsed = urlparse(url)
    return urlunparse(parsed._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def server_url() -> str:
    """A PostgreSQL server to create the test database on."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    from app.database import start_embedded_postgres

    data = Path(os.environ.get("PULSEGRAPH_TEST_PGDATA", CHECKOUT / ".pulsegraph-test" / "pgdata"))
    return start_embedded_postgres(data, database="postgres")


@pytest_asyncio.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    name = f"pulsegraph_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(server_url, name)
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    data_dir = tmp_path_factory.mktemp("pulsegraph-data")
    value = Settings(
        database_url=database_url,
        broadcast_url="memory://",
        data_dir=data_dir,
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


@dataclass
class Tenant:
    organization: Any
    profile: Any
    other_profile: Any
    ingestion_key: str
    admin_token: str
    org_admin_token: str
    provider_token: str
    service_token: str

    @property
    def org_id(self) -> str:
        return str(self.organization.id)

    @property
    def profile_id(self) -> str:
        return str(self.profile.id)


async def make_tenant(settings: Settings, *, timezone: str = "UTC", name: str | None = None) -> Tenant:
    from app.services import organizations as orgs

    org = await orgs.create_organization(name=name or f"Org {uuid.uuid4().hex[:8]}", timezone=timezone)
    profile = await orgs.create_profile(organization=org, name="Ada Provider")
    other = await orgs.create_profile(organization=org, name="Bea Creator")
    key = await orgs.create_ingestion_key(organization=org, name="test")
    return Tenant(
        organization=org,
        profile=profile,
        other_profile=other,
        ingestion_key=key.raw,
        admin_token=issue_token(role=Role.ADMIN, organization_id=None, settings=settings),
        org_admin_token=issue_token(role=Role.ORG_ADMIN, organization_id=org.id, settings=settings),
        provider_token=issue_token(role=Role.PROVIDER, organization_id=org.id, profile_id=profile.id, settings=settings),
        service_token=issue_token(role=Role.SERVICE, organization_id=org.id, settings=settings),
    )


@pytest_asyncio.fixture
async def tenant(app: Any, settings: Settings) -> Tenant:
    return await make_tenant(settings)


@pytest_asyncio.fixture
async def other_tenant(app: Any, settings: Settings) -> Tenant:
    return await make_tenant(settings)


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
) -> dict[str, Any]:
    """POST a GraphQL operation and return the decoded body (data and errors)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}}, headers=headers)
    assert response.headers["content-type"].startswith("application/json"), response.text
    return response.json()


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def settings_with(settings: Settings, **changes: Any) -> Settings:
    return replace(settings, **changes)
