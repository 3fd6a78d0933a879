"""Live subscriptions end to end: real server processes, real sockets, real clients.

Nothing here goes through an in-process ASGI transport. The servers come from
tests/support/stacks.py: `split_stack` runs the API (`serve --no-worker`) and the outbox worker as
two processes that only share PostgreSQL and the broadcast backend (Redis when REDIS_URL is
set, PostgreSQL LISTEN/NOTIFY otherwise), so every view a subscriber receives there was
published by another process. `memory_stack` is the one-process mode (memory bus, worker in
the API process). `two_process_stack` is `serve --workers 2` (each API process with its own
in-process worker).

Live delivery is at-most-once: a view processed before the server has subscribed its
channel is not pushed. There is no "subscribed" acknowledgement in either websocket
protocol, so each test first sends warm-up views (`eventId` "warmup-...", one shared
visitor) until every subscription of the test has delivered something; the views under test
are sent after that. Warm-ups still count in the engagement totals, so the expected
`views` of a snapshot is every view sent to the profile, warm-ups included.

Every wait is bounded (WAIT, or BARRIER_WAIT for the first barrier of a session, which
includes the worker process starting): a broken pipeline fails with the processes' logs
instead of hanging. How long delivery takes in each mode is a benchmark, not a test (B6 in
bench/).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.auth import Role, issue_token
from tests.support.live_views import (
    BARRIER_WAIT,
    ENGAGEMENT,
    VIEWS,
    WARMUP,
    assert_view,
    track,
    view_batch,
    view_event,
    warmup_event,
)
from tests.support.provision import StackTenant
from tests.support.stacks import Stack
from tests.support.websockets import LEGACY_WS, TRANSPORT_WS, WAIT, WsClient, ws_client
from tests.support.websockets import frame_error_codes as error_codes

pytestmark = pytest.mark.usefixtures("server_logs_on_failure")

WARMUP_EVERY = 0.5  # seconds between warm-up views while no subscription has answered
LEAK_GRACE = 1.0  # after the control subscriber got everything, how long a leak may take


@pytest.fixture
def tenant(split_stack: Stack) -> StackTenant:
    """A fresh organization in the split stack's own database (not conftest's `tenant`,
    which lives in the test process's database that no server process here uses)."""
    return split_stack.tenant()


@pytest.fixture
def other_tenant(split_stack: Stack) -> StackTenant:
    return split_stack.tenant()


@pytest.fixture
def memory_tenant(memory_stack: Stack) -> StackTenant:
    return memory_stack.tenant()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=WAIT, trust_env=False) as client:
        yield client


# -- waiting for live messages ----------------------------------------------------------------


async def wait_until_live(
    send_warmup: Callable[[], Awaitable[Any]], receivers: dict[str, Callable[[float], Awaitable[Any]]]
) -> int:
    """Send warm-up views until every receiver has delivered one message; returns how many
    warm-ups were sent (they all count in engagement totals, delivered or not)."""
    waiting = dict(receivers)
    sent = 0
    deadline = time.monotonic() + BARRIER_WAIT
    while waiting:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no live message on {sorted(waiting)} after {sent} warm-up views in {BARRIER_WAIT:.0f}s"
            )
        await send_warmup()
        sent += 1
        for name, receive in list(waiting.items()):
            with suppress(TimeoutError):
                # A failure other than silence (an error frame, a closed socket) fails now.
                await _receive_or_silence(receive, WARMUP_EVERY / len(receivers))
                del waiting[name]
    return sent


async def _receive_or_silence(receive: Callable[[float], Awaitable[Any]], timeout: float) -> None:
    try:
        await receive(timeout)
    except AssertionError as exc:
        if "nothing for operation" in str(exc):
            raise TimeoutError from exc
        raise _Fatal(str(exc)) from exc


class _Fatal(Exception):
    """Escapes wait_until_live's retry loop: the subscription failed, it is not just quiet."""


