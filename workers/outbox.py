"""The outbox worker: claims pending events, applies their effects, publishes live updates.

Claiming, applying and marking happen in ONE transaction: the batch's outbox rows are
locked with `FOR UPDATE SKIP LOCKED` (so N workers share the queue without waiting for
each other), every registered consumer applies its effects (`workers/consumers.py` lists
them: gov checks of the views, the fraud rules, the money ledger, invoices), the rows are
marked processed, and last the consumers that contend for rollup rows run (profile events
and rollups, then the gov alerts of the new views): a row lock is held until commit, so
taken last it is held the shortest time.
A worker killed at any instant leaves either the whole batch applied and marked, or nothing:
processing is at-least-once, effects are exactly-once (and keyed by event id besides, so a
re-run batch changes nothing).

After commit the batch is published to the event bus (views, gov alerts, per-profile running
totals, fraud alerts, gifts and revenue counters), only to the channels someone follows (one
question to the bus first): what the consumers build from memory in one publish (views and
alerts), then what they read (running totals, gifts and counters). Consumers hand over typed
messages (app/live_messages.py), encoded to the bus's JSON here. That is best effort: a
failed publish is logged and the worker carries on.

The worker wakes on `NOTIFY pulsegraph_outbox` (sent by ingestion after commit) on a
dedicated connection that is re-opened when it drops, and polls every
`settings.worker_poll_seconds` in case a notification was missed.

After each wake-up it also folds the events stored since into the insights' hourly
aggregates (`rollups.fold`; one process at a time), and starts sending the notification
deliveries that are due (app/services/notifications/sender.py) beside the loop, so a slow
receiver never holds up the events.

Run it with `pulsegraph worker` or `python -m workers.outbox`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from typing import Any

import asyncpg
from tortoise import connections

from app import logs, partitions
from app.consumers import Batch, Consumer
from app.database import close_database, connection, init_database, transaction
from app.geoip_reload import geoip_reloading
from app.live_messages import LiveMessage, publishable
from app.result_cache import result_cache
from app.services.claimed_events import EVENT_OF_KEY
from app.services.gov_detection import GovDetector, get_detector
from app.services.insights import rollups
from app.services.notifications import sender
from app.settings import Settings
from app.vocabulary import OUTBOX_CHANNEL
from workers.consumers import consumers

log = logging.getLogger("pulsegraph.worker")

TEST_DELAY_ENV = "PULSEGRAPH_WORKER_TEST_DELAY_MS"
SUMMARY_EVERY_SECONDS = 60.0
MAX_RETRIES = 5  # deadlocks and serialization failures: the batch is rolled back and retried

# Each claimed row's event is looked up by its primary key (see app.services.claimed_events).
CLAIM = f"""
WITH claimed AS (
    SELECT seq, organization_id, event_id, occurred_at
    FROM outbox
    WHERE processed_at IS NULL
    ORDER BY seq
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
SELECT k.seq, k.organization_id, k.event_id, k.occurred_at, e.type, e.profile_id, e.visitor_id,
       e.session_id, e.engagement_ms, e.amount_minor, e.currency, e.country, e.city, e.device_type,
       e.browser, e.os, e.referrer_domain, e.utm_source, host(e.ip) AS ip, e.asn, e.as_org,
       e.occurred_at IS NOT NULL AS found
FROM claimed k
LEFT JOIN {EVENT_OF_KEY} ON true
ORDER BY k.seq
"""

# By `seq` through the pending index the claim walked: joined on the primary key instead,
# PostgreSQL hashed the whole outbox (processed rows are kept) for every batch.
MARK_PROCESSED = """
UPDATE outbox SET processed_at = now()
WHERE processed_at IS NULL AND seq = ANY($1::bigint[])
"""

RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


class OutboxWorker:
    def __init__(
        self, *, bus: Any, settings: Settings, name: str = "worker", detector: GovDetector | None = None
    ) -> None:
        self.bus = bus
        self.settings = settings
        # Built at start, so a configured GeoIP database that is missing fails here, not per batch.
        self.detector = detector or get_detector(settings)
        self.consumers: tuple[Consumer, ...] = consumers(self.detector)
        self.name = name
        self.batch_size = max(1, settings.worker_batch_size)
        self.poll_seconds = max(0.05, settings.worker_poll_seconds)
        self.test_delay = _env_int(TEST_DELAY_ENV) / 1000
        self.processed_total = 0
        self.batches_total = 0
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._listening = asyncio.Event()  # set each time the LISTEN connection is (re)opened
        self._running = False
        self._done = asyncio.Event()
        self._done.set()
        self._listen_conn: asyncpg.Connection | None = None
        self._summary_at = time.monotonic()
        self._summary_count = 0
        self._sending: asyncio.Task[int] | None = None
        self._folded_since_vacuum = 0
        self._folded_since_analyze = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Process until `stop()`: drain on every wake-up (NOTIFY or poll). A stopped
        worker stays stopped (a `stop()` that races the start of `run()` must win)."""
        self._done.clear()
        self._running = True
        listener = asyncio.create_task(self._listen_forever(), name=f"{self.name}-listen")
        log.info("worker %s started (batch %d, poll %.1fs)", self.name, self.batch_size, self.poll_seconds)
        failures = 0
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before draining: a NOTIFY during the drain wakes us again
                try:
                    await self.drain()
                    await self.fold_rollups()
                    self._start_sending()
                    failures = 0
                except Exception:  # the database is down, or a bug: log, back off, retry
                    failures += 1
                    log.exception("worker %s: batch failed (attempt %d)", self.name, failures)
                    # Back off, but retry as soon as the LISTEN connection is back: after a
                    # PostgreSQL restart that is when the database answers again.
                    self._listening.clear()
                    await self._sleep(min(10.0, 0.5 * 2 ** min(failures, 6)), until=self._listening)
                    continue
                await self._sleep(self.poll_seconds, wake=True)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            await self._finish_sending()
            await self._close_listen_connection()
            self._running = False
            self._done.set()
            log.info("worker %s stopped after %d events", self.name, self.processed_total)

    async def stop(self) -> None:
        """Ask `run()` to finish its current batch and return; waits until it has."""
        self._stopping.set()
        self._wake.set()
        if self._running:
            await self._done.wait()

    async def _sleep(self, seconds: float, *, wake: bool = False, until: asyncio.Event | None = None) -> None:
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wake:
            waits.append(asyncio.ensure_future(self._wake.wait()))
        if until is not None:
            waits.append(asyncio.ensure_future(until.wait()))
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waits:
                waiter.cancel()

    # -- processing ---------------------------------------------------------------------

    async def drain(self) -> int:
        """Process batches until none is pending (or all pending rows are claimed by other
        workers); returns the number of outbox rows this call processed."""
        total = 0
        while True:
            processed = await self.process_batch()
            total += processed
            if processed == 0 or (self._running and self._stopping.is_set()):
                return total

    async def fold_rollups(self) -> int:
        """Fold the events stored since the last round into the insights' hourly aggregates
        (app.services.insights.rollups): on every wake-up and poll, so the queue readers add
        to the aggregates stays a few seconds of events long."""
        async with connection() as conn:
            folded = await rollups.fold(conn, batch=rollups.WAKE_UP_FOLD, batches=1)
            self._folded_since_vacuum += folded
            self._folded_since_analyze += folded
            vacuumed, analyzed = await rollups.tidy(
                conn, folded_since_vacuum=self._folded_since_vacuum, folded_since_analyze=self._folded_since_analyze
            )
        if vacuumed:
            self._folded_since_vacuum = 0
        if analyzed:
            self._folded_since_analyze = 0
        return folded

    async def send_notifications(self) -> int:
        """Send the notification deliveries due now (sender.send_due); returns how many were
        attempted."""
        return await sender.send_due(self.settings)

    def _start_sending(self) -> None:
        """One sending task at a time, beside the loop: receivers may take up to the send
        timeout to answer."""
        if self._sending is None or self._sending.done():
            if self._sending is not None and not self._sending.cancelled() and self._sending.exception() is not None:
                log.error("worker %s: sending notifications failed", self.name, exc_info=self._sending.exception())
            self._sending = asyncio.create_task(self.send_notifications(), name=f"{self.name}-notifications")

    async def _finish_sending(self) -> None:
        """A stopping worker lets the current sends finish (each is bounded by the send timeout)."""
        if self._sending is not None:
            with contextlib.suppress(Exception):
                await self._sending
            self._sending = None

    async def process_batch(self) -> int:
        """Claim up to `batch_size` pending rows, apply, mark, commit, then publish."""
        for attempt in range(1, MAX_RETRIES + 1):
            started = time.perf_counter()
            try:
                claimed, batch = await self._claim_and_apply()
            except (*RETRYABLE, asyncpg.CheckViolationError) as exc:
                partitions.forget()
                if attempt == MAX_RETRIES or not _retryable(exc):
                    raise
                log.warning("worker %s: batch rolled back (%s); retrying", self.name, type(exc).__name__)
                await asyncio.sleep(0.05 * attempt)
                continue
            if claimed:
                self.processed_total += claimed
                self.batches_total += 1
                self._summary_count += claimed
                log.debug("worker %s: batch of %d in %.1f ms", self.name, claimed, (time.perf_counter() - started) * 1000)
                organizations = {row["organization_id"] for row in batch.rows}
                result_cache().bump(organizations)  # this process's next answer sees the batch
                await self._publish(batch)
                await result_cache().tell_others(organizations, self.bus)  # after the live feed: it waits for nothing
                self._log_summary()
            return claimed
        return 0

    async def _claim_and_apply(self) -> tuple[int, Batch]:
        async with transaction() as conn:
            # The batch's effects and its processed mark commit together, so a commit lost in
            # a server crash only means the batch is claimed and applied again: no need to
            # wait for the WAL flush (ingestion, which acknowledges events, still does).
            await conn.execute("SET LOCAL synchronous_commit = off")
            rows = await conn.fetch(CLAIM, self.batch_size)
            if not rows:
                return 0, Batch([])
            missing = [r for r in rows if not r["found"]]
            if missing:
                log.warning(
                    "worker %s: %d outbox rows have no event row; marking them processed", self.name, len(missing)
                )
            batch = Batch([r for r in rows if r["found"]])
            for consumer in self.consumers:
                if not consumer.after_mark:
                    batch.effects[consumer.name] = await consumer.apply(conn, consumer.taken(batch.rows), batch)
            await conn.execute(MARK_PROCESSED, [r["seq"] for r in rows])
            for consumer in self.consumers:
                if consumer.after_mark:
                    batch.effects[consumer.name] = await consumer.apply(conn, consumer.taken(batch.rows), batch)
            if self.test_delay:
                await asyncio.sleep(self.test_delay)  # fault tests: a SIGKILL lands mid-batch
        return len(rows), batch

    async def _publish(self, batch: Batch) -> None:
        """Best effort, after commit: the data is durable whatever happens here."""
        if self.bus is None:
            return
        channels = set().union(*(consumer.channels(batch) for consumer in self.consumers))
        if not channels:
            return
        try:
            followed = await self.bus.followed(channels)
            if followed:
                await self.bus.publish_many(publishable(self._feed(batch, followed), followed))
                await self.bus.publish_many(publishable(await self._totals(batch, followed), followed))
        except Exception as exc:  # noqa: BLE001 - BusUnavailable, a dead pool connection...: never fatal
            log.warning("worker %s: live publish failed (%r); subscribers miss this batch", self.name, exc)

    def _feed(self, batch: Batch, followed: set[str]) -> list[LiveMessage]:
        """What a live feed waits for, built from memory: sent before anything that reads."""
        return [message for consumer in self.consumers for message in consumer.feed(batch, followed)]

    async def _totals(self, batch: Batch, followed: set[str]) -> list[LiveMessage]:
        """Running totals and counters; a payload nobody follows is not built."""
        return [message for consumer in self.consumers for message in await consumer.totals(batch, followed)]

    def _log_summary(self) -> None:
        elapsed = time.monotonic() - self._summary_at
        if elapsed < SUMMARY_EVERY_SECONDS:
            return
        log.info(
            "worker %s: %d events in the last %.0fs (%.0f/s), %d in total",
            self.name,
            self._summary_count,
            elapsed,
            self._summary_count / elapsed,
            self.processed_total,
        )
        self._summary_at = time.monotonic()
        self._summary_count = 0

    # -- wake-ups -----------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        """Hold a LISTEN connection; re-open it (with backoff) whenever it drops."""
        delay = 0.5
        while not self._stopping.is_set():
            lost = asyncio.Event()
            try:
                self._listen_conn = await _connect_like_pool()
                self._listen_conn.add_termination_listener(lambda _conn, lost=lost: lost.set())
                await self._listen_conn.add_listener(OUTBOX_CHANNEL, self._notified)
                delay = 0.5
                self._wake.set()  # anything that arrived while we were not listening
                self._listening.set()
                while not lost.is_set() and not self._listen_conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(10):
                            await lost.wait()
                    if not lost.is_set():  # a half-open TCP connection never terminates by itself
                        async with asyncio.timeout(5):
                            await self._listen_conn.fetchval("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect
                log.warning("worker %s: LISTEN connection failed (%r); polling until it is back", self.name, exc)
            await self._close_listen_connection()
            if self._stopping.is_set():
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)  # a LISTEN attempt is cheap; it also ends the batch backoff

    def _notified(self, *_args: Any) -> None:
        self._wake.set()

    async def _close_listen_connection(self) -> None:
        conn, self._listen_conn = self._listen_conn, None
        if conn is not None and not conn.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=2)
            if not conn.is_closed():
                conn.terminate()


