"""The event bus against real backends: memory and PostgreSQL always, Redis when configured.

PostgreSQL is the test session's server (DATABASE_URL's, or the embedded one the suite
starts); REDIS_URL selects Redis, and without it those cases are skipped. Every
test uses its own channel names, so runs against a shared server do not see each other, and
the fault tests kill only this test's own connection (by client name or by its LISTEN query),
never every pub/sub client on the server.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from redis import asyncio as redis

from app.eventbus import BusUnavailable, EventBus, SubscriberDropped, Subscription
from tests.support.tcp_proxy import Proxy

REDIS_URL = os.environ.get("REDIS_URL")

needs_redis = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set")

MEMORY = pytest.param("memory", id="memory")
REDIS = pytest.param("redis", id="redis", marks=needs_redis)
POSTGRES = pytest.param("postgres", id="postgres")

WAIT = 5.0  # seconds before a missing message counts as lost


def fresh_channel() -> str:
    """Contains ':', '-' and '.', which PostgreSQL would reject in an unquoted LISTEN."""
    return f"test:{uuid.uuid4()}.live"


def backend_url(backend: str, request: pytest.FixtureRequest) -> str:
    """The bus URL of a backend: PostgreSQL is the session's server, whichever it is."""
    if backend == "memory":
        return "memory://"
    if backend == "redis":
        assert REDIS_URL is not None
        return REDIS_URL
    return request.getfixturevalue("server_url")


@pytest.fixture(params=[MEMORY, REDIS, POSTGRES])
def url(request: pytest.FixtureRequest) -> str:
    return backend_url(request.param, request)


@pytest.fixture(params=[REDIS, POSTGRES])
def shared_url(request: pytest.FixtureRequest) -> str:
    """A backend that carries messages between processes."""
    return backend_url(request.param, request)


@pytest_asyncio.fixture
async def bus(url: str) -> AsyncIterator[EventBus]:
    event_bus = EventBus(url)
    await event_bus.connect()
    yield event_bus
    await event_bus.disconnect()


async def receive(subscription: Subscription, count: int) -> list[dict[str, Any]]:
    async with asyncio.timeout(WAIT):
        return [await subscription.get() for _ in range(count)]


async def redis_numsub(channel: str) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        [(_, count)] = await client.pubsub_numsub(channel)
        return count
    finally:
        await client.aclose()


def pending_tasks() -> set[asyncio.Task[Any]]:
    return {task for task in asyncio.all_tasks() if not task.done()} - {asyncio.current_task()}


async def test_fan_out_shares_one_backend_subscription(bus: EventBus) -> None:
    channel = fresh_channel()
    async with AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(bus.subscribe(channel)) for _ in range(3)]
        assert bus.backend_subscriptions[channel] == 1
        assert bus.subscriber_count(channel) == 3
        if bus.url == REDIS_URL:
            assert await redis_numsub(channel) == 1  # the server's view, not ours

        for n in range(20):
            await bus.publish(channel, {"n": n})
        received = [await receive(s, 20) for s in subscriptions]

        assert [m["n"] for m in received[0]] == list(range(20))
        assert received[0] == received[1] == received[2]
        assert all(a is b is c for a, b, c in zip(*received, strict=True))  # decoded once, shared
    assert bus.backend_subscriptions[channel] == 0
    assert bus.subscriber_count(channel) == 0


async def test_last_subscriber_leaving_unsubscribes_the_backend(bus: EventBus) -> None:
    channel = fresh_channel()
    async with bus.subscribe(channel):
        async with bus.subscribe(channel):
            pass
        assert bus.backend_subscriptions[channel] == 1
    assert channel not in bus.backend_subscriptions
    if bus.url == REDIS_URL:
        async with asyncio.timeout(WAIT):  # UNSUBSCRIBE is not acknowledged synchronously
            while await redis_numsub(channel):
                await asyncio.sleep(0.05)
    async with bus.subscribe(channel) as again:  # and subscribing afterwards still works
        await bus.publish(channel, {"again": True})
        assert await receive(again, 1) == [{"again": True}]


async def test_subscribing_right_after_the_last_unsubscribe(bus: EventBus) -> None:
    """broadcaster's RedisBackend can park its reader here with a channel still subscribed."""
    for _ in range(20):
        async with bus.subscribe(fresh_channel()):
            pass
        channel = fresh_channel()
        async with bus.subscribe(channel) as subscription:
            await bus.publish(channel, {"ok": True})
            assert await receive(subscription, 1) == [{"ok": True}]


async def test_channels_are_separate(bus: EventBus) -> None:
    first, second = fresh_channel(), fresh_channel()
    async with bus.subscribe(first) as a, bus.subscribe(second) as b:
        await bus.publish_many([(first, {"to": "a"}), (second, {"to": "b"}), (first, {"to": "a2"})])
        assert await receive(a, 2) == [{"to": "a"}, {"to": "a2"}]
        assert await receive(b, 1) == [{"to": "b"}]


