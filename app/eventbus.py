"""Live fan-out of JSON events between processes, over broadcaster's transport backends.

`broadcaster.Broadcast` is not used because one stalled websocket must not cost memory
without bound or delay anyone else (its per-subscriber queues are unbounded and its listener
awaits every put), and because a dropped Redis or PostgreSQL connection must heal by itself
(it never reconnects). Its backends are kept; the layer above them is this module:

* one backend subscription per channel per process, fanned out to local subscribers;
* each message decoded once, the same dict handed to every subscriber, who must not mutate it;
* a bounded queue per subscriber: one that falls behind is dropped, never waited for;
* a listener that rebuilds the backend with exponential backoff and re-subscribes.

Delivery is live and at-most-once. Messages published while the backend is down or being
rebuilt are lost, and so is the backlog of a dropped subscriber. Anything that must not be
lost goes through the outbox; the bus only tells open subscriptions that something happened.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson
from broadcaster import BroadcastBackend, Event
from broadcaster._backends.memory import MemoryBackend
from broadcaster._backends.postgres import PostgresBackend
from broadcaster._backends.redis import RedisBackend
from redis import asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("pulsegraph.eventbus")

# Names that are valid unchanged on every backend, so a channel that works on memory:// in
# development also works on postgres:// in production (NAMEDATALEN caps channels at 63 bytes).
CHANNEL_NAME = re.compile(r"[a-z0-9_:.\-]{1,63}")
POSTGRES_MAX_PAYLOAD = 8000  # NOTIFY refuses payloads of this many bytes or more
PUBLISH_TIMEOUT = 5.0  # a half-open connection must fail a publish, not hang the worker
SUBSCRIBE_TIMEOUT = 5.0


class SubscriberDropped(Exception):
    """Raised from a subscription's iterator when the subscriber fell too far behind (its
    bounded queue overflowed) or the bus shut down; the message says which."""


class BusUnavailable(Exception):
    """The backend cannot be reached right now. Live pushes are best effort: callers log this
    and carry on, they do not retry into a dead connection."""


class Subscription:
    """One subscriber's bounded view of a channel, filled by the listener without waiting."""

    def __init__(self, channel: str, queue_size: int) -> None:
        self.channel = channel
        self.dropped = False
        self._reason = ""
        # None is the wake-up call after a drop; payloads are always dicts.
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize=queue_size)

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self.get()

    async def get(self) -> dict[str, Any]:
        if not self.dropped:
            payload = await self._queue.get()
            if payload is not None:
                return payload
            self._queue.put_nowait(None)  # wake any other task waiting on this subscription
        raise SubscriberDropped(self._reason)

    def offer(self, payload: dict[str, Any]) -> None:
        """Hand a payload over without waiting, under the slow-subscriber rule: a fan-out
        layered on the bus (the Server-Sent Events hub) keeps the same bound this way."""
        self._offer(payload)

    def _offer(self, payload: dict[str, Any]) -> None:
        if self.dropped:
            return
        try:
            self._queue.put_nowait(payload)
        except asyncio.QueueFull:
            size = self._queue.maxsize
            self._drop(f"subscriber too slow: {size} messages unread on {self.channel!r}, dropped")

    def _drop(self, reason: str) -> None:
        """Discard the backlog at once (it is stale for a subscriber who must resync anyway)
        and leave the wake-up call, which always fits in the emptied queue."""
        if self.dropped:
            return
        self.dropped = True
        self._reason = reason
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)