async def collect_views(
    next_view: Callable[[float], Awaitable[tuple[float, dict[str, Any]]]], sent: list[dict[str, Any]]
) -> dict[str, tuple[float, dict[str, Any]]]:
    """Every sent view, by eventId, with its arrival time; warm-ups are skipped, anything else
    fails (a view this test never sent, or one of them twice)."""
    wanted = {event["eventId"] for event in sent}
    got: dict[str, tuple[float, dict[str, Any]]] = {}
    deadline = time.monotonic() + WAIT
    while wanted - got.keys():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"received {len(got)} of {len(wanted)} views in {WAIT:.0f}s; missing {sorted(wanted - got.keys())}")
        try:
            at, view = await next_view(left)
        except AssertionError as exc:
            raise AssertionError(f"received {len(got)} of {len(wanted)} views; then: {exc}") from None
        event_id = view["eventId"]
        if event_id.startswith(WARMUP + "-"):
            continue
        assert event_id in wanted, f"a view this test never sent: {view}"
        assert event_id not in got, f"view {event_id} pushed twice"
        got[event_id] = (at, view)
    return got


async def snapshot_with_views(
    next_snapshot: Callable[[float], Awaitable[tuple[float, dict[str, Any]]]], views: int
) -> tuple[float, dict[str, Any]]:
    """The first snapshot whose running total reaches `views` (earlier batches give smaller
    totals); a larger total would mean views counted twice or someone else's."""
    deadline = time.monotonic() + WAIT
    seen: list[int] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no snapshot with views={views} in {WAIT:.0f}s; totals seen: {seen}")
        at, snapshot = await next_snapshot(left)
        seen.append(snapshot["views"])
        assert snapshot["views"] <= views, f"snapshot counts more views than were sent ({views}): {snapshot}"
        if snapshot["views"] == views:
            return at, snapshot


def assert_snapshot(snapshot: dict[str, Any], profile_id: str, *, views: int, visitors: int) -> None:
    assert snapshot["profileId"] == profile_id
    assert snapshot["views"] == views
    assert snapshot["uniqueVisitors"] == visitors, snapshot  # HyperLogLog is exact this small
    assert snapshot["inquiries"] == 0 and snapshot["conversionRate"] == 0.0, snapshot
    now = datetime.now(UTC)
    since = datetime.fromisoformat(snapshot["since"])
    assert since <= now and now - since <= timedelta(days=1), snapshot  # start of today (UTC org)
    assert abs(now - datetime.fromisoformat(snapshot["updatedAt"])) < timedelta(minutes=1), snapshot


class LiveProfile:
    """One websocket connection following a profile's views and engagement."""

    def __init__(self, client: WsClient, tenant: StackTenant, stack: Stack, http: httpx.AsyncClient) -> None:
        self.client, self.tenant, self.stack, self.http = client, tenant, stack, http
        self.views_sent = 0
        self.warmup_visitor = False

    async def start(self) -> None:
        variables = {"profileId": self.tenant.profile_id}
        await self.client.subscribe("views", VIEWS, variables)
        await self.client.subscribe("engagement", ENGAGEMENT, variables)
        try:
            warmups = await wait_until_live(
                lambda: track(self.http, self.stack, self.tenant.ingestion_key, [warmup_event(self.tenant.profile_id)]),
                {"views": self.next_view, "engagement": self.next_snapshot},
            )
        except _Fatal as exc:
            raise AssertionError(str(exc)) from None
        self.views_sent += warmups
        self.warmup_visitor = True

    async def next_view(self, timeout: float = WAIT) -> tuple[float, dict[str, Any]]:
        at, data = await self.client.data("views", timeout)
        return at, data["profileViews"]

    async def next_snapshot(self, timeout: float = WAIT) -> tuple[float, dict[str, Any]]:
        at, data = await self.client.data("engagement", timeout)
        return at, data["engagementUpdates"]

    async def send(self, events: list[dict[str, Any]]) -> None:
        await track(self.http, self.stack, self.tenant.ingestion_key, events)
        self.views_sent += len(events)


async def check_views_and_engagement(live: LiveProfile, count: int) -> None:
    """Send `count` views in one trackEvents batch and check both subscriptions."""
    batch = view_batch(live.tenant.profile_id, count)
    await live.send(batch)
    got = await collect_views(live.next_view, batch)
    for event in batch:
        assert_view(got[event["eventId"]][1], event)
    _, snapshot = await snapshot_with_views(live.next_snapshot, live.views_sent)
    assert_snapshot(snapshot, live.tenant.profile_id, views=live.views_sent, visitors=count + live.warmup_visitor)


# -- graphql-transport-ws, cross-process ---------------------------------------------------------