async def test_cross_instance_delivery(shared_url: str) -> None:
    channel = fresh_channel()
    publisher, listener = EventBus(shared_url), EventBus(shared_url)
    await publisher.connect()
    await listener.connect()
    try:
        async with listener.subscribe(channel) as subscription:
            await publisher.publish(channel, {"from": "publisher", "text": "héllo"})
            assert await receive(subscription, 1) == [{"from": "publisher", "text": "héllo"}]
    finally:
        await publisher.disconnect()
        await listener.disconnect()


@pytest.mark.parametrize("where", [MEMORY, REDIS, POSTGRES])
async def test_followed_channels_are_those_someone_subscribes_to(where: str, request: pytest.FixtureRequest) -> None:
    """A publisher asks which channels have subscribers in any process (Redis counts them,
    the memory bus is its own process); PostgreSQL cannot tell, so it answers every channel."""
    watched, quiet = fresh_channel(), fresh_channel()
    publisher = EventBus(backend_url(where, request))
    listener = publisher if where == "memory" else EventBus(backend_url(where, request))
    await publisher.connect()
    await listener.connect()
    try:
        async with listener.subscribe(watched):
            followed = await publisher.followed([watched, quiet])
    finally:
        await publisher.disconnect()
        await listener.disconnect()
    assert followed == ({watched, quiet} if where == "postgres" else {watched})


async def test_followed_fails_fast_while_the_bus_is_down() -> None:
    bus = EventBus("redis://127.0.0.1:1/0")
    await bus.connect(required=False)
    try:
        with pytest.raises(BusUnavailable):
            await bus.followed([fresh_channel()])
    finally:
        await bus.disconnect()


async def test_slow_subscriber_is_dropped_without_slowing_others(url: str) -> None:
    bus = EventBus(url, queue_size=4)
    await bus.connect()
    channel = fresh_channel()
    try:
        async with bus.subscribe(channel) as slow, bus.subscribe(channel) as fast:
            reader = asyncio.create_task(receive(fast, 50))
            for n in range(50):
                await bus.publish(channel, {"n": n})
            assert [m["n"] for m in await reader] == list(range(50))

            assert slow.dropped and not fast.dropped
            assert bus.subscriber_count(channel) == 1
            with pytest.raises(SubscriberDropped, match=r"^subscriber too slow: .* dropped$"):
                async for _ in slow:
                    pass
    finally:
        await bus.disconnect()


async def test_disconnect_ends_subscriptions_and_leaves_no_tasks(url: str) -> None:
    before = pending_tasks()
    bus = EventBus(url)
    await bus.connect()
    await bus.connect()  # idempotent
    channel = fresh_channel()
    async with bus.subscribe(channel) as waiting, bus.subscribe(channel) as iterating:
        getter = asyncio.create_task(waiting.get())
        await asyncio.sleep(0)
        await bus.disconnect()
        assert not bus.connected

        with pytest.raises(SubscriberDropped, match="bus closed"):
            await getter
        with pytest.raises(SubscriberDropped, match="bus closed"):
            async for _ in iterating:
                pass
        with pytest.raises(BusUnavailable):
            await bus.publish(channel, {"late": True})
    assert pending_tasks() <= before
    await bus.disconnect()  # a second disconnect is harmless


async def test_refuses_to_work_before_connect() -> None:
    bus = EventBus("memory://")
    assert not bus.connected
    with pytest.raises(BusUnavailable):
        await bus.publish(fresh_channel(), {})
    with pytest.raises(BusUnavailable):
        async with bus.subscribe(fresh_channel()):
            pass


@pytest.mark.parametrize("channel", ["Upper", "has space", "", "x" * 64, 'quote"d'])
async def test_refuses_channel_names_not_portable_across_backends(channel: str) -> None:
    bus = EventBus("memory://")
    await bus.connect()
    try:
        with pytest.raises(ValueError, match="invalid channel name"):
            await bus.publish(channel, {})
        with pytest.raises(ValueError, match="invalid channel name"):
            async with bus.subscribe(channel):
                pass
    finally:
        await bus.disconnect()


def test_refuses_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        EventBus("kafka://localhost:9092")


async def test_postgres_refuses_payloads_notify_cannot_carry(server_url: str) -> None:
    bus = EventBus(server_url)
    await bus.connect()
    channel = fresh_channel()
    try:
        async with bus.subscribe(channel) as subscription:
            largest = {"x": "a" * (8000 - 1 - len('{"x":""}'))}  # 7999 bytes encoded
            await bus.publish(channel, largest)
            assert await receive(subscription, 1) == [largest]

            with pytest.raises(ValueError, match=channel):
                await bus.publish(channel, {"x": "a" * 8000})
            with pytest.raises(ValueError, match=channel):  # nothing of the batch is sent
                await bus.publish_many([(channel, {"ok": 1}), (channel, {"x": "a" * 8000})])
            await bus.publish(channel, {"after": 1})
            assert await receive(subscription, 1) == [{"after": 1}]
    finally:
        await bus.disconnect()


async def wait_for_recovery(bus: EventBus, channel: str, subscription: Subscription) -> dict[str, Any]:
    """Publish until the subscriber hears again; messages sent during the outage may be lost."""
    async with asyncio.timeout(10):
        for attempt in range(10_000):
            try:
                await bus.publish(channel, {"attempt": attempt})
            except BusUnavailable:
                pass
            try:
                async with asyncio.timeout(0.2):
                    return await subscription.get()
            except TimeoutError:
                continue
    raise AssertionError("unreachable")