async def _connect_like_pool() -> asyncpg.Connection:
    """A connection outside the pool, with the pool's own parameters."""
    client = connections.get("default")
    return await asyncpg.connect(
        host=client.host,
        port=client.port,
        user=client.user,
        password=client.password,
        database=client.database,
        server_settings={"application_name": "pulsegraph-worker-listen"},
    )


def _retryable(exc: Exception) -> bool:
    """Deadlocks, serialization failures, and a profile_events partition that vanished
    (a rolled-back batch may have created it): the batch rolled back whole, run it again."""
    return isinstance(exc, RETRYABLE) or partitions.is_missing_partition(exc)


def _env_int(name: str) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw.isdigit() else 0


async def run_worker(settings: Settings) -> None:
    """`pulsegraph worker`: run until SIGTERM/SIGINT, then finish the batch and exit."""
    from app.eventbus import EventBus

    await init_database(settings, global_fallback=False)
    if settings.broadcast_url.startswith("memory:"):
        log.warning(
            "BROADCAST_URL is memory:// — a separate worker process cannot reach subscribers of the API; "
            "set BROADCAST_URL to redis://... or postgres://... shared with the API"
        )
    bus = EventBus(settings.broadcast_url, queue_size=settings.subscriber_queue_size)
    # Live pushes are optional, processing is not: a bus that is down at start connects in
    # the background (publishes fail fast and are logged until then).
    await bus.connect(required=False)
    if settings.result_cache and settings.redis_url:
        result_cache().share(settings.redis_url)  # announcements move the versions every API process reads
    worker = OutboxWorker(bus=bus, settings=settings, name=f"worker-{os.getpid()}")
    loop = asyncio.get_running_loop()
    stop_task: list[asyncio.Task] = []

    def request_stop() -> None:
        log.info("worker: stop requested, finishing the current batch")
        stop_task.append(loop.create_task(worker.stop()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)
    try:
        from workers.scheduler import (
            run_with_jobs,  # privacy and retention jobs, beside the worker
        )

        async with geoip_reloading([worker.detector], settings.geoip_reload_seconds):
            await run_with_jobs(worker, settings)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await result_cache().close()
        if bus is not None:
            await bus.disconnect()
        await close_database()


def main() -> None:
    logs.configure(logs.level_name())
    asyncio.run(run_worker(Settings.from_env()))


if __name__ == "__main__":
    main()


__all__ = ["OutboxWorker", "run_worker"]