async def test_transport_ws_views_and_engagement_cross_process(split_stack: Stack, tenant: StackTenant, http: httpx.AsyncClient) -> None:
    """The API runs --no-worker: the worker process publishes, the API process pushes."""
    assert "--no-worker" in split_stack.api.argv and len(split_stack.processes) == 2
    async with ws_client(split_stack, tenant.provider_token) as client:
        live = LiveProfile(client, tenant, split_stack, http)
        await live.start()
        await check_views_and_engagement(live, count=5)
    split_stack.check_alive()
    print(f"\n[live] cross-process over {split_stack.broadcast}: 5 views and their snapshot delivered")


# -- several API processes behind one port (serve --workers 2) -----------------------------------


async def test_every_view_reaches_a_subscriber_across_api_processes(two_process_stack: Stack) -> None:
    """trackEvents calls land on either API process, either process's in-process worker claims
    them, and a subscriber on one process still gets every view once, counted once."""
    stack = two_process_stack
    tenant = stack.tenant()
    # A new connection per call, so that calls spread over both processes: a kept-alive
    # connection stays with the process that accepted it.
    async with httpx.AsyncClient(timeout=WAIT, trust_env=False, headers={"Connection": "close"}) as http:
        async with ws_client(stack, tenant.provider_token) as client:
            live = LiveProfile(client, tenant, stack, http)
            await live.start()
            batches = [view_batch(tenant.profile_id, 5) for _ in range(20)]
            await asyncio.gather(*(live.send(batch) for batch in batches))
            sent = [event for batch in batches for event in batch]
            got = await collect_views(live.next_view, sent)
            for event in sent:
                assert_view(got[event["eventId"]][1], event)
            _, snapshot = await snapshot_with_views(live.next_snapshot, live.views_sent)
    assert_snapshot(snapshot, tenant.profile_id, views=live.views_sent, visitors=len(sent) + 1)
    stack.check_alive()


# -- gov alerts: a view from a government network arrives flagged, with its reasons -------------

GOV_IP = "6.20.30.40"  # in 6.0.0.0/8, on the shipped curated list (IANA: US Army)
GOV_VIEWS = """
subscription GovViews($profileId: ID!) {
  profileViews(profileId: $profileId) {
    eventId isGov govAlert { confidence threshold networkName country reasons }
  }
}"""
GOV_ALERTS = """
subscription GovAlerts($profileId: ID!) {
  govAlerts(profileId: $profileId) { eventId profileId confidence networkName country reasons signals raisedAt }
}"""


def gov_view_event(profile_id: str, *, tag: str = "e2e") -> dict[str, Any]:
    event = view_event(profile_id, tag=tag)
    event["context"]["ip"] = GOV_IP
    return event


async def test_gov_network_view_arrives_flagged_with_its_reasons_cross_process(
    split_stack: Stack, tenant: StackTenant, http: httpx.AsyncClient
) -> None:
    """The worker process checks every view; one from a curated government network is pushed
    flagged on `profileViews` and as an alert on `govAlerts`; an ordinary view is not."""
    variables = {"profileId": tenant.profile_id}
    async with ws_client(split_stack, tenant.provider_token) as client:
        await client.subscribe("views", GOV_VIEWS, variables)
        await client.subscribe("gov", GOV_ALERTS, variables)

        async def next_view(timeout: float) -> tuple[float, dict[str, Any]]:
            at, data = await client.data("views", timeout)
            return at, data["profileViews"]

        async def next_alert(timeout: float) -> tuple[float, dict[str, Any]]:
            at, data = await client.data("gov", timeout)
            return at, data["govAlerts"]

        # Gov warm-ups: the alert channel only carries flagged views.
        await wait_until_live(
            lambda: track(http, split_stack, tenant.ingestion_key, [gov_view_event(tenant.profile_id, tag=WARMUP)]),
            {"views": next_view, "gov": next_alert},
        )
        gov, ordinary = gov_view_event(tenant.profile_id), view_event(tenant.profile_id)
        await track(http, split_stack, tenant.ingestion_key, [gov, ordinary])

        views = {event_id: view for event_id, (_, view) in (await collect_views(next_view, [gov, ordinary])).items()}
        alerts = await collect_views(next_alert, [gov])

    flagged = views[gov["eventId"]]
    assert flagged["isGov"] is True
    assert flagged["govAlert"]["confidence"] == 0.95 and flagged["govAlert"]["threshold"] == 0.7
    assert flagged["govAlert"]["networkName"] == "Army Information Systems Center"
    assert flagged["govAlert"]["country"] == "US"
    assert any("6.0.0.0/8" in reason for reason in flagged["govAlert"]["reasons"]), flagged
    assert views[ordinary["eventId"]] == {"eventId": ordinary["eventId"], "isGov": False, "govAlert": None}

    alert = alerts[gov["eventId"]][1]
    assert alert["profileId"] == tenant.profile_id and alert["confidence"] == 0.95
    assert alert["reasons"] == flagged["govAlert"]["reasons"] and "curated-list" in alert["signals"]
    assert GOV_IP not in " ".join(alert["reasons"]), "an alert describes the network, never the address"
    raised_after = datetime.fromisoformat(alert["raisedAt"]) - datetime.fromisoformat(gov["occurredAt"])
    assert timedelta(0) <= raised_after < timedelta(seconds=WAIT), alert
    split_stack.check_alive()


