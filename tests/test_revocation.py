"""Revocation end to end: real API processes, the real CLI, real sockets.

Three API processes share one database: `serve --workers 2` (two processes behind one port)
and a separate `serve` on another port. A token (or an ingestion key) is used on all of them,
so each has verified and cached it; then the installed `pulsegraph` command revokes it, as
an operator would, in a process of its own. From the moment that command has exited, every
new HTTP request and websocket `connection_init` with the credential must be refused within
REVOCATION_BOUND on every process, the websockets it opened must be closed with 4403, and
another credential of the same tenant must keep working.

The processes behind one port share connections, not requests: each probe opens a new
connection so that both of them answer some (the separate server is there so that at least
one process is certain to have cached the credential before it is revoked).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.postgres import create_database, drop_database
from tests.support.provision import STACK_PASSWORD, StackTenant
from tests.support.stacks import Stack, cross_process_broadcast_url, running_stack
from tests.support.websockets import LEGACY_WS, TRANSPORT_WS

pytestmark = pytest.mark.usefixtures("server_logs_on_failure")

REVOCATION_BOUND = 1.0  # seconds: the promise under test
OBSERVE = 1.6  # seconds of probing after the revoking command has exited
WAIT = 15.0
USES_PER_PROCESS = 6  # new connections per stack before the revocation
PULSEGRAPH = str(Path(sys.executable).parent / "pulsegraph")  # the installed command

VIEWER = "{ viewer { role organizationId } }"
VIEWS = "subscription($p: ID!) { profileViews(profileId: $p) { eventId } }"
TRACK = "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted } }"


@dataclass
class Servers:
    """The two stacks on one database, and the environment the CLI needs to reach it."""

    stacks: list[Stack]
    env: dict[str, str]

    def tenant(self) -> StackTenant:
        return self.stacks[0].tenant()


@pytest.fixture(scope="module")
def servers(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    shared = create_database(database_url, f"revoke_{uuid.uuid4().hex[:6]}")
    broadcast = cross_process_broadcast_url(shared)
    try:
        with running_stack(
            "revoke-two", database_url=shared, broadcast_url=broadcast, work_dir=tmp_path_factory.mktemp("revoke-two"),
            in_process_worker=True, api_processes=2,
        ) as two, running_stack(
            "revoke-one", database_url=shared, broadcast_url=broadcast, work_dir=tmp_path_factory.mktemp("revoke-one"),
            in_process_worker=True,
        ) as one:  # fmt: skip
            yield Servers(stacks=[two, one], env=two.env)
    finally:
        drop_database(database_url, shared)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # A new connection per request: each is accepted by whichever process of a stack is free.
    async with httpx.AsyncClient(timeout=WAIT, trust_env=False, headers={"Connection": "close"}) as client:
        yield client


def cli(env: dict[str, str], *args: str) -> Any:
    """Run the installed `pulsegraph` with `--json`; its JSON object (array for `list`)."""
    done = subprocess.run([PULSEGRAPH, *args, "--json"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def codes(body: dict[str, Any]) -> list[str]:
    return [error.get("extensions", {}).get("code") for error in body.get("errors") or []]


# -- probes: each one a new connection; True when the credential was refused ----------------


async def viewer_refused(http: httpx.AsyncClient, stack: Stack, token: str) -> bool:
    body = (await http.post(stack.graphql_url, json={"query": VIEWER}, headers=bearer(token))).json()
    if codes(body) == ["UNAUTHENTICATED"]:
        return True
    assert body["data"]["viewer"]["role"] == "org_admin", body
    return False


async def connection_init_refused(stack: Stack, token: str, protocol: str = TRANSPORT_WS) -> bool:
    """graphql-transport-ws: refused is a 4403 close; graphql-ws: a connection_error."""
    async with connect(stack.ws_url, subprotocols=[protocol], open_timeout=WAIT, close_timeout=2, proxy=None) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
        try:
            message = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        except ConnectionClosed:
            assert (ws.close_code, ws.close_reason) == (4403, "Forbidden"), ws.close_code
            return True
    if message["type"] == "connection_error":
        assert message["payload"]["code"] == "UNAUTHENTICATED", message
        return True
    assert message["type"] == "connection_ack", message
    return False


async def track_refused(http: httpx.AsyncClient, stack: Stack, key: str) -> bool:
    response = await http.post(f"{stack.base_url}/track", json={"type": "revocation.probe"}, headers=bearer(key))
    if response.status_code == 401:
        assert response.json()["error"]["code"] == "UNAUTHENTICATED", response.text
        return True
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    return False


async def track_events_refused(http: httpx.AsyncClient, stack: Stack, key: str) -> bool:
    variables = {"e": [{"type": "revocation.probe"}]}
    body = (await http.post(stack.graphql_url, json={"query": TRACK, "variables": variables}, headers=bearer(key))).json()
    if codes(body) == ["UNAUTHENTICATED"]:
        return True
    assert body["data"]["trackEvents"]["accepted"] == 1, body
    return False


@dataclass
class Probes:
    """Every probe of one credential after its revocation: (seconds after the command
    exited at which the probe started, what it was, refused)."""

    results: list[tuple[float, str, bool]] = field(default_factory=list)

    async def run(self, started: float, kinds: dict[str, Any]) -> None:
        """Probe every kind, again and again, until OBSERVE seconds after `started`."""
        while time.monotonic() - started < OBSERVE:
            for name, probe in kinds.items():
                at = time.monotonic() - started
                self.results.append((at, name, await probe()))

    def accepted_late(self) -> list[tuple[float, str, bool]]:
        return [r for r in self.results if r[0] >= REVOCATION_BOUND and not r[2]]

    def late(self) -> list[tuple[float, str, bool]]:
        return [r for r in self.results if r[0] >= REVOCATION_BOUND]

    def last_accepted(self) -> float | None:
        accepted = [at for at, _, refused in self.results if not refused]
        return max(accepted) if accepted else None


# -- open websockets ----------------------------------------------------------------------------


@dataclass
class Subscriber:
    """An acknowledged websocket following a profile; `closed_at` once the server closed it."""

    ws: ClientConnection
    protocol: str
    closed_at: float | None = None
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        with suppress(ConnectionClosed):
            async for _ in self.ws:
                pass
        self.closed_at = time.monotonic()


async def subscribe(stack: Stack, token: str, profile_id: str, protocol: str) -> Subscriber:
    ws = await connect(stack.ws_url, subprotocols=[protocol], open_timeout=WAIT, close_timeout=2, proxy=None)  # type: ignore[list-item]
    await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert ack["type"] == "connection_ack", ack
    start = "subscribe" if protocol == TRANSPORT_WS else "start"
    payload = {"query": VIEWS, "variables": {"p": profile_id}}
    await ws.send(json.dumps({"id": "views", "type": start, "payload": payload}))
    subscriber = Subscriber(ws, protocol)
    subscriber.reader = asyncio.create_task(subscriber._read())
    return subscriber


async def still_answers(subscriber: Subscriber) -> bool:
    """A graphql-transport-ws subscriber that is open and answers a ping with a pong."""
    assert subscriber.reader is not None
    subscriber.reader.cancel()
    with suppress(asyncio.CancelledError):
        await subscriber.reader
    await subscriber.ws.send(json.dumps({"type": "ping"}))
    async with asyncio.timeout(WAIT):
        while True:
            if json.loads(await subscriber.ws.recv())["type"] == "pong":
                return True


async def close_all(subscribers: list[Subscriber]) -> None:
    for subscriber in subscribers:
        if subscriber.reader is not None:
            subscriber.reader.cancel()
        await subscriber.ws.close()


# -- tests ------------------------------------------------------------------------------------------


async def test_a_revoked_token_is_refused_on_every_process_within_a_second(
    servers: Servers, http: httpx.AsyncClient
) -> None:
    tenant = servers.tenant()
    issue = ("token", "--org", tenant.org_id, "--role", "org_admin")
    doomed, kept = cli(servers.env, *issue), cli(servers.env, *issue)
    assert doomed["jti"] and doomed["expires_at"] and doomed["jti"] != kept["jti"]
    for stack in servers.stacks:
        for _ in range(USES_PER_PROCESS):
            assert not await viewer_refused(http, stack, doomed["token"])
            assert not await connection_init_refused(stack, doomed["token"])
    open_ones = [
        await subscribe(stack, doomed["token"], tenant.profile_id, protocol)
        for stack in servers.stacks for protocol in (TRANSPORT_WS, TRANSPORT_WS, LEGACY_WS)
    ]  # fmt: skip
    keepers = [await subscribe(stack, kept["token"], tenant.profile_id, TRANSPORT_WS) for stack in servers.stacks]
    try:
        revoked = cli(servers.env, "token", "revoke", doomed["token"])
        exited = time.monotonic()
        assert (revoked["jti"], revoked["already_revoked"]) == (doomed["jti"], False)

        probes = Probes()
        await probes.run(exited, {
            f"{kind} on {stack.name}": probe
            for stack in servers.stacks
            for kind, probe in {
                "HTTP": lambda s=stack: viewer_refused(http, s, doomed["token"]),
                "connection_init": lambda s=stack: connection_init_refused(s, doomed["token"]),
                "legacy connection_init": lambda s=stack: connection_init_refused(s, doomed["token"], LEGACY_WS),
            }.items()
        })  # fmt: skip
        print(f"\n[revocation] last accepted use {probes.last_accepted()} s after the CLI exited; {len(probes.results)} probes")
        assert len(probes.late()) >= 6, probes.results
        assert probes.accepted_late() == [], probes.results

        closes = [(s.protocol, s.ws.close_code, s.closed_at and round(s.closed_at - exited, 3)) for s in open_ones]
        print(f"[revocation] open sockets closed (protocol, code, seconds after the CLI exited): {closes}")
        assert all(code == 4403 and at is not None and at <= REVOCATION_BOUND for _, code, at in closes), closes

        for stack in servers.stacks:
            for _ in range(USES_PER_PROCESS):
                assert not await viewer_refused(http, stack, kept["token"])
                assert not await connection_init_refused(stack, kept["token"])
        assert all([await still_answers(keeper) for keeper in keepers])
    finally:
        await close_all(open_ones + keepers)
    for stack in servers.stacks:
        stack.check_alive()


async def test_a_token_revoked_by_its_id_alone_is_refused(servers: Servers, http: httpx.AsyncClient) -> None:
    tenant = servers.tenant()
    issued = cli(servers.env, "token", "--org", tenant.org_id, "--role", "org_admin")
    for stack in servers.stacks:
        assert not await viewer_refused(http, stack, issued["token"])
    revoked = cli(servers.env, "token", "revoke", "--jti", issued["jti"])
    exited = time.monotonic()
    assert (revoked["jti"], revoked["expires_at"]) == (issued["jti"], None)
    await asyncio.sleep(max(0.0, REVOCATION_BOUND - (time.monotonic() - exited)))
    for stack in servers.stacks:
        for _ in range(USES_PER_PROCESS):
            assert await viewer_refused(http, stack, issued["token"])
            assert await connection_init_refused(stack, issued["token"])
    again = cli(servers.env, "token", "revoke", issued["token"])
    assert again["already_revoked"] is True and again["expires_at"] == issued["expires_at"]


async def test_a_revoked_ingestion_key_is_refused_on_every_process_within_a_second(
    servers: Servers, http: httpx.AsyncClient
) -> None:
    tenant = servers.tenant()
    doomed = cli(servers.env, "key", "create", "--org", tenant.org_id, "--name", "doomed")
    kept = cli(servers.env, "key", "create", "--org", tenant.org_id, "--name", "kept")
    for stack in servers.stacks:
        for _ in range(USES_PER_PROCESS):
            assert not await track_refused(http, stack, doomed["key"])
            assert not await track_events_refused(http, stack, doomed["key"])

    revoked = cli(servers.env, "key", "revoke", doomed["id"])
    exited = time.monotonic()
    assert revoked["id"] == doomed["id"] and revoked["revoked_at"] and revoked["already_revoked"] is False

    probes = Probes()
    await probes.run(exited, {
        f"{kind} on {stack.name}": probe
        for stack in servers.stacks
        for kind, probe in {
            "/track": lambda s=stack: track_refused(http, s, doomed["key"]),
            "trackEvents": lambda s=stack: track_events_refused(http, s, doomed["key"]),
        }.items()
    })  # fmt: skip
    print(f"\n[revocation] last accepted event {probes.last_accepted()} s after the CLI exited; {len(probes.results)} probes")
    assert len(probes.late()) >= 4, probes.results
    assert probes.accepted_late() == [], probes.results

    for stack in servers.stacks:
        for _ in range(USES_PER_PROCESS):
            assert not await track_refused(http, stack, kept["key"])
            assert not await track_events_refused(http, stack, kept["key"])
    listed = {key["id"]: key for key in cli(servers.env, "key", "list", "--org", tenant.org_id)}
    assert listed[doomed["id"]]["revoked_at"] == revoked["revoked_at"]
    assert listed[kept["id"]]["revoked_at"] is None and listed[kept["id"]]["last_used_at"] is not None
    for stack in servers.stacks:
        stack.check_alive()


LOGIN = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }"
PERSONAL_KEY = 'mutation { createPersonalApiKey(name: "probe") { secret } }'
REMOVE = "mutation($o: ID!, $u: ID!) { removeMember(organizationId: $o, userId: $u) }"
NEW_INGESTION_KEY = 'mutation($o: ID!) { createIngestionKey(organizationId: $o, name: "doomed") { secret key { id } } }'
REVOKE_INGESTION_KEY = "mutation($id: ID!) { revokeIngestionKey(id: $id) { revokedAt } }"


async def graphql(http: httpx.AsyncClient, stack: Stack, query: str, variables: dict[str, Any], token: str | None) -> Any:
    headers = bearer(token) if token else {}
    body = (await http.post(stack.graphql_url, json={"query": query, "variables": variables}, headers=headers)).json()
    assert not body.get("errors"), body
    return body["data"]


async def member_refused(http: httpx.AsyncClient, stack: Stack, credential: str) -> bool:
    body = (await http.post(stack.graphql_url, json={"query": VIEWER}, headers=bearer(credential))).json()
    if codes(body) == ["UNAUTHENTICATED"]:
        return True
    assert body["data"]["viewer"]["role"] == "viewer", body
    return False


async def test_a_removed_members_session_and_personal_key_are_refused_on_every_process_within_a_second(
    servers: Servers, http: httpx.AsyncClient
) -> None:
    """Removed through GraphQL on one process; the member's sign-in and key were cached by all."""
    tenant = servers.tenant()
    first, second = servers.stacks
    access = (await graphql(http, first, LOGIN, {"e": tenant.viewer_email, "p": STACK_PASSWORD}, None))["login"]["accessToken"]
    key = (await graphql(http, first, PERSONAL_KEY, {}, access))["createPersonalApiKey"]["secret"]
    for stack in servers.stacks:
        for _ in range(USES_PER_PROCESS):
            assert not await member_refused(http, stack, access)
            assert not await member_refused(http, stack, key)
    await graphql(http, second, REMOVE, {"o": tenant.org_id, "u": tenant.viewer_user_id}, tenant.org_admin_token)
    removed = time.monotonic()

    probes = Probes()
    await probes.run(removed, {
        f"{kind} on {stack.name}": probe
        for stack in servers.stacks
        for kind, probe in {
            "session token": lambda s=stack: member_refused(http, s, access),
            "personal key": lambda s=stack: member_refused(http, s, key),
        }.items()
    })  # fmt: skip
    print(f"\n[revocation] removed member: last accepted use {probes.last_accepted()} s after the mutation returned")
    assert len(probes.late()) >= 4, probes.results
    assert probes.accepted_late() == [], probes.results


async def test_an_ingestion_key_revoked_through_graphql_is_refused_on_every_process_within_a_second(
    servers: Servers, http: httpx.AsyncClient
) -> None:
    tenant = servers.tenant()
    first, second = servers.stacks
    made = (await graphql(http, first, NEW_INGESTION_KEY, {"o": tenant.org_id}, tenant.org_admin_token))["createIngestionKey"]
    for stack in servers.stacks:
        for _ in range(USES_PER_PROCESS):
            assert not await track_refused(http, stack, made["secret"])
    await graphql(http, second, REVOKE_INGESTION_KEY, {"id": made["key"]["id"]}, tenant.org_admin_token)
    revoked = time.monotonic()

    probes = Probes()
    await probes.run(revoked, {f"/track on {s.name}": (lambda s=s: track_refused(http, s, made["secret"])) for s in servers.stacks})
    assert len(probes.late()) >= 2, probes.results
    assert probes.accepted_late() == [], probes.results