class EventBus:
    """One per process, shared by the API and any in-process worker."""

    def __init__(
        self,
        url: str,
        *,
        queue_size: int = 256,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 10.0,
    ) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1 (asyncio reads 0 as unbounded)")
        self.url = url
        self._backend_class = _backend_class(url)  # an unknown scheme fails here, not at connect
        self.reconnects = 0
        # Subscriptions the current backend holds, per channel. Exactly 1 for every channel
        # with local subscribers while connected; anything else is a bug worth seeing.
        self.backend_subscriptions: Counter[str] = Counter()
        self._queue_size = queue_size
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._max_payload = POSTGRES_MAX_PAYLOAD if self._backend_class is _PostgresBackend else None
        self._backend: BroadcastBackend | None = None  # None while down: publish fails fast
        self._listener: asyncio.Task[None] | None = None  # None until connect(), after disconnect()
        self._subscribers: dict[str, set[Subscription]] = {}
        # Orders backend subscribe/unsubscribe calls and the swap to a rebuilt backend, so the
        # backend's channels always match the channels that have local subscribers.
        self._lock = asyncio.Lock()
        self._connect_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._backend is not None

    async def connect(self, *, required: bool = True) -> None:
        """Open the backend and start listening. A backend that is down raises BusUnavailable,
        unless `required` is false: then the bus starts disconnected (`connected` is false,
        publishes fail fast, subscribers wait) and connects in the background, exactly as it
        reconnects after losing its backend. Live pushes are optional; serving is not."""
        async with self._connect_lock:
            if self._listener is not None:
                return
            backend: BroadcastBackend | None
            try:
                backend = await self._open_backend()
            except Exception as exc:
                error = BusUnavailable(f"cannot connect event bus to {_redacted(self.url)}: {exc!r}")
                if required:
                    raise error from exc
                log.warning("%s; starting without live pushes, connecting in the background", error)
                backend = None
            self._listener = asyncio.create_task(self._listen(backend), name="eventbus-listener")

    async def disconnect(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        listener.cancel()
        await asyncio.wait([listener])  # unlike `await listener`, never swallows our own cancel
        if not listener.cancelled() and listener.exception() is not None:
            log.error("event bus listener had crashed", exc_info=listener.exception())
        async with self._lock:
            backend, self._backend = self._backend, None
            for subscribers in self._subscribers.values():
                for subscription in subscribers:
                    subscription._drop("bus closed")
            self._subscribers.clear()
            self.backend_subscriptions.clear()
            if backend is not None:
                await _close_quietly(backend)

    async def publish(self, channel: str, payload: dict[str, Any]) -> None:
        await self._send(channel, self._encode(channel, payload))

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        """Encodes and checks every item before sending any, so a bad item sends nothing."""
        messages = [(channel, self._encode(channel, payload)) for channel, payload in items]
        backend = self._backend
        if isinstance(backend, _RedisBackend) and len(messages) > 1:
            # One round trip for the batch: a worker publishing a PUBLISH per view spent a
            # quarter of its time in socket writes.
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    await backend.publish_many(messages)
            except Exception as exc:
                raise BusUnavailable(f"publish of {len(messages)} messages failed: {exc!r}") from exc
            return
        for channel, message in messages:
            await self._send(channel, message)

    async def followed(self, channels: Collection[str]) -> set[str]:
        """The channels among `channels` that someone may be subscribed to, so that a publisher
        builds and sends only payloads somebody reads. Redis counts the subscribers of every
        process (PUBSUB NUMSUB, one round trip); the memory bus serves this process alone and
        knows its own; PostgreSQL cannot tell, so there every channel counts as followed."""
        backend = self._backend
        if backend is None:
            raise BusUnavailable(f"event bus {_redacted(self.url)} is down; cannot count subscribers")
        if isinstance(backend, _RedisBackend):
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT):
                    return await backend.followed(channels)
            except Exception as exc:
                raise BusUnavailable(f"counting subscribers of {len(channels)} channels failed: {exc!r}") from exc
        if isinstance(backend, MemoryBackend):
            return {channel for channel in channels if channel in self._subscribers}
        return set(channels)

    @asynccontextmanager
    async def subscribe(self, channel: str) -> AsyncIterator[Subscription]:
        subscription = Subscription(_checked(channel), self._queue_size)
        await self._add(subscription)
        try:
            yield subscription
        finally:
            await self._remove(subscription)

    def subscriber_count(self, channel: str | None = None) -> int:
        """Subscribers still being fed (dropped ones are not counted, even before they leave)."""
        groups = self._subscribers.values() if channel is None else [self._subscribers.get(channel, set())]
        return sum(not s.dropped for subscribers in groups for s in subscribers)

    def _encode(self, channel: str, payload: dict[str, Any]) -> str:
        _checked(channel)
        message = orjson.dumps(payload)
        if self._max_payload is not None and len(message) >= self._max_payload:
            raise ValueError(
                f"payload for channel {channel!r} is {len(message)} bytes; "
                f"PostgreSQL NOTIFY carries fewer than {self._max_payload}"
            )
        return message.decode()

    async def _send(self, channel: str, message: str) -> None:
        backend = self._backend
        if backend is None:
            raise BusUnavailable(f"event bus {_redacted(self.url)} is down; not sent to {channel!r}")
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT):
                await backend.publish(channel, message)
        except Exception as exc:
            raise BusUnavailable(f"publish to {channel!r} failed: {exc!r}") from exc

    async def _add(self, subscription: Subscription) -> None:
        channel = subscription.channel
        async with self._lock:
            if self._listener is None:
                raise BusUnavailable("event bus is not connected: call connect() first")
            # While reconnecting (no backend) the subscriber waits locally; the rebuilt
            # backend subscribes every channel in self._subscribers.
            if channel not in self._subscribers and self._backend is not None:
                try:
                    await self._backend.subscribe(channel)
                except Exception as exc:
                    raise BusUnavailable(f"cannot subscribe to {channel!r}: {exc!r}") from exc
                self.backend_subscriptions[channel] += 1
            self._subscribers.setdefault(channel, set()).add(subscription)

    async def _remove(self, subscription: Subscription) -> None:
        channel = subscription.channel
        subscribers = self._subscribers.get(channel)
        if subscribers is None or subscription not in subscribers:
            return  # the bus was closed meanwhile
        subscribers.discard(subscription)  # before any await: no delivery even if cancelled below
        async with self._lock:
            if subscribers or self._subscribers.get(channel) is not subscribers:
                return  # someone else subscribed while we waited for the lock
            del self._subscribers[channel]
            if self._backend is None:
                return
            self.backend_subscriptions.pop(channel, None)
            try:
                await self._backend.unsubscribe(channel)
            except Exception as exc:  # a dead connection unsubscribes by itself
                log.warning("event bus: unsubscribe from %r failed: %r", channel, exc)

    async def _open_backend(self) -> BroadcastBackend:
        """Connect outside the lock (it can take a while), then subscribe and install under
        it, so no subscriber arriving in between is left without a backend subscription."""
        backend = self._backend_class(self.url)
        try:
            await backend.connect()
            async with self._lock:
                subscribed: Counter[str] = Counter()
                for channel in list(self._subscribers):
                    await backend.subscribe(channel)
                    subscribed[channel] += 1
                self.backend_subscriptions = subscribed
                self._backend = backend
        except BaseException:
            await _close_quietly(backend)
            raise
        return backend

    async def _listen(self, backend: BroadcastBackend | None) -> None:
        if backend is None:  # connect(required=False) with the backend down
            backend = await self._reconnect(None)
        while True:
            try:
                event = await backend.next_published()
            except Exception as exc:
                log.warning("event bus %s lost its backend (%r); reconnecting", _redacted(self.url), exc)
                backend = await self._reconnect(backend)
                continue
            self._dispatch(event)
            # Let subscribers run between messages: a burst that arrives in one read must not
            # overflow the queue of a subscriber that is keeping up.
            await asyncio.sleep(0)

    def _dispatch(self, event: Event) -> None:
        subscribers = self._subscribers.get(event.channel)
        if not subscribers:
            return  # raced an unsubscribe
        try:
            payload = orjson.loads(event.message)
        except orjson.JSONDecodeError:
            log.warning("event bus: dropping a message on %r that is not JSON", event.channel)
            return
        for subscription in subscribers:
            subscription._offer(payload)

    async def _reconnect(self, broken: BroadcastBackend | None) -> BroadcastBackend:
        """Retry forever: the bus is optional for correctness, and subscribers keep waiting."""
        async with self._lock:
            self._backend = None
            self.backend_subscriptions.clear()
        if broken is not None:
            await _close_quietly(broken)
        delay = self._reconnect_delay
        while True:
            await asyncio.sleep(delay)
            try:
                backend = await self._open_backend()
            except Exception as exc:
                delay = min(delay * 2, self._max_reconnect_delay)
                log.warning("event bus reconnect failed (%r); next attempt in %.1fs", exc, delay)
                continue
            self.reconnects += 1
            log.warning("event bus reconnected; %d channels re-subscribed", len(self.backend_subscriptions))
            return backend


