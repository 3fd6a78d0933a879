"""graphql-transport-ws conformance against a real server process, with real clients.

The protocol (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md) says when a
server closes and with which code; these tests provoke each one on a raw socket:

  4400  an invalid message, or a connection_init whose payload is not an object
  4401  subscribe before the connection was acknowledged
  4403  connection_init refused (here: a bad or missing token)
  4408  no connection_init within the server's wait (PULSEGRAPH_WS_INIT_TIMEOUT_SECONDS)
  4409  subscribe with an id that is already running
  4429  a second connection_init

and that either side may `ping` and is answered with `pong`: the server pings every
PULSEGRAPH_WS_KEEPALIVE_SECONDS. Then two third-party clients follow a profile's views end to
end: the Python `gql` client over graphql-transport-ws (with its keep-alive and ping checks
on), and the protocol's reference client, `graphql-ws` from npm, run under Node
(tests/support/node; skipped only when node or npm are not installed).

The server here runs with a 1 s connection_init wait and a 0.5 s keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gql import Client, GraphQLRequest
from gql.transport.websockets import WebsocketsTransport
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.live_views import VIEWS, track, view_batch, warmup_event
from tests.support.node_client import NODE_DIR, NodeClient
from tests.support.postgres import create_database, drop_database
from tests.support.provision import StackTenant
from tests.support.stacks import Stack, running_stack
from tests.support.websockets import LEGACY_WS, TRANSPORT_WS, WAIT

pytestmark = pytest.mark.usefixtures("server_logs_on_failure")

INIT_TIMEOUT = 1.0
KEEPALIVE = 0.5


@pytest.fixture(scope="module")
def protocol_stack(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One process (worker in-process, memory bus) with short websocket timings."""
    stack_database = create_database(database_url, f"protocol_{uuid.uuid4().hex[:6]}")
    try:
        with running_stack(
            "protocol", database_url=stack_database, broadcast_url="memory://",
            work_dir=tmp_path_factory.mktemp("protocol-stack"), in_process_worker=True,
            extra_env={"PULSEGRAPH_WS_INIT_TIMEOUT_SECONDS": str(INIT_TIMEOUT), "PULSEGRAPH_WS_KEEPALIVE_SECONDS": str(KEEPALIVE)},
        ) as stack:  # fmt: skip
            yield stack
    finally:
        drop_database(database_url, stack_database)


@pytest.fixture
def tenant(protocol_stack: Stack) -> StackTenant:
    return protocol_stack.tenant()


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=WAIT, trust_env=False) as client:
        yield client


@contextlib.asynccontextmanager
async def raw(
    stack: Stack, protocol: str = TRANSPORT_WS
) -> AsyncIterator[ClientConnection]:
    async with connect(
        stack.ws_url,
        subprotocols=[protocol],
        open_timeout=WAIT,
        close_timeout=2,
        proxy=None,
    ) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == protocol
        yield ws


async def send(ws: ClientConnection, message: dict[str, Any] | str) -> None:
    await ws.send(message if isinstance(message, str) else json.dumps(message))


async def until_closed(
    ws: ClientConnection, timeout: float = WAIT
) -> tuple[int | None, str, list[dict[str, Any]]]:
    """Read until the server closes: (close code, reason, messages read)."""
    messages: list[dict[str, Any]] = []
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            async for raw_message in ws:
                messages.append(json.loads(raw_message))
    return ws.close_code, ws.close_reason or "", messages


def init_message(token: str) -> dict[str, Any]:
    return {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}


async def acknowledged(ws: ClientConnection, token: str) -> None:
    await send(ws, init_message(token))
    message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert message["type"] == "connection_ack", message


def subscribe_message(op: str, profile_id: str) -> dict[str, Any]:
    return {
        "id": op,
        "type": "subscribe",
        "payload": {"query": VIEWS, "variables": {"profileId": profile_id}},
    }


