"""Server-Sent Events: today's marketplace counters and any live channel the viewer may
follow, over one `GET /stream` an `EventSource` can open.

What a client sees (the README shows a `curl -N` of it):

    retry: 3000
    id: 5f0c2a9e41d7-12
    event: connected
    data: {"organizationId": "...", "channels": ["counters", "revenue"], "resumed": false, ...}

    id: 5f0c2a9e41d7-12
    event: update
    data: {"channel": "counters", "data": {"executions": 41, "views": 7, "revenue": [...], ...}}

    : heartbeat

- `connected` first, then `update` events: `{"channel": name, "data": payload}` with the
  counters (name "counters": the payload of `MarketplaceCountersMessage`) and each message of
  the channels asked for by `?channels=` (see `CHANNEL_KINDS`), in the shape the bus carries.
- Every event has an `id:` (`<process epoch>-<sequence>`). A client reconnecting with
  `Last-Event-ID` (or `?lastEventId=`) gets the events it missed when the same process
  still holds them: the hub records every followed channel in a bounded replay log (the last
  `sse_replay_events` events, for `sse_replay_seconds`), and keeps following a channel that
  long after its last client left. Otherwise (another process, a restart, too old) the
  stream starts over: `connected` says `"resumed": false` and fresh counters follow.
- A heartbeat comment every `sse_heartbeat_seconds` keeps proxies from closing an idle stream.
- Each client reads through a bounded queue with the websocket's slow-consumer rule
  (app/eventbus.py `Subscription`): one that falls behind gets `event: error` with code
  SLOW_CONSUMER and the stream ends; its `EventSource` reconnects and resumes from the log.
- A stream whose credential is revoked ends with `event: error`, code UNAUTHENTICATED, on
  every process within the revocation watcher's second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from app.auth import Access, Viewer, administered_scope, is_revoked, readable_profile, require_reader
from app.errors import BadInput, Forbidden, NotFound
from app.eventbus import EventBus, SubscriberDropped, Subscription
from app.live_messages import (
    EngagementSnapshotMessage,
    FraudAlertMessage,
    GiftPurchasedMessage,
    GovAlertMessage,
    MarketplaceCountersMessage,
    ProfileViewMessage,
    RevenueCountersMessage,
)
from app.services.marketplace.rollups import current_counters
from app.services.marketplace.scope import marketplace_scope

log = logging.getLogger("pulsegraph.stream")

COUNTERS = "counters"
RETRY_MS = 3000
MAX_CHANNELS = 20
EVENT_ID = re.compile(r"([0-9a-f]{12})-(\d{1,18})")
# ?channels= names: an organization-wide kind, or a profile's kind with its id (views:<id>).
ORGANIZATION_KINDS: dict[str, tuple[Callable[[str], str], Access]] = {
    "revenue": (RevenueCountersMessage.channel_of, Access.ORG_READERS),
    "fraud": (FraudAlertMessage.channel_of, Access.ORG_ADMINS),
}
PROFILE_KINDS: dict[str, Callable[[str], str]] = {
    "views": ProfileViewMessage.channel_of,
    "engagement": EngagementSnapshotMessage.channel_of,
    "gifts": GiftPurchasedMessage.channel_of,
    "gov": GovAlertMessage.channel_of,
}
CHANNEL_KINDS = (*ORGANIZATION_KINDS, *(f"{kind}:<profileId>" for kind in PROFILE_KINDS))


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Who streams which organization, and the bus channel of each name they asked for."""

    viewer: Viewer
    organization_id: uuid.UUID
    channels: dict[str, str]  # bus channel -> the name the client knows it by


async def stream_plan(*, viewer: Viewer, organization_id: Any, channels: str | None) -> StreamPlan:
    """The organization's counters (its readers: org admins and viewers, platform admins
    naming it) and each channel asked for, every one checked as its own subscription is."""
    require_reader(viewer)
    scope = await marketplace_scope(viewer=viewer, organization_id=organization_id)
    org = scope.organization_id
    wanted = [name.strip() for name in (channels or "").split(",") if name.strip()]
    if len(wanted) > MAX_CHANNELS:
        raise BadInput(f"at most {MAX_CHANNELS} channels", field="channels")
    followed = {MarketplaceCountersMessage.channel_of(str(org)): COUNTERS}
    for name in wanted:
        followed[await _channel(viewer, org, name)] = name
    return StreamPlan(viewer, org, followed)


