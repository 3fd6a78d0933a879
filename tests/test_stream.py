"""GET /stream end to end: a real server process (API with its in-process worker), a real
SSE client over HTTP, events published through the API and processed by the worker, a real
reconnect with Last-Event-ID; the slow-consumer rule on the real event bus in-process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from app.auth import Role, Viewer
from app.eventbus import EventBus
from app.live_messages import MarketplaceCountersMessage
from app.services.marketplace.stream import StreamHub, StreamPlan, frames
from tests.support.postgres import create_database, drop_database
from tests.support.provision import STACK_PASSWORD, StackTenant
from tests.support.sse import SseEvent, open_stream
from tests.support.stacks import Stack, running_stack

pytestmark = pytest.mark.usefixtures("server_logs_on_failure")

HEARTBEAT = 0.5
PUBLISH = """mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted rejected { field reason } } }"""
TRACK = "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted } }"
LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
REMOVE = "mutation($o: ID!, $u: ID!) { removeMember(organizationId: $o, userId: $u) }"


@pytest.fixture(scope="module")
def stack(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    database = create_database(database_url, f"sse_{uuid.uuid4().hex[:6]}")
    try:
        with running_stack(
            "sse", database_url=database, broadcast_url="memory://", work_dir=tmp_path_factory.mktemp("sse"),
            in_process_worker=True, extra_env={"PULSEGRAPH_SSE_HEARTBEAT_SECONDS": str(HEARTBEAT)},
        ) as running:  # fmt: skip
            yield running
    finally:
        drop_database(database_url, database)


@pytest_asyncio.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=httpx.Timeout(20.0), trust_env=False) as client:
        yield client


async def graphql(http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = (await http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)).json()
    assert body.get("errors") is None, body
    return body["data"]


async def execute_and_buy(http: httpx.AsyncClient, tenant: StackTenant, *, executions: int, amount: int) -> None:
    tag = uuid.uuid4().hex[:8]
    now = datetime.now(UTC).isoformat()
    events = [
        {"eventId": f"{tag}-x{i}", "type": "SERVICE_EXECUTED", "occurredAt": now,
         "properties": {"serviceId": "resize", "latencyMs": 20 + i, "success": i % 4 != 3}}
        for i in range(executions)
    ] + [{"eventId": f"{tag}-c", "type": "MARKETPLACE_CONVERTED", "occurredAt": now, "userId": "buyer", "amountMinor": amount,
          "currency": "EUR", "properties": {"serviceId": "resize", "orderId": f"{tag}-o", "takeRateBps": 1000}}]  # fmt: skip
    published = (await graphql(http, PUBLISH, {"e": events}, tenant.service_token))["publishDomainEvents"]
    assert published["rejected"] == [], published


async def processed(stack: Stack) -> None:
    """Until the stack's worker has processed every event (its live messages go out right after)."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        async with asyncio.timeout(15):
            while await conn.fetchval("SELECT count(*) FROM outbox WHERE processed_at IS NULL"):
                await asyncio.sleep(0.05)
    finally:
        await conn.close()
    await asyncio.sleep(0.5)


def counters(event: SseEvent) -> dict[str, Any] | None:
    if event.event == "update" and event.data["channel"] == "counters":
        return event.data["data"]
    return None


async def test_connected_then_counters_then_live_updates_and_heartbeats(stack: Stack, http: httpx.AsyncClient) -> None:
    tenant = stack.tenant()
    async with open_stream(http, "/stream", params={"access_token": tenant.org_admin_token}) as sse:
        assert sse.response.status_code == 200
        assert sse.response.headers["content-type"].startswith("text/event-stream")
        connected = await sse.next()
        assert connected.event == "connected" and connected.id and connected.data["resumed"] is False
        assert connected.data["organizationId"] == tenant.org_id and connected.data["channels"] == ["counters"]
        first = counters(await sse.next())
        assert first is not None and (first["executions"], first["views"], first["revenue"]) == (0, 0, [])
        heartbeat = await sse.next(timeout=HEARTBEAT * 4)
        assert heartbeat.event == "comment" and heartbeat.data == "heartbeat"
        await execute_and_buy(http, tenant, executions=4, amount=2_500)
        latest = await sse.until(lambda e: (c := counters(e)) is not None and c["executions"] == 4 and c["revenue"])
        data = counters(latest)
        assert (data["errors"], data["conversions"], data["revenue"]) == (1, 1, [{"amountMinor": 2_500, "currency": "EUR"}])
        assert latest.id and latest.id.split("-")[0] == connected.id.split("-")[0]


async def test_a_bearer_header_and_channels_the_viewer_may_follow(stack: Stack, http: httpx.AsyncClient) -> None:
    tenant = stack.tenant()
    headers = {"Authorization": f"Bearer {tenant.org_admin_token}"}
    params = {"channels": f"views:{tenant.profile_id},revenue"}
    async with open_stream(http, "/stream", params=params, headers=headers) as sse:
        connected = await sse.next()
        assert connected.data["channels"] == ["counters", "revenue", f"views:{tenant.profile_id}"]
        assert counters(await sse.next()) is not None
        await graphql(http, TRACK, {"e": [{"type": "profile.viewed", "profileId": tenant.profile_id}]}, tenant.ingestion_key)
        view = await sse.until(lambda e: e.event == "update" and e.data["channel"] == f"views:{tenant.profile_id}")
        assert view.data["data"]["profileId"] == tenant.profile_id
    refused = [
        ({"access_token": tenant.org_admin_token, "channels": "nonsense"}, 400, "BAD_USER_INPUT"),
        ({"access_token": tenant.org_admin_token, "channels": f"views:{uuid.uuid4()}"}, 404, "NOT_FOUND"),
        ({"access_token": tenant.provider_token}, 403, "FORBIDDEN"),
        ({}, 401, "UNAUTHENTICATED"),
        ({"access_token": stack.tenant().org_admin_token, "organizationId": tenant.org_id}, 404, "NOT_FOUND"),
    ]
    for params, status, code in refused:
        response = await http.get("/stream", params=params)
        assert (response.status_code, response.json()["error"]["code"]) == (status, code), params