# -- legacy graphql-ws ---------------------------------------------------------------------------


async def test_legacy_graphql_ws_receives_the_same(split_stack: Stack, tenant: StackTenant, http: httpx.AsyncClient) -> None:
    async with ws_client(split_stack, tenant.provider_token, protocol=LEGACY_WS) as client:
        live = LiveProfile(client, tenant, split_stack, http)
        await live.start()
        await check_views_and_engagement(live, count=3)
        # `stop` ends the operation with `complete`; the connection stays usable.
        await client.send({"id": "views", "type": "stop"})
        frame = await client.frame("views")
        while frame.message["type"] == "data":  # views pushed before the stop was handled
            frame = await client.frame("views")
        assert frame.message == {"type": "complete", "id": "views"}


async def test_legacy_graphql_ws_org_admin_follows_any_profile_of_its_org(split_stack: Stack, tenant: StackTenant, http: httpx.AsyncClient) -> None:
    async with ws_client(split_stack, tenant.org_admin_token, protocol=LEGACY_WS) as client:
        live = LiveProfile(client, tenant, split_stack, http)
        await live.start()
        await check_views_and_engagement(live, count=2)


# -- shared live results: documents, aliases and protocols on one profile -----------------------

SEEN = """
subscription Seen($profileId: ID!) {
  seen: profileViews(profileId: $profileId) { id: eventId where: country device: deviceType }
}"""


async def test_one_profile_followed_with_different_documents_and_protocols(split_stack: Stack, tenant: StackTenant, http: httpx.AsyncClient) -> None:
    """Subscribers of the same operation share one result per view (app/fanout.py); every
    other document, alias and subprotocol on the same profile gets its own: the operation ids
    are the same on both connections but the documents are crossed."""
    variables = {"profileId": tenant.profile_id}
    async with (
        ws_client(split_stack, tenant.provider_token) as modern,
        ws_client(split_stack, tenant.org_admin_token, protocol=LEGACY_WS) as legacy,
    ):
        documents = {(modern, "a"): VIEWS, (modern, "b"): SEEN, (legacy, "a"): SEEN, (legacy, "b"): VIEWS}
        for (client, op), query in documents.items():
            await client.subscribe(op, query, variables)
        receivers = {f"{c.protocol}/{op}": functools.partial(c.data, op) for c, op in documents}
        try:
            await wait_until_live(lambda: track(http, split_stack, tenant.ingestion_key, [warmup_event(tenant.profile_id)]), receivers)
        except _Fatal as exc:
            raise AssertionError(str(exc)) from None
        batch = view_batch(tenant.profile_id, 2)
        await track(http, split_stack, tenant.ingestion_key, batch)
        for (client, op), query in documents.items():
            got = await collect_views(functools.partial(_view_of, client, op, query), batch)
            for event in batch:
                view = got[event["eventId"]][1]
                if query is VIEWS:
                    assert_view(view, event)
                else:
                    assert view == {"eventId": event["eventId"], "where": None, "device": "desktop"}, view


async def _view_of(client: WsClient, op: str, query: str, timeout: float) -> tuple[float, dict[str, Any]]:
    """The next view of an operation, in the exact shape its document asked for."""
    at, data = await client.data(op, timeout)
    if query is VIEWS:
        assert list(data) == ["profileViews"], data
        return at, data["profileViews"]
    assert list(data) == ["seen"] and list(data["seen"]) == ["id", "where", "device"], data
    seen = data["seen"]
    return at, {"eventId": seen["id"], "where": seen["where"], "device": seen["device"]}


# -- the third-party gql client ----------------------------------------------------------------