class _Failed:
    """Put in a backend's queue so that a dead connection reaches `next_published()`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _event_or_raise(item: Event | _Failed) -> Event:
    if isinstance(item, _Failed):
        raise item.error
    return item


class _RedisBackend(RedisBackend):
    """RedisBackend that reports failures, never strands a channel, and confirms subscribes.

    Upstream, a dropped connection kills the private listener task silently and
    `next_published()` waits forever; a subscribe racing the last unsubscribe can leave the
    listener parked with a channel subscribed; and `subscribe()` returns before Redis
    confirms, so a publish right after it may be missed. redis-py's own retries are off so
    that an outage reaches EventBus, whose reconnect policy is then the only one.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)  # for the state upstream methods use; its unopened client is replaced
        self._conn = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0))
        self._pubsub = self._conn.pubsub()
        self._queue: asyncio.Queue[Event | _Failed] = asyncio.Queue()  # type: ignore[assignment]
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._failure: BaseException | None = None

    async def connect(self) -> None:
        await self._pubsub.connect()
        self._listener = asyncio.create_task(self._pubsub_listener(), name="eventbus-redis-reader")

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.wait([self._listener])
        await self._pubsub.aclose()
        await self._conn.aclose()

    async def subscribe(self, channel: str) -> None:
        if self._failure is not None:
            raise self._failure
        confirmed = asyncio.get_running_loop().create_future()
        self._confirmations[channel] = confirmed
        try:
            await self._pubsub.subscribe(channel)
            self._ready.set()
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
                await confirmed
        finally:
            del self._confirmations[channel]

    async def next_published(self) -> Event:
        return _event_or_raise(await self._queue.get())

    async def publish_many(self, messages: list[tuple[str, str]]) -> None:
        """Every PUBLISH of the batch in one pipeline (one write, one round trip)."""
        async with self._conn.pipeline(transaction=False) as pipe:
            for channel, message in messages:
                pipe.publish(channel, message)
            await pipe.execute()

    async def followed(self, channels: Collection[str]) -> set[str]:
        """The channels with at least one subscriber on this Redis server."""
        if not channels:
            return set()
        counts = await self._conn.pubsub_numsub(*channels)
        return {channel.decode() for channel, count in counts if count}

    async def _pubsub_listener(self) -> None:
        try:
            while True:
                await self._ready.wait()
                async for message in self._pubsub.listen():
                    self._handle(message)
                if not self._pubsub.subscribed:  # a subscribe may have raced the last unsubscribe
                    self._ready.clear()
        except Exception as exc:
            self._fail(exc)

    def _handle(self, message: dict[str, Any]) -> None:
        if message["type"] == "message":
            self._queue.put_nowait(Event(channel=message["channel"].decode(), message=message["data"].decode()))
        elif message["type"] == "subscribe":
            confirmed = self._confirmations.get(message["channel"].decode())
            if confirmed is not None and not confirmed.done():
                confirmed.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        self._failure = exc
        for confirmed in self._confirmations.values():
            if not confirmed.done():
                confirmed.set_exception(exc)
        self._queue.put_nowait(_Failed(exc))