async def test_outage_fails_publish_fast_and_resumes_after(shared_url: str) -> None:
    proxy = Proxy(shared_url)
    await proxy.start()
    bus = EventBus(proxy.url, reconnect_delay=0.05, max_reconnect_delay=0.2)
    await bus.connect()
    channel = fresh_channel()
    try:
        async with bus.subscribe(channel) as subscription:
            await proxy.cut()
            async with asyncio.timeout(WAIT):
                while bus.connected:
                    await asyncio.sleep(0.02)
            async with asyncio.timeout(1):
                with pytest.raises(BusUnavailable, match="down"):
                    await bus.publish(channel, {"lost": True})
            await asyncio.sleep(0.5)  # a few refused reconnects, backing off

            await proxy.start()
            assert "attempt" in await wait_for_recovery(bus, channel, subscription)
            assert bus.reconnects == 1 and not subscription.dropped
    finally:
        await bus.disconnect()
        await proxy.cut()


@pytest.mark.parametrize("unreachable", ["redis://127.0.0.1:1/0", "postgresql://postgres@127.0.0.1:1/postgres"])
async def test_connect_to_nothing_raises_and_leaves_no_tasks(unreachable: str) -> None:
    before = pending_tasks()
    bus = EventBus(unreachable)
    with pytest.raises(BusUnavailable, match="cannot connect"):
        await bus.connect()
    assert not bus.connected
    # Only the bus's own tasks count: the app other tests started keeps its background work
    # (pool releases, timing flushes) running in this loop meanwhile.
    assert not [task for task in pending_tasks() - before if of_the_bus(task)]


def of_the_bus(task: asyncio.Task[Any]) -> bool:
    """A task running code of the event bus or of its backend clients."""
    code = getattr(task.get_coro(), "cr_code", None)
    module = getattr(task.get_coro(), "cr_frame", None)
    names = {getattr(code, "co_filename", ""), getattr(getattr(module, "f_code", None), "co_filename", "")}
    names = {name for name in names if not name.endswith("asyncpg/pool.py")}  # the app's pool giving a connection back
    return any(part in name for name in names for part in ("eventbus", "broadcaster", "redis", "asyncpg"))


def with_client_name(url: str, name: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&client_name={name}" if parts.query else f"client_name={name}"
    return urlunsplit(parts._replace(query=query))


@needs_redis
async def test_redis_reconnects_after_pubsub_connection_is_killed() -> None:
    name = f"eventbus-test-{uuid.uuid4().hex[:12]}"
    bus = EventBus(with_client_name(REDIS_URL, name), reconnect_delay=0.05, max_reconnect_delay=0.5)
    await bus.connect()
    channel = fresh_channel()
    admin = redis.Redis.from_url(REDIS_URL)
    try:
        async with bus.subscribe(channel) as subscription:
            await bus.publish(channel, {"before": True})
            assert await receive(subscription, 1) == [{"before": True}]

            [victim] = [c for c in await admin.client_list(_type="pubsub") if c["name"] == name]
            assert await admin.client_kill_filter(_id=victim["id"]) == 1

            assert "attempt" in await wait_for_recovery(bus, channel, subscription)
            assert bus.reconnects >= 1 and bus.connected
            assert bus.backend_subscriptions[channel] == 1
            assert not subscription.dropped
    finally:
        await admin.aclose()
        await bus.disconnect()


async def listener_pid(bus: EventBus, admin: asyncpg.Connection) -> int:
    """The bus's connection, found by a LISTEN naming a channel only this call uses."""
    async with bus.subscribe(side := fresh_channel()):
        pid = await admin.fetchval(
            "SELECT pid FROM pg_stat_activity"
            " WHERE query LIKE 'LISTEN%' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
            side,
        )
    assert pid is not None
    return pid


async def test_postgres_reconnects_after_listener_connection_is_terminated(server_url: str) -> None:
    bus = EventBus(server_url, reconnect_delay=0.05, max_reconnect_delay=0.5)
    await bus.connect()
    channel = fresh_channel()
    admin = await asyncpg.connect(server_url)
    try:
        async with bus.subscribe(channel) as subscription:
            await bus.publish(channel, {"before": True})
            assert await receive(subscription, 1) == [{"before": True}]

            # Killed while idle: noticed through asyncpg's termination callback alone.
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", await listener_pid(bus, admin))
            async with asyncio.timeout(10):
                while bus.reconnects < 1:
                    await asyncio.sleep(0.02)
            assert "attempt" in await wait_for_recovery(bus, channel, subscription)

            # Killed with a publish right behind: asyncpg may then skip that callback.
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", await listener_pid(bus, admin))
            assert "attempt" in await wait_for_recovery(bus, channel, subscription)
            assert bus.reconnects >= 2 and bus.connected
            assert bus.backend_subscriptions[channel] == 1
            assert not subscription.dropped
    finally:
        await admin.close()
        await bus.disconnect()
