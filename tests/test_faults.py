"""Faults with real processes and real servers: what a client is told, and what is kept.

Each test starts its own `pulsegraph serve --no-worker` and `python -m workers.outbox`
processes (tests/support/stacks.py) and, where it breaks a server, a PRIVATE one: an embedded
PostgreSQL in a temporary folder (stopped and started with its own pg_ctl) or a
`redis-server` on a free loopback port. The shared PostgreSQL and Redis of DATABASE_URL and
REDIS_URL are never stopped.

The client side is the same everywhere: `Ingestor` (tests/support/ingestor.py) sends trackEvents batches with client
eventIds and files every call as acknowledged (the response said the events were accepted,
or were duplicates of an earlier call), retryable (UNAVAILABLE, an HTTP 5xx, a transport
error) or unexpected. Retryable batches are sent again later with the same eventIds, which
is what a beacon or backend does. The promise under test: every acknowledged event is
stored once and processed once (rollup views == acknowledged views), and nothing is
acknowledged that was not stored.

Every wait is bounded; every process is stopped (SIGTERM, then SIGKILL) however a test
ends. Numbers are printed (run with -s to see them) and the main ones asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from tests.support.ingestor import HTTP_TIMEOUT, Ingestor, merge, send_until, start_producers
from tests.support.postgres import PrivatePostgres, create_database, drop_database
from tests.support.processes import Process
from tests.support.raw_websocket import RawWebSocket
from tests.support.redis import PrivateRedis
from tests.support.stacks import Stack, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("server_logs_on_failure")]

OVERVIEW = """
query Overview($profileId: ID!) {
  profileOverview(profileId: $profileId, range: {preset: LAST_7_DAYS}) { views uniqueVisitors }
}"""
VIEWS = """
subscription Views($profileId: ID!) { profileViews(profileId: $profileId) { eventId profileId occurredAt } }"""

DRAIN_DEADLINE = 60.0  # seconds for the worker to process every stored event


# -- the server side: what is stored and processed ---------------------------------------------


@dataclass(frozen=True)
class Ledger:
    events: int  # rows in events
    distinct_events: int
    outbox: int
    pending: int  # outbox rows not processed yet
    rollup_views: int  # sum of day rollups
    hour_views: int
    profile_events: int
    distinct_profile_events: int
    stored_ids: frozenset[str]


async def ledger(database_url: str, org_id: str) -> Ledger:
    conn = await asyncpg.connect(database_url)
    try:
        org = uuid.UUID(org_id)
        ids = [
            r["event_id"]
            for r in await conn.fetch(
                "SELECT event_id FROM events WHERE organization_id = $1", org
            )
        ]
        outbox = await conn.fetchrow(
            "SELECT count(*) AS total, count(*) FILTER (WHERE processed_at IS NULL) AS pending"
            " FROM outbox WHERE organization_id = $1",
            org,
        )
        rollups = await conn.fetchrow(
            "SELECT COALESCE(sum(views) FILTER (WHERE grain = 'day'), 0) AS day,"
            " COALESCE(sum(views) FILTER (WHERE grain = 'hour'), 0) AS hour"
            " FROM profile_rollups WHERE organization_id = $1",
            org,
        )
        profile_events = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT event_id) AS d FROM profile_events WHERE organization_id = $1",
            org,
        )
    finally:
        await conn.close()
    return Ledger(
        events=len(ids),
        distinct_events=len(set(ids)),
        outbox=outbox["total"],
        pending=outbox["pending"],
        rollup_views=int(rollups["day"]),
        hour_views=int(rollups["hour"]),
        profile_events=profile_events["n"],
        distinct_profile_events=profile_events["d"],
        stored_ids=frozenset(ids),
    )


async def drained(
    database_url: str, org_id: str, expected: int, deadline: float = DRAIN_DEADLINE
) -> Ledger:
    """The ledger once the worker has processed `expected` events and nothing is pending."""
    give_up = time.monotonic() + deadline
    while True:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            state = await ledger(database_url, org_id)
            if state.pending == 0 and state.outbox >= expected:
                return state
        assert time.monotonic() < give_up, (
            f"worker did not drain within {deadline:.0f}s: {state}"
        )
        await asyncio.sleep(0.2)


def assert_exactly_once(state: Ledger, ingestor: Ingestor) -> None:
    acknowledged = ingestor.acknowledged
    missing = acknowledged - state.stored_ids
    assert not missing, (
        f"{len(missing)} acknowledged events were not stored, e.g. {sorted(missing)[:5]}"
    )
    unknown = state.stored_ids - ingestor.sent
    assert not unknown, f"stored events nobody sent: {sorted(unknown)[:5]}"
    assert state.events == state.distinct_events == len(acknowledged), state
    assert state.outbox == len(acknowledged) and state.pending == 0, state
    assert state.rollup_views == state.hour_views == len(acknowledged), state
    assert state.profile_events == state.distinct_profile_events == len(acknowledged), (
        state
    )


async def health(
    http: httpx.AsyncClient, stack: Stack, timeout: float = 5.0
) -> tuple[int, dict[str, Any], float]:
    """(status, body, seconds): status 0 when the API did not answer within `timeout`."""
    started = time.monotonic()
    try:
        response = await http.get(f"{stack.base_url}/healthz", timeout=timeout)
        return response.status_code, response.json(), time.monotonic() - started
    except httpx.HTTPError as exc:
        return 0, {"error": repr(exc)}, time.monotonic() - started


async def wait_health(
    http: httpx.AsyncClient, stack: Stack, predicate: Any, deadline: float, what: str
) -> tuple[int, dict[str, Any]]:
    give_up = time.monotonic() + deadline
    while True:
        status, body, _ = await health(http, stack)
        if predicate(status, body):
            return status, body
        assert time.monotonic() < give_up, (
            f"/healthz never showed {what} within {deadline:.0f}s (last {status} {body})"
        )
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, trust_env=False) as client:
        yield client


def report(title: str, **numbers: Any) -> None:
    line = ", ".join(f"{k}={v}" for k, v in numbers.items())
    print(f"\n[faults] {title}: {line}")
    path = os.environ.get("PULSEGRAPH_FAULTS_REPORT")
    if path:
        with open(path, "a") as out:
            out.write(f"{title}: {line}\n")


# -- PostgreSQL restarted during sustained ingestion -------------------------------------------


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    try:
        yield server
    finally:
        server.destroy()


async def test_postgres_restart_during_sustained_ingestion(
    private_postgres: PrivatePostgres, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """While PostgreSQL is down every call answers UNAVAILABLE (or a 5xx) promptly, /healthz
    says degraded, nothing is acknowledged that is not stored; afterwards both processes
    recover by themselves and every acknowledged event is processed exactly once."""
    database_url = private_postgres.create_database(
        f"pg_restart_{uuid.uuid4().hex[:6]}"
    )
    env = {"PULSEGRAPH_DB_POOL_MAX": "6", "PULSEGRAPH_WORKER_BATCH_SIZE": "200"}
    with running_stack(
        "pg-restart", database_url=database_url, broadcast_url="memory://", work_dir=tmp_path,
        in_process_worker=False, extra_env=env,
    ) as stack:  # fmt: skip
        tenant = stack.tenant()
        ingestors = [
            Ingestor(
                http,
                stack.graphql_url,
                tenant.ingestion_key,
                tenant.profile_id,
                prefix=f"pg{i}",
            )
            for i in range(3)
        ]
        stop = asyncio.Event()
        senders = [asyncio.create_task(send_until(i, stop)) for i in ingestors]
        try:
            await asyncio.sleep(2.0)
            before = sum(len(i.acknowledged) for i in ingestors)
            assert before > 0, [i.outcomes for i in ingestors]

            down_at = time.monotonic()
            await asyncio.to_thread(private_postgres.stop, "fast")
            await asyncio.sleep(0.5)
            down_health = await health(http, stack)
            await asyncio.sleep(3.0)
            late_health = await health(http, stack)
            acknowledged_while_down = {id_ for i in ingestors for id_ in i.acknowledged}
            await asyncio.to_thread(private_postgres.start)
            up_at, up_wall = time.monotonic(), datetime.now(UTC)

            # Recovery: the first acknowledged call after the restart, without any help.
            deadline = up_at + 30
            while not any(i.last_success_at > up_at for i in ingestors):
                assert time.monotonic() < deadline, (
                    f"no call succeeded within 30s of the restart: {[i.outcomes for i in ingestors]}"
                )
                await asyncio.sleep(0.05)
            recovered_at = min(
                i.last_success_at for i in ingestors if i.last_success_at > up_at
            )
            await wait_health(
                http,
                stack,
                lambda s, b: s == 200 and b.get("database") is True,
                30,
                "database ok",
            )
            healthy_at = time.monotonic()
            await asyncio.sleep(1.5)
        finally:
            stop.set()
            await asyncio.wait_for(
                asyncio.gather(*senders, return_exceptions=True), HTTP_TIMEOUT + 5
            )

        refused_down = sum(sum(i.failures().values()) for i in ingestors)
        for ingestor in ingestors:
            await ingestor.retry_all()
        total_acknowledged = sum(len(i.acknowledged) for i in ingestors)
        state = await drained(database_url, tenant.org_id, total_acknowledged)
        merged = merge(ingestors)
        assert_exactly_once(state, merged)
        assert merged.first_try_duplicates == 0

        # While down: a prompt, retryable refusal, and /healthz said so.
        failures = merged.failures()
        assert failures, (
            "no call failed while PostgreSQL was down: was it really stopped?"
        )
        assert not merged.unexpected, merged.unexpected[:3]
        assert set(failures) <= {"unavailable", "http-503", "transport"}, failures
        assert max(merged.failure_latency) < 5.0, (
            f"a refusal took {max(merged.failure_latency):.1f}s"
        )
        for status, body, seconds in (down_health, late_health):
            assert (
                status == 503
                and body["status"] == "degraded"
                and body["database"] is False
            ), (status, body)
            assert seconds < 5.0
        assert acknowledged_while_down <= state.stored_ids

        status, body, _ = await health(http, stack)
        assert status == 200 and body["status"] == "ok", body
        stack.check_alive()
        conn = await asyncpg.connect(database_url)
        try:  # the worker's first commit after the restart: how long its backoff kept it idle
            resumed = await conn.fetchval(
                "SELECT min(processed_at) FROM outbox WHERE processed_at > $1", up_wall
            )
        finally:
            await conn.close()
        worker_resumed = (resumed - up_wall).total_seconds()
        assert worker_resumed < 5.0, (
            f"the worker stayed idle {worker_resumed:.1f}s after PostgreSQL was back"
        )
        report(
            "postgres restart",
            worker_resumed_after_restart_s=round(worker_resumed, 2),
            sent=len(merged.sent),
            acknowledged=total_acknowledged,
            stored=state.events,
            processed=state.rollup_views,
            refused_calls=refused_down,
            refusals=dict(failures),
            downtime_s=round(up_at - down_at, 2),
            first_success_after_restart_s=round(recovered_at - up_at, 2),
            healthz_ok_after_restart_s=round(healthy_at - up_at, 2),
            max_refusal_latency_s=round(max(merged.failure_latency), 3),
        )


# -- Redis (the broadcast backend) down at start, killed, restarted ---------------------------


async def _views_until(client: Any, wanted: set[str], deadline: float) -> set[str]:
    """Read the `views` operation until every wanted eventId was seen (others are skipped:
    views processed around an outage may or may not be pushed); returns those seen."""
    seen: set[str] = set()
    give_up = time.monotonic() + deadline
    while wanted - seen:
        left = give_up - time.monotonic()
        assert left > 0, (
            f"received {len(seen & wanted)} of {len(wanted)} views within {deadline:.0f}s"
        )
        _, data = await client.data("views", left)
        seen.add(data["profileViews"]["eventId"])
    return seen


async def _live_again(client: Any, send_one: Any, deadline: float) -> tuple[int, float]:
    """Send one view at a time until one of them is pushed; (views sent, seconds)."""
    started = time.monotonic()
    sent: set[str] = set()
    while True:
        sent.add(await send_one())
        with contextlib.suppress(AssertionError, TimeoutError):  # silence: send another
            async with asyncio.timeout(0.5):
                while True:
                    _, data = await client.data("views", 0.5)
                    if data["profileViews"]["eventId"] in sent:
                        return len(sent), time.monotonic() - started
        assert time.monotonic() - started < deadline, (
            f"no live view within {deadline:.0f}s ({len(sent)} sent)"
        )


async def test_redis_down_at_start_then_killed_and_restarted(
    database_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """The API and the worker start while Redis is down (healthz: broadcast false) and connect
    when it comes up. Killed under a live subscriber, ingestion and queries keep answering and
    the worker keeps processing; restarted on the same port, the open subscription receives
    new views again without the client doing anything. Neither process wedges."""
    from tests.support.websockets import ws_client

    redis_server = PrivateRedis(tmp_path)
    stack_database = create_database(database_url, f"redis_{uuid.uuid4().hex[:6]}")
    try:
        with running_stack(
            "redis-restart", database_url=stack_database, broadcast_url=redis_server.url, work_dir=tmp_path,
            in_process_worker=False, need_broadcast=False,
        ) as stack:  # fmt: skip
            status, body, _ = await health(http, stack)
            assert (
                status == 200
                and body["database"] is True
                and body["broadcast"] is False
            ), body
            started_at = time.monotonic()
            await asyncio.to_thread(redis_server.start)
            await wait_health(
                http,
                stack,
                lambda s, b: s == 200 and b["broadcast"] is True,
                30,
                "broadcast connected",
            )
            connected_after = time.monotonic() - started_at

            tenant = stack.tenant()
            ingestor = Ingestor(
                http,
                stack.graphql_url,
                tenant.ingestion_key,
                tenant.profile_id,
                prefix="rd",
                batch_size=5,
            )
            async with ws_client(stack, tenant.provider_token) as client:
                await client.subscribe("views", VIEWS, {"profileId": tenant.profile_id})
                warmups, first_live = await _live_again(client, ingestor.send_one, 45)

                await asyncio.to_thread(redis_server.kill)
                killed_at = time.monotonic()
                await wait_health(
                    http,
                    stack,
                    lambda s, b: s == 200 and b["broadcast"] is False,
                    15,
                    "broadcast lost",
                )
                for _ in range(10):  # ingestion does not need the bus
                    assert await ingestor.send(ingestor.batch()) == "ok", (
                        ingestor.outcomes,
                        ingestor.unexpected,
                    )
                processed = await drained(
                    stack_database, tenant.org_id, len(ingestor.acknowledged), 30
                )
                assert processed.rollup_views == len(ingestor.acknowledged), (
                    processed
                )  # the worker too
                response = await http.post(
                    stack.graphql_url,
                    json={
                        "query": OVERVIEW,
                        "variables": {"profileId": tenant.profile_id},
                    },
                    headers={"Authorization": f"Bearer {tenant.provider_token}"},
                )
                body = response.json()
                assert response.status_code == 200 and not body.get("errors"), body
                assert body["data"]["profileOverview"]["views"] == len(
                    ingestor.acknowledged
                ), body
                assert not client.closed, (
                    client.close_description
                )  # told nothing, still subscribed
                await asyncio.sleep(
                    max(0.0, killed_at + 3.0 - time.monotonic())
                )  # a few reconnect attempts

                await asyncio.to_thread(redis_server.start)
                restarted_at = time.monotonic()
                await wait_health(
                    http,
                    stack,
                    lambda s, b: s == 200 and b["broadcast"] is True,
                    30,
                    "broadcast back",
                )
                api_reconnected = time.monotonic() - restarted_at
                sent_until_live, live_after = await _live_again(client, ingestor.send_one, 45)
                batch = ingestor.batch()
                assert await ingestor.send(batch) == "ok"
                await _views_until(client, {e["eventId"] for e in batch}, 15)
                assert not client.closed

            state = await drained(
                stack_database, tenant.org_id, len(ingestor.acknowledged), 30
            )
            assert_exactly_once(state, ingestor)
            stack.check_alive()
            status, body, _ = await health(http, stack)
            assert status == 200 and body == {
                **body,
                "status": "ok",
                "broadcast": True,
            }, body
            report(
                "redis down at start, killed, restarted",
                bus_connected_after_redis_start_s=round(connected_after, 2),
                warmups_until_live=warmups,
                first_live_s=round(first_live, 2),
                redis_down_s=round(restarted_at - killed_at, 2),
                api_bus_reconnected_after_restart_s=round(api_reconnected, 2),
                live_again_after_s=round(live_after + api_reconnected, 2),
                views_sent_until_live_again=sent_until_live,
                events_acknowledged=len(ingestor.acknowledged),
                processed=state.rollup_views,
            )
    finally:
        redis_server.stop()
        drop_database(database_url, stack_database)


# -- a slow websocket subscriber ---------------------------------------------------------------


async def test_a_slow_subscriber_is_dropped_without_slowing_others_or_the_worker(
    database_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """One process (worker in the API, memory bus): the case where a stalled socket could
    hold up everyone. A subscriber that stops reading fills its TCP window, then its bounded
    queue (PULSEGRAPH_SUBSCRIBER_QUEUE), and is dropped with SLOW_CONSUMER; a reading
    subscriber on the same profile gets every view promptly and the outbox drains."""
    from tests.support.live_views import VIEWS as FULL_VIEWS
    from tests.support.websockets import frame_error_codes as error_codes
    from tests.support.websockets import ws_client

    queue_size = 32
    stack_database = create_database(database_url, f"slow_{uuid.uuid4().hex[:6]}")
    try:
        with running_stack(
            "slow-subscriber", database_url=stack_database, broadcast_url="memory://", work_dir=tmp_path,
            in_process_worker=True, extra_env={"PULSEGRAPH_SUBSCRIBER_QUEUE": str(queue_size)},
        ) as stack:  # fmt: skip
            tenant = stack.tenant()
            ingestor = Ingestor(
                http,
                stack.graphql_url,
                tenant.ingestion_key,
                tenant.profile_id,
                prefix="slow",
                batch_size=500,
            )
            slow = await asyncio.to_thread(RawWebSocket, stack.port)
            try:
                await asyncio.to_thread(
                    slow.send,
                    {
                        "type": "connection_init",
                        "payload": {"authorization": f"Bearer {tenant.provider_token}"},
                    },
                )
                assert (await asyncio.to_thread(slow.message))[
                    "type"
                ] == "connection_ack"
                await asyncio.to_thread(
                    slow.send,
                    {
                        "id": "slow",
                        "type": "subscribe",
                        "payload": {
                            "query": FULL_VIEWS,
                            "variables": {"profileId": tenant.profile_id},
                        },
                    },
                )
                async with ws_client(stack, tenant.provider_token) as fast:
                    await fast.subscribe(
                        "views", FULL_VIEWS, {"profileId": tenant.profile_id}
                    )
                    await _live_again(
                        fast, ingestor.send_one, 45
                    )  # both subscriptions are registered by now
                    # From here on the slow client reads nothing. The server's kernel takes a
                    # few MB for a socket that is not read (loopback autotunes its send buffer
                    # to tcp_wmem's maximum, 4 MB), so it takes thousands of views (~350 bytes
                    # a frame) before its writes block and the bounded queue can overflow.
                    batches, lags = 30, []
                    for _ in range(batches):
                        batch = ingestor.batch()
                        sent_at = time.monotonic()
                        assert await ingestor.send(batch) == "ok", (
                            ingestor.outcomes,
                            ingestor.unexpected,
                        )
                        await _views_until(fast, {e["eventId"] for e in batch}, 10)
                        lags.append(
                            time.monotonic() - sent_at
                        )  # request -> the batch's last view
                    state = await drained(
                        stack_database, tenant.org_id, len(ingestor.acknowledged), 15
                    )
                    assert state.rollup_views == len(ingestor.acknowledged)
                    assert not fast.closed

                # Now the slow client reads what the server managed to send it: some views,
                # then the SLOW_CONSUMER error that ends the operation (or a close).
                received, ending = 0, None
                while ending is None:
                    try:
                        message = await asyncio.to_thread(slow.message, 10.0)
                    except TimeoutError:
                        raise AssertionError(
                            f"the slow subscriber read {received} views of {len(ingestor.acknowledged)}, then nothing for 10s"
                        ) from None
                    if message["type"] == "next" and not message["payload"].get(
                        "errors"
                    ):
                        received += 1
                    elif message["type"] in (
                        "ping",
                        "pong",
                    ):  # server keep-alives, queued like the rest
                        continue
                    else:
                        ending = message
            finally:
                slow.close()
            total_views = len(ingestor.acknowledged)
            assert received < total_views, "the slow subscriber was never dropped"
            if ending["type"] != "__close__":
                assert error_codes(ending) == ["SLOW_CONSUMER"], ending
            stack.check_alive()
            status, body, _ = await health(http, stack)
            assert status == 200, body
            assert max(lags) < 5.0, (
                f"the reading subscriber lagged {max(lags):.1f}s behind a batch"
            )
            report(
                "slow subscriber (one process, memory bus)",
                subscriber_queue=queue_size,
                views_sent=total_views,
                fast_received_all=True,
                fast_max_batch_lag_s=round(max(lags), 3),
                fast_median_batch_lag_s=round(sorted(lags)[len(lags) // 2], 3),
                slow_received_before_drop=received,
                slow_ending=ending.get("type")
                + ":"
                + ",".join(str(c) for c in error_codes(ending) if c)
                if ending["type"] != "__close__"
                else f"close {ending['code']}",
                outbox_pending_after=state.pending,
            )
    finally:
        drop_database(database_url, stack_database)


# -- the worker SIGKILLed mid-batch, repeatedly, under load ------------------------------------


async def _worker_batch_in_flight(database_url: str) -> bool:
    """A worker transaction that has applied effects and not yet committed (the worker's
    test delay holds it there); ingestion transactions never touch the rollup tables."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(
            "SELECT count(*) > 0 FROM pg_stat_activity WHERE datname = current_database()"
            " AND state LIKE 'idle in transaction%' AND query ILIKE '%rollups%'"
        )
    finally:
        await conn.close()