class _PostgresBackend(PostgresBackend):
    """PostgresBackend that reports a lost connection and takes turns on its one connection.

    Upstream never notices the connection dying (`next_published()` waits forever) and lets
    publish, LISTEN and UNLISTEN overlap on one asyncpg connection, which asyncpg refuses
    ("another operation is in progress"). Channel names need no mapping: asyncpg quotes the
    identifier in LISTEN (so ':' and '-' work) and pg_notify() takes the name as text.
    """

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self._lock = asyncio.Lock()
        self._lost = False

    async def connect(self) -> None:
        self._conn = await asyncpg.connect(self._url)
        self._listen_queue: asyncio.Queue[Event | _Failed] = asyncio.Queue()  # type: ignore[assignment]
        self._conn.add_termination_listener(self._terminated)

    async def subscribe(self, channel: str) -> None:
        await self._take_turn(super().subscribe, channel)

    async def unsubscribe(self, channel: str) -> None:
        await self._take_turn(super().unsubscribe, channel)

    async def publish(self, channel: str, message: str) -> None:
        await self._take_turn(super().publish, channel, message)

    async def next_published(self) -> Event:
        return _event_or_raise(await self._listen_queue.get())

    async def _take_turn(self, operation: Callable[..., Awaitable[None]], *args: str) -> None:
        async with self._lock:
            try:
                await operation(*args)
            except Exception:
                # asyncpg skips termination listeners when an operation races the server's
                # FATAL message (pg_terminate_backend, shutdown): check for ourselves.
                if self._conn.is_closed():
                    self._terminated(self._conn)
                raise

    def _terminated(self, connection: object) -> None:
        if not self._lost:
            self._lost = True
            self._listen_queue.put_nowait(_Failed(ConnectionError("PostgreSQL LISTEN connection closed")))


def _backend_class(url: str) -> type[BroadcastBackend]:
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryBackend
    if scheme in ("redis", "rediss"):
        return _RedisBackend
    if scheme in ("postgres", "postgresql"):
        return _PostgresBackend
    raise ValueError(f"unsupported event bus URL scheme {scheme!r}: use memory://, redis:// or postgresql://")


async def _close_quietly(backend: BroadcastBackend) -> None:
    """Closing a broken or half-open backend is expected to fail; nothing is left to save."""
    try:
        await backend.disconnect()
    except Exception as exc:
        log.debug("event bus: closing the old backend failed: %r", exc)


def _checked(channel: str) -> str:
    if not CHANNEL_NAME.fullmatch(channel):
        raise ValueError(f"invalid channel name {channel!r}: use 1-63 characters from [a-z0-9_:.-]")
    return channel


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"