async def _channel(viewer: Viewer, org: uuid.UUID, name: str) -> str:
    kind, _, subject = name.partition(":")
    if kind in ORGANIZATION_KINDS and not subject:
        channel_of, access = ORGANIZATION_KINDS[kind]
        if access.refuses_read_only(viewer) or await administered_scope(viewer, org, refusal=access.text) != org:
            raise Forbidden(f"the {kind} channel is for {access.text}")
        return channel_of(str(org))
    if kind in PROFILE_KINDS and subject:
        profile = await readable_profile(viewer, subject)
        if profile.organization_id != org:
            raise NotFound("profile not found", field="channels")
        return PROFILE_KINDS[kind](str(profile.id))
    raise BadInput(f"unknown channel {name[:64]!r}; channels are {', '.join(CHANNEL_KINDS)}", field="channels")


# -- the per-process hub: one bus subscription per channel, a replay log, open streams --------


@dataclass(slots=True)
class _Feed:
    channel: str
    since: int  # the hub's sequence when this feed began recording: earlier events are not in the log
    clients: set[Subscription] = field(default_factory=set)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    linger: asyncio.Task[None] | None = None


@dataclass(frozen=True, slots=True)
class Logged:
    seq: int
    channel: str
    payload: Mapping[str, Any]
    at: float