async def test_worker_sigkilled_mid_batch_repeatedly_under_load(
    database_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """Three producers keep sending while the worker process is SIGKILLed inside a batch
    (effects written, not committed) five times and restarted each time: every acknowledged
    event is stored once and counted once."""
    kills_wanted = 5
    stack_database = create_database(database_url, f"sigkill_{uuid.uuid4().hex[:6]}")
    env = {
        "PULSEGRAPH_WORKER_BATCH_SIZE": "100",
        "PULSEGRAPH_WORKER_TEST_DELAY_MS": "80",
    }
    try:
        with running_stack(
            "sigkill", database_url=stack_database, broadcast_url="memory://", work_dir=tmp_path,
            in_process_worker=False, extra_env=env,
        ) as stack:  # fmt: skip
            tenant = stack.tenant()
            ingestors, stop, senders = start_producers(http, stack, tenant, prefix="k", batch_size=50, events_per_second=LOAD_EVENTS_PER_SECOND)
            kills, mid_batch, restarts = 0, 0, []
            try:
                while kills < kills_wanted:
                    worker = stack.processes[1]
                    deadline = time.monotonic() + 20
                    in_flight = False
                    while time.monotonic() < deadline and not (
                        in_flight := await _worker_batch_in_flight(stack_database)
                    ):
                        await asyncio.sleep(0.01)
                    assert worker.running, worker.log_tail()
                    os.kill(worker.pid, signal.SIGKILL)  # type: ignore[arg-type]
                    await asyncio.to_thread(worker.popen.wait, 10)  # type: ignore[union-attr]
                    assert worker.returncode == -signal.SIGKILL
                    kills += 1
                    mid_batch += in_flight
                    worker.stop()  # closes its log file; the process is gone already
                    replacement = Process(
                        "worker",
                        worker.argv,
                        worker.env,
                        tmp_path / f"worker-after-kill-{kills}.log",
                    )
                    replacement.start()
                    stack.processes[1] = replacement
                    restarts.append(time.monotonic())
                    await asyncio.sleep(0.5)
                await asyncio.sleep(1.0)
            finally:
                stop.set()
                await asyncio.wait_for(
                    asyncio.gather(*senders, return_exceptions=True), HTTP_TIMEOUT + 5
                )
            merged = merge(ingestors)
            assert not merged.failures(), merged.failures()  # the API never noticed
            state = await drained(
                stack_database, tenant.org_id, len(merged.acknowledged)
            )
            assert_exactly_once(state, merged)
            assert mid_batch >= kills_wanted - 1, (
                f"only {mid_batch} of {kills} kills landed inside a batch"
            )
            stack.check_alive()
            report(
                "worker SIGKILLed under load",
                kills=kills,
                kills_inside_a_batch=mid_batch,
                sent=len(merged.sent),
                acknowledged=len(merged.acknowledged),
                stored=state.events,
                processed=state.rollup_views,
                profile_events=state.profile_events,
            )
    finally:
        drop_database(database_url, stack_database)


# -- sustained load ----------------------------------------------------------------------------


LOAD_SECONDS = 20.0
LOAD_EVENTS_PER_SECOND = int(
    os.environ.get("PULSEGRAPH_LOAD_TEST_RATE", "1000")
)  # all producers together


async def test_sustained_load_sent_equals_stored_equals_processed(
    database_url: str, tmp_path: Path, http: httpx.AsyncClient
) -> None:
    """Three producers on loopback, together LOAD_EVENTS_PER_SECOND for LOAD_SECONDS, against
    the API and a worker process: nothing refused, nothing lost, nothing counted twice. The
    rate is fixed so that the test checks correctness, not the shared server's capacity
    (bench/ measures throughput); the worker's backlog when the producers stop is reported."""
    stack_database = create_database(database_url, f"load_{uuid.uuid4().hex[:6]}")
    try:
        with running_stack(
            "load",
            database_url=stack_database,
            broadcast_url="memory://",
            work_dir=tmp_path,
            in_process_worker=False,
        ) as stack:
            tenant = stack.tenant()
            started = time.monotonic()
            ingestors, stop, senders = start_producers(http, stack, tenant, prefix="l", batch_size=100, events_per_second=LOAD_EVENTS_PER_SECOND)
            try:
                await asyncio.sleep(LOAD_SECONDS)
            finally:
                stop.set()
                await asyncio.wait_for(
                    asyncio.gather(*senders, return_exceptions=True), HTTP_TIMEOUT + 5
                )
            elapsed = time.monotonic() - started
            merged = merge(ingestors)
            assert not merged.failures(), (merged.failures(), merged.unexpected[:3])
            assert len(merged.sent) >= 0.7 * LOAD_EVENTS_PER_SECOND * LOAD_SECONDS, (
                f"only {len(merged.sent)} events sent: the API did not sustain {LOAD_EVENTS_PER_SECOND}/s"
            )
            drain_started = time.monotonic()
            backlog = (await ledger(stack_database, tenant.org_id)).pending
            # generous: the shared server may be busy with other runs
            state = await drained(
                stack_database,
                tenant.org_id,
                len(merged.acknowledged),
                2 * DRAIN_DEADLINE,
            )
            assert len(merged.sent) == len(merged.acknowledged)
            assert_exactly_once(state, merged)
            stack.check_alive()
            report(
                "sustained load",
                seconds=round(elapsed, 1),
                producers=len(ingestors),
                sent=len(merged.sent),
                acknowledged=len(merged.acknowledged),
                stored=state.events,
                processed=state.rollup_views,
                calls=sum(merged.outcomes.values()),
                events_per_s=round(len(merged.acknowledged) / elapsed),
                worker_backlog_at_stop=backlog,
                drain_after_stop_s=round(time.monotonic() - drain_started, 2),
            )
    finally:
        drop_database(database_url, stack_database)