async def test_a_reconnect_with_last_event_id_resumes_where_it_left_off(stack: Stack, http: httpx.AsyncClient) -> None:
    tenant = stack.tenant()
    params = {"access_token": tenant.org_admin_token}
    async with open_stream(http, "/stream", params=params) as sse:
        await sse.next()
        await sse.next()
        await execute_and_buy(http, tenant, executions=2, amount=1_000)
        seen = await sse.until(lambda e: (c := counters(e)) is not None and c["executions"] == 2 and c["revenue"])
        last_id = sse.last_event_id
    assert last_id == seen.id
    # while the client is away: more executions, pushed to the stream's channel and logged
    await execute_and_buy(http, tenant, executions=3, amount=500)
    await processed(stack)
    async with open_stream(http, "/stream", params=params, headers={"Last-Event-ID": last_id}) as sse:
        connected = await sse.next()
        assert connected.event == "connected" and connected.data["resumed"] is True and connected.data["replayed"] >= 1
        missed = counters(await sse.next())
        assert missed is not None and missed["executions"] == 5
        assert missed["revenue"] == [{"amountMinor": 1_500, "currency": "EUR"}]
        assert int(sse.last_event_id.split("-")[1]) > int(last_id.split("-")[1])
    # an id this process never gave (another process, a restart): the stream starts over
    async with open_stream(http, "/stream", params={**params, "lastEventId": "0123456789ab-5"}) as sse:
        connected = await sse.next()
        assert connected.data["resumed"] is False
        fresh = counters(await sse.next())
        assert fresh is not None and fresh["executions"] == 5


async def test_a_revoked_credential_ends_its_stream(stack: Stack, http: httpx.AsyncClient) -> None:
    tenant = stack.tenant()
    access = (await graphql(http, LOGIN, {"e": tenant.viewer_email, "p": STACK_PASSWORD}, None))["login"]["accessToken"]
    kept = stack.tenant()
    async with open_stream(http, "/stream", params={"access_token": access}) as doomed, open_stream(
        http, "/stream", params={"access_token": kept.org_admin_token}
    ) as other:
        assert (await doomed.next()).event == "connected"
        assert (await other.next()).event == "connected"
        await graphql(http, REMOVE, {"o": tenant.org_id, "u": tenant.viewer_user_id}, tenant.org_admin_token)
        ended = await doomed.until(lambda e: e.event == "error", timeout=5.0)
        assert ended.data["code"] == "UNAUTHENTICATED"
        with pytest.raises(EOFError):
            await doomed.next(timeout=5.0)
        assert (await other.until(lambda e: e.event == "comment", timeout=5.0)).data == "heartbeat"
    response = await http.get("/stream", params={"access_token": access})
    assert response.status_code == 401


async def test_a_slow_consumer_is_dropped_and_resumes_from_the_log() -> None:
    """The stream's bounded queue on the real event bus: a client that reads nothing while more
    messages arrive than its queue holds gets SLOW_CONSUMER and no more; reconnecting with its
    last id replays what it missed."""
    bus = EventBus("memory://", queue_size=64)
    await bus.connect()
    org = uuid.uuid4()
    hub = StreamHub(bus, queue_size=4, replay_events=100, replay_seconds=60)
    channel = MarketplaceCountersMessage.channel_of(str(org))
    viewer = Viewer(subject="stream-test", role=Role.ORG_ADMIN, organization_id=org)
    plan = StreamPlan(viewer, org, {channel: "counters"})
    payload = lambda n: {"organizationId": str(org), "executions": n}  # noqa: E731
    try:
        async with hub.attach([channel]) as (_, start):
            last_seen = hub.event_id(start)
        stream = frames(hub, plan, last_event_id=last_seen, heartbeat_seconds=30)
        connected = await anext(stream)
        assert b"event: connected" in connected and b'"resumed":true' in connected
        for n in range(10):  # the client reads nothing meanwhile
            await bus.publish(channel, payload(n))
        await asyncio.sleep(0.1)
        chunks = [chunk async for chunk in stream]
        assert len(chunks) == 1 and b"event: error" in chunks[0] and b"SLOW_CONSUMER" in chunks[0]
        again = frames(hub, plan, last_event_id=last_seen, heartbeat_seconds=30)
        resumed = await anext(again)
        assert b'"replayed":10' in resumed
        replayed = [await anext(again) for _ in range(10)]
        assert [f'"executions":{n}'.encode() in chunk for n, chunk in enumerate(replayed)] == [True] * 10
        await again.aclose()
    finally:
        await hub.close()
        await bus.disconnect()