class StreamHub:
    """Fans the bus out to this process's streams through bounded per-client queues, keeps the
    replay log, and closes the streams of revoked credentials (a revocation listener)."""

    def __init__(self, bus: EventBus, *, queue_size: int, replay_events: int, replay_seconds: float) -> None:
        self.bus = bus
        self.queue_size = queue_size
        self.replay_seconds = replay_seconds
        self.epoch = secrets.token_hex(6)
        self._seq = 0
        self._log: deque[Logged] = deque()
        self._replay_events = replay_events
        self._trimmed_through = 0  # the newest sequence no longer in the log
        self._feeds: dict[str, _Feed] = {}
        self._lock = asyncio.Lock()
        self._open: dict[str, set[asyncio.Event]] = {}

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}-{seq}"

    @contextlib.asynccontextmanager
    async def attach(self, channels: Collection[str]) -> AsyncIterator[tuple[Subscription, int]]:
        """A client's bounded queue on these channels (following each on the bus first), and
        the sequence it starts after."""
        queue = Subscription("stream", self.queue_size)
        async with self._lock:
            feeds = [await self._feed(channel) for channel in channels]
            for feed in feeds:
                feed.clients.add(queue)
            start = self._seq
        try:
            yield queue, start
        finally:
            for feed in feeds:
                feed.clients.discard(queue)
                if not feed.clients and feed.linger is None:
                    feed.linger = asyncio.create_task(self._stop_later(feed), name=f"stream-linger-{feed.channel}")

    def replay(self, last_event_id: str | None, channels: Collection[str]) -> list[Logged] | None:
        """The logged events after `last_event_id` on these channels; None when this process
        cannot tell what the client missed (another epoch, trimmed, not followed then)."""
        found = EVENT_ID.fullmatch(last_event_id or "")
        if found is None or found.group(1) != self.epoch:
            return None
        last = int(found.group(2))
        self._trim()
        if last > self._seq or last < self._trimmed_through:
            return None
        if any(channel not in self._feeds or self._feeds[channel].since > last + 1 for channel in channels):
            return None
        return [entry for entry in self._log if entry.seq > last and entry.channel in channels]

    def register(self, viewer: Viewer, closed: asyncio.Event) -> None:
        for handle in viewer.revocation_handles:
            self._open.setdefault(handle, set()).add(closed)

    def unregister(self, viewer: Viewer, closed: asyncio.Event) -> None:
        for handle in viewer.revocation_handles:
            streams = self._open.get(handle)
            if streams is not None:
                streams.discard(closed)
                if not streams:
                    del self._open[handle]

    async def close_revoked(self, token_ids: frozenset[str]) -> None:
        """The revocation watcher's listener: end every stream of these credentials."""
        for token_id in token_ids:
            for closed in self._open.pop(token_id, ()):
                closed.set()

    async def close(self) -> None:
        for feed in list(self._feeds.values()):
            await self._stop(feed)

    async def _feed(self, channel: str) -> _Feed:
        feed = self._feeds.get(channel)
        if feed is not None and feed.task is not None and not feed.task.done():
            if feed.linger is not None:
                feed.linger.cancel()
                feed.linger = None
            return feed
        feed = self._feeds[channel] = _Feed(channel, since=self._seq + 1)
        feed.task = asyncio.create_task(self._follow(feed), name=f"stream-feed-{channel}")
        ready = asyncio.create_task(feed.ready.wait())
        await asyncio.wait({ready, feed.task}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if feed.task.done():  # the bus refused the subscription
            self._feeds.pop(channel, None)
            feed.task.result()
        return feed

    async def _follow(self, feed: _Feed) -> None:
        """Record every message of the channel and offer it to the feed's clients; a lost
        subscription ends the feed's clients' streams (they resume or start over)."""
        try:
            async with self.bus.subscribe(feed.channel) as subscription:
                feed.ready.set()
                async for payload in subscription:
                    self._record(feed, payload)
        except SubscriberDropped as exc:
            log.warning("stream feed of %s lost: %s", feed.channel, exc)
        finally:
            if self._feeds.get(feed.channel) is feed:
                del self._feeds[feed.channel]
            for client in list(feed.clients):
                client.offer({"lost": feed.channel})

    def _record(self, feed: _Feed, payload: Mapping[str, Any]) -> None:
        self._seq += 1
        self._log.append(Logged(self._seq, feed.channel, payload, time.monotonic()))
        self._trim()
        item = {"seq": self._seq, "channel": feed.channel, "payload": payload}
        for client in list(feed.clients):
            client.offer(item)

    def _trim(self) -> None:
        oldest = time.monotonic() - self.replay_seconds
        while self._log and (len(self._log) > self._replay_events or self._log[0].at < oldest):
            self._trimmed_through = self._log.popleft().seq

    async def _stop_later(self, feed: _Feed) -> None:
        await asyncio.sleep(self.replay_seconds)
        if not feed.clients:
            feed.linger = None
            await self._stop(feed)

    async def _stop(self, feed: _Feed) -> None:
        if self._feeds.get(feed.channel) is feed:
            del self._feeds[feed.channel]
        for task in (feed.linger, feed.task):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


# -- one client's stream --------------------------------------------------------------------


def frame(event: str, data: Mapping[str, Any], event_id: str, *, retry: bool = False) -> bytes:
    """One SSE event: its id, name and JSON data on one line."""
    head = f"retry: {RETRY_MS}\n" if retry else ""
    return f"{head}id: {event_id}\nevent: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


HEARTBEAT = b": heartbeat\n\n"


async def frames(
    hub: StreamHub, plan: StreamPlan, *, last_event_id: str | None, heartbeat_seconds: float
) -> AsyncIterator[bytes]:
    """`connected`, the missed events or fresh counters, then live updates and heartbeats,
    until the client leaves, falls behind, or its credential is revoked."""
    closed = asyncio.Event()
    hub.register(plan.viewer, closed)
    try:
        async with hub.attach(plan.channels) as (queue, start):
            missed = hub.replay(last_event_id, plan.channels)
            resumed = missed is not None
            newest = max([start, *(entry.seq for entry in missed or ())])
            yield frame("connected", {
                "organizationId": str(plan.organization_id), "channels": sorted(plan.channels.values()),
                "resumed": resumed, "replayed": len(missed or ()), "heartbeatSeconds": heartbeat_seconds,
            }, hub.event_id(newest), retry=True)  # fmt: skip
            if missed is None:
                counters = await current_counters(plan.organization_id)
                yield frame("update", {"channel": COUNTERS, "data": counters.to_json()}, hub.event_id(start))
            for entry in missed or ():
                yield _update(hub, plan, entry.seq, entry.channel, entry.payload)
            async for chunk in _live(hub, plan, queue, newest, closed, heartbeat_seconds):
                yield chunk
    finally:
        hub.unregister(plan.viewer, closed)


async def _live(
    hub: StreamHub, plan: StreamPlan, queue: Subscription, sent: int, closed: asyncio.Event, heartbeat_seconds: float
) -> AsyncIterator[bytes]:
    revoked = asyncio.create_task(closed.wait())
    pending: asyncio.Task[Any] | None = None
    try:
        while True:
            if is_revoked(plan.viewer) or closed.is_set():
                yield _error(hub, sent, "UNAUTHENTICATED", "the credential was revoked; sign in again")
                return
            pending = pending or asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({pending, revoked}, timeout=heartbeat_seconds, return_when=asyncio.FIRST_COMPLETED)
            if pending not in done:
                if not done:
                    yield HEARTBEAT
                continue
            task, pending = pending, None
            try:
                item = task.result()
            except SubscriberDropped as exc:
                yield _error(hub, sent, "SLOW_CONSUMER", f"{exc}; reconnect with Last-Event-ID to resume")
                return
            if "lost" in item:
                yield _error(hub, sent, "UNAVAILABLE", "the live feed was interrupted; reconnect to continue")
                return
            if item["seq"] > sent:
                sent = item["seq"]
                yield _update(hub, plan, sent, item["channel"], item["payload"])
    finally:
        for task in (revoked, pending):
            if task is not None:
                task.cancel()


def _update(hub: StreamHub, plan: StreamPlan, seq: int, channel: str, payload: Mapping[str, Any]) -> bytes:
    return frame("update", {"channel": plan.channels[channel], "data": payload}, hub.event_id(seq))


def _error(hub: StreamHub, seq: int, code: str, message: str) -> bytes:
    return frame("error", {"code": code, "message": message}, hub.event_id(seq))