# -- close codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        pytest.param(
            {"type": "connection_init", "payload": "not an object"},
            id="init-payload-not-an-object",
        ),
        pytest.param(
            {"type": "connection_init", "payload": ["a", "list"]},
            id="init-payload-a-list",
        ),
        pytest.param("this is not json", id="not-json"),
        pytest.param({"type": "no-such-message"}, id="unknown-type"),
        pytest.param({"payload": {}}, id="no-type"),
    ],
)
async def test_4400_invalid_message(protocol_stack: Stack, message: Any) -> None:
    async with raw(protocol_stack) as ws:
        await send(ws, message)
        code, reason, messages = await until_closed(ws)
    assert code == 4400, (code, reason, messages)
    assert messages == []


async def test_4400_subscribe_with_a_query_that_does_not_parse(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    async with raw(protocol_stack) as ws:
        await acknowledged(ws, tenant.provider_token)
        await send(
            ws, {"id": "1", "type": "subscribe", "payload": {"query": "subscription {"}}
        )
        code, reason, _ = await until_closed(ws)
    assert code == 4400, (code, reason)


async def test_legacy_graphql_ws_unparsable_query_gets_an_error_message(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    """The legacy protocol has no 4400 for this: the operation gets an `error`, the connection stays."""
    async with raw(protocol_stack, LEGACY_WS) as ws:
        await acknowledged(ws, tenant.provider_token)
        await send(
            ws, {"id": "1", "type": "start", "payload": {"query": "subscription {"}}
        )
        while (message := json.loads(await asyncio.wait_for(ws.recv(), WAIT)))[
            "type"
        ] == "ka":
            pass
        assert message["type"] == "error" and message["id"] == "1", message
        assert "Syntax Error" in message["payload"]["message"], message


async def test_4401_subscribe_before_acknowledgement(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    async with raw(protocol_stack) as ws:
        await send(ws, subscribe_message("1", tenant.profile_id))
        code, reason, messages = await until_closed(ws)
    assert (code, reason) == (4401, "Unauthorized"), messages
    assert messages == []


@pytest.mark.parametrize(
    "payload",
    [{}, {"authorization": "Bearer not-a-jwt"}],
    ids=["no-token", "bad-token"],
)
async def test_4403_forbidden_at_connection_init(
    protocol_stack: Stack, payload: dict[str, Any]
) -> None:
    async with raw(protocol_stack) as ws:
        await send(ws, {"type": "connection_init", "payload": payload})
        code, reason, messages = await until_closed(ws)
    assert (code, reason) == (4403, "Forbidden"), messages
    assert messages == []  # no connection_ack


async def test_4408_connection_init_timeout(protocol_stack: Stack) -> None:
    async with raw(protocol_stack) as ws:
        opened = time.monotonic()
        code, reason, messages = await until_closed(ws, timeout=INIT_TIMEOUT + 10)
        waited = time.monotonic() - opened
    assert (code, reason) == (4408, "Connection initialisation timeout"), messages
    assert INIT_TIMEOUT * 0.8 <= waited < INIT_TIMEOUT + 5, waited


async def test_an_acknowledged_connection_is_not_timed_out(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    async with raw(protocol_stack) as ws:
        await acknowledged(ws, tenant.provider_token)
        await asyncio.sleep(INIT_TIMEOUT * 2)
        await send(ws, {"type": "ping"})
        while (message := json.loads(await asyncio.wait_for(ws.recv(), WAIT)))[
            "type"
        ] == "ping":
            await send(ws, {"type": "pong"})
        assert message == {"type": "pong"}


async def test_4409_subscriber_id_already_exists(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    async with raw(protocol_stack) as ws:
        await acknowledged(ws, tenant.provider_token)
        await send(ws, subscribe_message("views", tenant.profile_id))
        await send(ws, subscribe_message("views", tenant.profile_id))
        code, reason, messages = await until_closed(ws)
    assert (code, reason) == (4409, "Subscriber for views already exists"), messages


async def test_an_id_may_be_reused_after_complete(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    async with raw(protocol_stack) as ws:
        await acknowledged(ws, tenant.provider_token)
        await send(ws, subscribe_message("views", tenant.profile_id))
        await send(ws, {"id": "views", "type": "complete"})
        await send(ws, subscribe_message("views", tenant.profile_id))
        await asyncio.sleep(0.3)
        await send(ws, {"type": "ping"})
        while (message := json.loads(await asyncio.wait_for(ws.recv(), WAIT)))[
            "type"
        ] == "ping":
            pass
        assert message == {"type": "pong"}, message  # still open: no 4409


async def test_4429_too_many_initialisation_requests(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    async with raw(protocol_stack) as ws:
        await acknowledged(ws, tenant.provider_token)
        await send(ws, init_message(tenant.provider_token))
        code, reason, messages = await until_closed(ws)
    assert (code, reason) == (4429, "Too many initialisation requests"), messages


# -- keep-alive ----------------------------------------------------------------------------------


async def test_server_pings_every_keepalive_interval_and_answers_pings(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    async with raw(protocol_stack) as ws:
        await acknowledged(ws, tenant.provider_token)
        started = time.monotonic()
        pings: list[float] = []
        async with asyncio.timeout(KEEPALIVE * 4 + 5):
            while len(pings) < 3:
                message = json.loads(await ws.recv())
                assert message == {"type": "ping"}, message
                pings.append(time.monotonic() - started)
                await send(ws, {"type": "pong"})
        await send(ws, {"type": "ping", "payload": {"from": "client"}})
        message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        while message["type"] == "ping":  # a server ping may cross ours
            message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert message["type"] == "pong", message
    gaps = [b - a for a, b in zip([0.0, *pings], pings)]
    assert all(KEEPALIVE * 0.5 <= gap <= KEEPALIVE * 4 for gap in gaps), gaps
    print(
        f"\n[protocol] server pings at {[round(p, 2) for p in pings]} s after connection_ack"
    )


async def test_no_server_pings_before_acknowledgement(protocol_stack: Stack) -> None:
    async with raw(protocol_stack) as ws:
        _, _, messages = await until_closed(
            ws, timeout=INIT_TIMEOUT + 10
        )  # the 4408 close ends it
    assert messages == []


async def test_legacy_graphql_ws_keep_alive(
    protocol_stack: Stack, tenant: StackTenant
) -> None:
    async with raw(protocol_stack, LEGACY_WS) as ws:
        await send(ws, init_message(tenant.provider_token))
        kinds = []
        async with asyncio.timeout(KEEPALIVE * 4 + 5):
            while kinds.count("ka") < 2:
                kinds.append(json.loads(await ws.recv())["type"])
    assert kinds[0] == "connection_ack" and set(kinds[1:]) == {"ka"}, kinds


# -- third-party clients ---------------------------------------------------------------------------


async def _live_views(
    receive: Any, send_one: Any, wanted_batch: Any, deadline: float = 45.0
) -> tuple[int, set[str]]:
    """Warm up until a view arrives, then send a batch and wait for all of it."""
    started = time.monotonic()
    warmups = 0
    while True:
        warmups += 1
        await send_one()
        with contextlib.suppress(TimeoutError):
            await receive(0.5)
            break
        assert time.monotonic() - started < deadline, "no live view"
    batch_ids = await wanted_batch()
    seen: set[str] = set()
    give_up = time.monotonic() + WAIT
    while batch_ids - seen:
        view = await receive(max(0.1, give_up - time.monotonic()))
        seen.add(view["eventId"])
    return warmups, seen


async def test_gql_client_keep_alive_and_pings_over_graphql_transport_ws(
    protocol_stack: Stack, tenant: StackTenant, http: httpx.AsyncClient
) -> None:
    """gql closes the connection if nothing (not even a ping) arrives for `keep_alive_timeout`
    and if its own pings are not answered within `pong_timeout`: an idle period several
    times those long proves both directions of the protocol's keep-alive."""
    transport = WebsocketsTransport(
        url=protocol_stack.ws_url,
        init_payload={"authorization": f"Bearer {tenant.provider_token}"},
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
        connect_args={"proxy": None},
        connect_timeout=WAIT,
        ack_timeout=WAIT,
        keep_alive_timeout=KEEPALIVE * 4,
        ping_interval=KEEPALIVE,
        pong_timeout=KEEPALIVE * 4,
    )
    received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    async with Client(transport=transport) as session:
        assert transport.subprotocol == TRANSPORT_WS

        async def consume() -> None:
            request = GraphQLRequest(
                VIEWS, variable_values={"profileId": tenant.profile_id}
            )
            async for data in session.subscribe(request):
                received.put_nowait(data["profileViews"])

        consumer = asyncio.create_task(consume())
        try:
            await asyncio.sleep(
                KEEPALIVE * 8
            )  # idle: only pings and pongs cross the socket
            assert not consumer.done(), (
                f"gql gave up on an idle connection: {consumer.exception()!r}"
            )

            async def receive(timeout: float) -> dict[str, Any]:
                getter = asyncio.ensure_future(received.get())
                done, _ = await asyncio.wait(
                    {getter, consumer},
                    timeout=timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if getter in done:
                    return getter.result()
                getter.cancel()
                if consumer in done:
                    raise AssertionError(
                        f"gql subscription ended: {consumer.exception()!r}"
                    )
                raise TimeoutError

            async def batch() -> set[str]:
                events = view_batch(tenant.profile_id, 3)
                await track(http, protocol_stack, tenant.ingestion_key, events)
                return {e["eventId"] for e in events}

            await _live_views(
                receive,
                lambda: track(
                    http,
                    protocol_stack,
                    tenant.ingestion_key,
                    [warmup_event(tenant.profile_id)],
                ),
                batch,
            )
        finally:
            consumer.cancel()
            await asyncio.wait([consumer])


@pytest.fixture(scope="module")
def node_client_installed() -> Path:
    """`npm ci` into tests/support/node/node_modules once (from the committed package-lock.json)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run the reference graphql-ws client")
    if not (NODE_DIR / "node_modules" / "graphql-ws" / "package.json").exists():
        done = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (
            f"npm ci failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return NODE_DIR


async def test_reference_graphql_ws_client_under_node(
    node_client_installed: Path,
    protocol_stack: Stack,
    tenant: StackTenant,
    http: httpx.AsyncClient,
) -> None:
    async with NodeClient(
        "subscribe", protocol_stack.ws_url, tenant.provider_token, tenant.profile_id
    ) as node:
        assert (await node.next())["event"] == "connected"
        pings = 0

        async def receive(timeout: float) -> dict[str, Any]:
            nonlocal pings
            give_up = time.monotonic() + timeout
            while True:
                left = give_up - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                line = await node.next(left)
                if line["event"] == "ping":
                    pings += 1
                    continue
                assert line["event"] == "next" and not line["errors"], line
                return line["data"]["profileViews"]

        async def batch() -> set[str]:
            events = view_batch(tenant.profile_id, 3)
            await track(http, protocol_stack, tenant.ingestion_key, events)
            return {e["eventId"] for e in events}

        _, seen = await _live_views(
            receive,
            lambda: track(
                http,
                protocol_stack,
                tenant.ingestion_key,
                [warmup_event(tenant.profile_id)],
            ),
            batch,
        )
        give_up = time.monotonic() + KEEPALIVE * 6 + 5
        while pings < 2:  # the library answers each server ping with a pong
            assert time.monotonic() < give_up, (
                f"only {pings} server pings reached the node client"
            )
            line = await node.next(max(0.1, give_up - time.monotonic()))
            pings += line["event"] == "ping"
    print(
        f"\n[protocol] node graphql-ws client: {len(seen)} views, {pings} server pings answered"
    )


@pytest.mark.parametrize(("credential", "code"), [("not-a-jwt", 4403)])
async def test_reference_graphql_ws_client_sees_the_close_code(
    node_client_installed: Path, protocol_stack: Stack, credential: str, code: int
) -> None:
    async with NodeClient("connect", protocol_stack.ws_url, credential) as node:
        line = await node.next()
        while line["event"] == "ping":
            line = await node.next()
        assert line == {"event": "closed", "code": code, "reason": "Forbidden"}, line