async def test_gql_client_over_graphql_transport_ws(split_stack: Stack, tenant: StackTenant, http: httpx.AsyncClient) -> None:
    # gql offers legacy graphql-ws first by default; the modern protocol has to be asked for.
    assert WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL == TRANSPORT_WS
    transport = WebsocketsTransport(
        url=split_stack.ws_url,
        init_payload={"authorization": f"Bearer {tenant.provider_token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        connect_args={"proxy": None},
        connect_timeout=WAIT,
        ack_timeout=WAIT,
    )
    received: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

    async def next_view(timeout: float) -> tuple[float, dict[str, Any]]:
        getter = asyncio.ensure_future(received.get())
        done, _ = await asyncio.wait({getter, consumer}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        if consumer in done:
            raise AssertionError(f"gql subscription ended: {consumer.exception()!r}")
        raise AssertionError(f"nothing for operation 'gql views' within {timeout:.1f}s")

    async with Client(transport=transport) as session:
        assert transport.subprotocol == TRANSPORT_WS

        async def consume() -> None:
            request = GraphQLRequest(VIEWS, variable_values={"profileId": tenant.profile_id})
            async for data in session.subscribe(request):
                received.put_nowait((time.perf_counter(), data["profileViews"]))

        consumer = asyncio.create_task(consume(), name="gql-subscription")
        try:
            try:
                await wait_until_live(
                    lambda: track(http, split_stack, tenant.ingestion_key, [warmup_event(tenant.profile_id)]),
                    {"views": next_view},
                )
            except _Fatal as exc:
                raise AssertionError(str(exc)) from None
            batch = view_batch(tenant.profile_id, 2)
            await track(http, split_stack, tenant.ingestion_key, batch)
            got = await collect_views(next_view, batch)
            for event in batch:
                assert_view(got[event["eventId"]][1], event)
        finally:
            consumer.cancel()
            await asyncio.wait([consumer])


# -- authentication and scoping on the websocket ---------------------------------------------------


async def _close_code_after_init(stack: Stack, protocol: str, init: dict[str, Any]) -> tuple[int | None, list[dict[str, Any]]]:
    """Send connection_init and read until the server closes; (close code, frames read)."""
    frames: list[dict[str, Any]] = []
    async with connect(stack.ws_url, subprotocols=[protocol], open_timeout=WAIT, close_timeout=2, proxy=None) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps(init))
        with suppress(ConnectionClosed):
            async with asyncio.timeout(WAIT):
                async for raw in ws:
                    frames.append(json.loads(raw))
        return ws.close_code, frames


def _expired_token(tenant: StackTenant, settings: Any) -> str:
    return issue_token(
        role=Role.PROVIDER,
        organization_id=uuid.UUID(tenant.org_id),
        profile_id=uuid.UUID(tenant.profile_id),
        ttl_seconds=-120,
        settings=settings,
    )


def _foreign_secret_token(tenant: StackTenant, settings: Any) -> str:
    from dataclasses import replace

    other = replace(settings, jwt_secret="another-secret-" + "y" * 40)
    return issue_token(role=Role.ORG_ADMIN, organization_id=uuid.UUID(tenant.org_id), settings=other)


REFUSED_INITS: dict[str, Callable[[StackTenant, Any], dict[str, Any]]] = {
    "no-payload": lambda t, s: {"type": "connection_init"},
    "empty-payload": lambda t, s: {"type": "connection_init", "payload": {}},
    "expired-token": lambda t, s: {"type": "connection_init", "payload": {"authorization": f"Bearer {_expired_token(t, s)}"}},
    "expired-token-as-token": lambda t, s: {"type": "connection_init", "payload": {"token": _expired_token(t, s)}},
    "wrong-secret": lambda t, s: {"type": "connection_init", "payload": {"authorization": f"Bearer {_foreign_secret_token(t, s)}"}},
    "garbage": lambda t, s: {"type": "connection_init", "payload": {"authorization": "Bearer not-a-jwt"}},
    "ingestion-key": lambda t, s: {"type": "connection_init", "payload": {"authorization": f"Bearer {t.ingestion_key}"}},
    "ingestion-key-as-token": lambda t, s: {"type": "connection_init", "payload": {"token": t.ingestion_key}},
    "service-token": lambda t, s: {"type": "connection_init", "payload": {"authorization": f"Bearer {t.service_token}"}},
}


@pytest.mark.parametrize("case", sorted(REFUSED_INITS))
async def test_transport_ws_refuses_bad_credentials_with_4403(split_stack: Stack, tenant: StackTenant, settings: Any, case: str) -> None:
    code, frames = await _close_code_after_init(split_stack, TRANSPORT_WS, REFUSED_INITS[case](tenant, settings))
    assert code == 4403, (code, frames)
    assert frames == [], frames  # in particular no connection_ack


@pytest.mark.parametrize("case", ["empty-payload", "expired-token", "ingestion-key"])
async def test_legacy_graphql_ws_refuses_bad_credentials(split_stack: Stack, tenant: StackTenant, settings: Any, case: str) -> None:
    """graphql-ws has no 4403: the server sends connection_error with the reason, then closes."""
    code, frames = await _close_code_after_init(split_stack, LEGACY_WS, REFUSED_INITS[case](tenant, settings))
    assert [f["type"] for f in frames] == ["connection_error"], frames
    expected = {"empty-payload": "UNAUTHENTICATED", "expired-token": "UNAUTHENTICATED", "ingestion-key": "FORBIDDEN"}[case]
    assert frames[0]["payload"]["code"] == expected, frames
    assert code == 1011, code  # strawberry's close after connection_error (not a normal 1000)


async def test_legacy_graphql_ws_start_without_init_is_refused(split_stack: Stack, tenant: StackTenant) -> None:
    """The legacy path once ran `start` before (or without) connection_init's auth."""
    start = {"id": "1", "type": "start", "payload": {"query": VIEWS, "variables": {"profileId": tenant.profile_id}}}
    code, frames = await _close_code_after_init(split_stack, LEGACY_WS, start)
    assert code == 4401, (code, frames)
    assert not [f for f in frames if f["type"] == "data"], frames


async def test_transport_ws_subscribe_without_init_is_refused(split_stack: Stack, tenant: StackTenant) -> None:
    subscribe = {"id": "1", "type": "subscribe", "payload": {"query": VIEWS, "variables": {"profileId": tenant.profile_id}}}
    code, frames = await _close_code_after_init(split_stack, TRANSPORT_WS, subscribe)
    assert code == 4401, (code, frames)
    assert frames == [], frames


async def _expect_not_found(client: WsClient, op: str) -> dict[str, Any]:
    frame = await client.frame(op)
    assert error_codes(frame.message) == ["NOT_FOUND"], frame.message
    return frame.message


async def test_foreign_and_sibling_profiles_are_not_found_and_leak_nothing(
    split_stack: Stack, tenant: StackTenant, other_tenant: StackTenant, http: httpx.AsyncClient
) -> None:
    foreign = {"profileId": other_tenant.profile_id}
    sibling = {"profileId": tenant.other_profile_id}
    async with (
        ws_client(split_stack, tenant.provider_token) as provider,
        ws_client(split_stack, tenant.org_admin_token, protocol=LEGACY_WS) as org_admin,
        ws_client(split_stack, other_tenant.provider_token) as owner,
    ):
        await provider.subscribe("foreign-views", VIEWS, foreign)
        await provider.subscribe("foreign-engagement", ENGAGEMENT, foreign)
        await provider.subscribe("sibling-views", VIEWS, sibling)  # same org, not the provider's profile
        await org_admin.subscribe("foreign-views", VIEWS, foreign)
        await org_admin.subscribe("foreign-engagement", ENGAGEMENT, foreign)
        refusals = [
            await _expect_not_found(provider, "foreign-views"),
            await _expect_not_found(provider, "foreign-engagement"),
            await _expect_not_found(provider, "sibling-views"),
            await _expect_not_found(org_admin, "foreign-views"),
            await _expect_not_found(org_admin, "foreign-engagement"),
        ]
        print(f"\n[live] refusal frames: {[r['type'] for r in refusals]} e.g. {json.dumps(refusals[0])[:300]}")

        # The owner of the foreign profile is the control: once it has every view, a leak
        # to the refused subscriptions would have had its chance too.
        live = LiveProfile(owner, other_tenant, split_stack, http)
        await live.start()
        batch = view_batch(other_tenant.profile_id, 3)
        await live.send(batch)
        await collect_views(live.next_view, batch)
        await snapshot_with_views(live.next_snapshot, live.views_sent)
        sibling_view = view_event(tenant.other_profile_id)
        await track(http, split_stack, tenant.ingestion_key, [sibling_view])
        await asyncio.sleep(LEAK_GRACE)

        for name, client in (("provider", provider), ("org admin", org_admin)):
            leftovers = client.ops_with_frames()
            results = {
                op: [m for m in messages if m["type"] in ("next", "data")]
                for op, messages in leftovers.items()
            }
            assert not any(results.values()), f"{name} received data after NOT_FOUND: {results}"
            for op, messages in leftovers.items():
                # Only the end of the refused operation may follow.
                assert all(m["type"] == "complete" for m in messages), (name, op, messages)
        assert not provider.closed and not org_admin.closed  # a refusal ends the operation, not the connection


# -- one-process mode ------------------------------------------------------------------------


async def test_one_process_mode_with_memory_bus(memory_stack: Stack, memory_tenant: StackTenant, http: httpx.AsyncClient) -> None:
    assert "--no-worker" not in memory_stack.api.argv and len(memory_stack.processes) == 1
    assert memory_stack.broadcast == "memory"
    async with ws_client(memory_stack, memory_tenant.provider_token) as client:
        live = LiveProfile(client, memory_tenant, memory_stack, http)
        await live.start()
        await check_views_and_engagement(live, count=4)
    memory_stack.check_alive()


# -- backend subscriptions follow websocket clients (Redis: PUBSUB NUMSUB is observable) ------


async def _numsub(redis_url: str, channel: str) -> int:
    from redis import asyncio as redis

    client = redis.Redis.from_url(redis_url)
    try:
        [(_, count)] = await client.pubsub_numsub(channel)
        return int(count)
    finally:
        await client.aclose()


async def _numsub_becomes(redis_url: str, channel: str, expected: int) -> None:
    deadline = time.monotonic() + WAIT
    while (count := await _numsub(redis_url, channel)) != expected:
        assert time.monotonic() < deadline, f"PUBSUB NUMSUB {channel} stayed {count}, expected {expected}"
        await asyncio.sleep(0.05)


async def test_one_backend_subscription_per_channel_released_when_clients_leave(
    split_stack: Stack, tenant: StackTenant, http: httpx.AsyncClient
) -> None:
    """Two websocket clients on one profile share one Redis subscription of the API process;
    it is released when the last one leaves, whether it closes politely or its TCP
    connection just drops."""
    if split_stack.broadcast != "redis":
        pytest.skip("needs REDIS_URL: PostgreSQL LISTENs are not observable from another session")
    from app.vocabulary import view_channel

    channel = view_channel(tenant.profile_id)
    async with ws_client(split_stack, tenant.provider_token) as polite:
        live = LiveProfile(polite, tenant, split_stack, http)
        await live.start()
        async with ws_client(split_stack, tenant.org_admin_token, protocol=LEGACY_WS) as abrupt:
            await abrupt.subscribe("views", VIEWS, {"profileId": tenant.profile_id})
            batch = view_batch(tenant.profile_id, 1)
            # The second client is live once it has a view; the first one gets it as well.
            deadline = time.monotonic() + WAIT
            while True:
                await live.send(batch)
                with suppress(AssertionError):
                    await abrupt.data("views", WARMUP_EVERY)
                    break
                assert time.monotonic() < deadline, "second subscriber never got a view"
                batch = view_batch(tenant.profile_id, 1)
            assert await _numsub(split_stack.broadcast_url, channel) == 1
            abrupt.ws.transport.abort()  # no close frame: the server sees the socket die
            await asyncio.sleep(LEAK_GRACE)
            assert await _numsub(split_stack.broadcast_url, channel) == 1  # the polite client still follows
            assert not polite.closed
    await _numsub_becomes(split_stack.broadcast_url, channel, 0)


@pytest.mark.parametrize(
    "payload_of",
    [
        lambda token: {"Authorization": f"Bearer {token}"},  # GraphiQL: its header editor's JSON
        lambda token: {"headers": {"Authorization": f"Bearer {token}"}},  # Apollo-style clients
        lambda token: {"token": token},
    ],
    ids=["graphiql-headers", "nested-headers", "token"],
)
async def test_transport_ws_accepts_the_credential_shapes_clients_send(
    split_stack: Stack, tenant: StackTenant, payload_of: Callable[[str], dict[str, Any]]
) -> None:
    async with connect(split_stack.ws_url, subprotocols=[TRANSPORT_WS], open_timeout=WAIT, proxy=None) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": payload_of(tenant.provider_token)}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert reply["type"] == "connection_ack"
