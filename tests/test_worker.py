"""The outbox worker: exactly-once effects under concurrency, redelivery and SIGKILL.

Events are written here with SQL exactly as ingestion writes them (an `events` row plus a
pending `outbox` row in one transaction, then NOTIFY), so that these tests exercise the
worker alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.database import connection, transaction
from app.eventbus import BusUnavailable
from app.services.profile_analytics.effects import engagement_snapshots
from app.vocabulary import (
    BOOKING_COMPLETED,
    OUTBOX_CHANNEL,
    PROFILE_ENGAGED,
    PROFILE_INQUIRY,
    PROFILE_VIEWED,
    engagement_channel,
    needs_worker,
    view_channel,
)
from tests.support.settings import TEST_JWT_SECRET, settings_with
from tests.support.tenants import Tenant, make_tenant
from workers.outbox import OutboxWorker

REPO = Path(__file__).resolve().parents[1]

INSERT_EVENTS = """
INSERT INTO events (organization_id, occurred_at, event_id, type, profile_id, visitor_id, session_id,
                    engagement_ms, amount_minor, currency, country, device_type, browser, os,
                    referrer_domain, utm_source)
SELECT $1::uuid, * FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[],
                               $8::int[], $9::bigint[], $10::text[], $11::text[], $12::text[], $13::text[],
                               $14::text[], $15::text[], $16::text[])
"""
INSERT_OUTBOX = """
INSERT INTO outbox (organization_id, event_id, occurred_at, type, processed_at)
SELECT $1::uuid, e.event_id, e.occurred_at, e.type, CASE WHEN e.pending THEN NULL ELSE now() END
FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::bool[]) AS e(event_id, occurred_at, type, pending)
"""


def make_events(
    profile_ids: list[str], count: int, *, seed: int, hours: float = 30, visitors: int = 300
) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    now = datetime.now(UTC)
    kinds = [PROFILE_VIEWED] * 8 + [PROFILE_INQUIRY, PROFILE_ENGAGED, BOOKING_COMPLETED, "page.viewed"]
    events = []
    for i in range(count):
        kind = rnd.choice(kinds)
        events.append(
            {
                "occurred_at": now - timedelta(seconds=rnd.uniform(0, hours * 3600)),
                "event_id": f"w{seed}-{i}-{uuid.uuid4().hex[:8]}",
                "type": kind,
                "profile_id": rnd.choice(profile_ids) if kind != "page.viewed" else None,
                "visitor_id": f"a:visitor-{rnd.randrange(visitors)}",
                "session_id": None,
                "engagement_ms": rnd.randrange(100, 60_000) if kind in (PROFILE_ENGAGED, PROFILE_VIEWED) else None,
                "amount_minor": 4_500 if kind == BOOKING_COMPLETED else None,
                "currency": "USD" if kind == BOOKING_COMPLETED else None,
                "country": rnd.choice(["US", "DE", None]),
                "device_type": "desktop",
                "browser": "Firefox",
                "os": "Linux",
                "referrer_domain": rnd.choice(["google.com", None]),
                "utm_source": None,
            }
        )
    return events


async def insert_pending(tenant: Tenant, events: list[dict[str, Any]]) -> None:
    """What ingestion does: events + outbox in one transaction (pending only for events the
    worker has effects for), then NOTIFY at commit."""
    columns = ["occurred_at", "event_id", "type", "profile_id", "visitor_id", "session_id", "engagement_ms",
               "amount_minor", "currency", "country", "device_type", "browser", "os", "referrer_domain", "utm_source"]  # fmt: skip
    org = tenant.organization.id
    async with transaction() as conn:
        await conn.execute(INSERT_EVENTS, org, *[[e[c] for e in events] for c in columns])
        await conn.execute(
            INSERT_OUTBOX,
            org,
            [e["event_id"] for e in events],
            [e["occurred_at"] for e in events],
            [e["type"] for e in events],
            [needs_worker(e["type"], e["profile_id"] is not None) for e in events],
        )
        await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")


async def state(tenant: Tenant) -> dict[str, Any]:
    """Everything the worker writes for a tenant, as plain numbers."""
    org = tenant.organization.id
    async with connection() as conn:
        rollups = await conn.fetch(
            "SELECT grain, sum(views) AS views, sum(inquiries) AS inquiries, sum(conversions) AS conversions,"
            " sum(engagement_ms) AS engagement_ms FROM profile_rollups WHERE organization_id = $1 GROUP BY grain",
            org,
        )
        outbox = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE processed_at IS NULL) AS pending,"
            " count(*) FILTER (WHERE processed_at IS NOT NULL) AS processed FROM outbox WHERE organization_id = $1",
            org,
        )
        profile_events = await conn.fetchrow(
            "SELECT count(*) AS rows, count(DISTINCT event_id) AS distinct_ids,"
            " count(*) FILTER (WHERE kind = 'view') AS views FROM profile_events WHERE organization_id = $1",
            org,
        )
        referrers = await conn.fetchval(
            "SELECT COALESCE(sum(views), 0) FROM profile_referrer_rollups WHERE organization_id = $1 AND grain = 'day'",
            org,
        )
        revenue = await conn.fetchval(
            "SELECT COALESCE(sum(amount_minor), 0) FROM profile_revenue_rollups WHERE organization_id = $1 AND grain = 'hour'",
            org,
        )
    by_grain = {
        r["grain"]: {k: int(r[k] or 0) for k in ("views", "inquiries", "conversions", "engagement_ms")} for r in rollups
    }
    return {
        "hour": by_grain.get("hour", {}),
        "day": by_grain.get("day", {}),
        "pending": outbox["pending"],
        "processed": outbox["processed"],
        "profile_events": profile_events["rows"],
        "distinct_profile_events": profile_events["distinct_ids"],
        "profile_event_views": profile_events["views"],
        "referrer_views": int(referrers),
        "revenue": int(revenue),
    }


def expected_totals(events: list[dict[str, Any]]) -> dict[str, int]:
    profile = [e for e in events if e["profile_id"] is not None]
    return {
        "views": sum(e["type"] == PROFILE_VIEWED for e in profile),
        "inquiries": sum(e["type"] == PROFILE_INQUIRY for e in profile),
        "conversions": sum(e["type"] == BOOKING_COMPLETED for e in profile),
        "engagement_ms": sum(e["engagement_ms"] or 0 for e in profile),
    }


async def distinct_visitor_estimate(tenant: Tenant) -> tuple[int, int]:
    """(union of every day sketch of the tenant's main profile, exact distinct count)."""
    from app.services.profile_analytics.sketches import Uniques

    async with connection() as conn:
        sketches = await conn.fetch(
            "SELECT visitors_hll FROM profile_rollups WHERE organization_id = $1 AND profile_id = $2 AND grain = 'day'",
            tenant.organization.id, tenant.profile.id,
        )  # fmt: skip
        exact = await conn.fetchval(
            "SELECT count(DISTINCT visitor_id) FROM events WHERE organization_id = $1 AND profile_id = $2"
            " AND type = 'profile.viewed'",
            tenant.organization.id, tenant.profile.id,
        )  # fmt: skip
    union = Uniques()
    for row in sketches:
        union.add_sketch(row["visitors_hll"])
    return union.estimate(), exact


# -- exactly once ---------------------------------------------------------------------


async def test_two_workers_draining_the_same_queue_apply_each_event_once(app, settings):
    tenant = await make_tenant(settings, timezone="America/New_York")
    profiles = [tenant.profile_id, str(tenant.other_profile.id)]
    events = make_events(profiles, 3000, seed=1, hours=6)  # few buckets: the workers collide on rollup rows
    await insert_pending(tenant, events)

    small_batches = settings_with(settings, worker_batch_size=40)
    first = OutboxWorker(bus=app.state.bus, settings=small_batches, name="first")
    second = OutboxWorker(bus=app.state.bus, settings=small_batches, name="second")
    done = await asyncio.gather(first.drain(), second.drain())

    want = expected_totals(events)
    profile_events = sum(e["profile_id"] is not None for e in events)
    assert sum(done) >= profile_events and min(done) > 0  # both took part
    after = await state(tenant)
    assert after["pending"] == 0
    assert after["hour"] == want and after["day"] == want
    assert after["profile_events"] == after["distinct_profile_events"] == profile_events
    assert after["referrer_views"] == want["views"]
    assert after["revenue"] == 4_500 * want["conversions"]
    estimate, exact = await distinct_visitor_estimate(tenant)
    assert abs(estimate - exact) <= max(1, 0.02 * exact)  # no sketch update was lost to a race


async def test_redelivered_events_change_nothing(app, settings, worker):
    tenant = await make_tenant(settings)
    events = make_events([tenant.profile_id], 400, seed=2)
    await insert_pending(tenant, events)
    await worker.drain()
    first = await state(tenant)
    assert first["day"] == expected_totals(events)

    # At-least-once delivery: the same events come round again (say a batch whose commit
    # acknowledgement was lost). Every effect is keyed by event id.
    async with connection() as conn:
        await conn.execute("UPDATE outbox SET processed_at = NULL WHERE organization_id = $1", tenant.organization.id)
    async with app.state.bus.subscribe(view_channel(tenant.profile_id)) as views:
        assert await worker.drain() >= len(events)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await views.get()  # nothing new happened, nothing is pushed
    assert await state(tenant) == first


async def test_each_batch_is_published_after_commit(app, settings, worker):
    tenant = await make_tenant(settings, timezone="Asia/Kolkata")
    now = datetime.now(UTC)
    events = make_events([tenant.profile_id], 30, seed=3, hours=0.01)
    for e in events:
        e["occurred_at"] = min(e["occurred_at"], now)
    async with (
        app.state.bus.subscribe(view_channel(tenant.profile_id)) as views,
        app.state.bus.subscribe(engagement_channel(tenant.profile_id)) as totals,
    ):
        await insert_pending(tenant, events)
        await worker.drain()
        pushed = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1):
                while True:
                    pushed.append(await views.get())
        snapshot = await asyncio.wait_for(totals.get(), 2)
    want = expected_totals(events)
    assert len(pushed) == want["views"]
    view = pushed[0]
    assert set(view) == {"eventId", "profileId", "occurredAt", "country", "city", "deviceType", "browser", "os",
                         "referrer", "utmSource", "isGov", "govAlert"}  # fmt: skip
    assert view["profileId"] == tenant.profile_id and view["isGov"] is False and view["govAlert"] is None and view["browser"] == "Firefox"
    assert datetime.fromisoformat(view["occurredAt"]).tzinfo is not None
    assert snapshot["profileId"] == tenant.profile_id
    assert snapshot["views"] <= want["views"] and snapshot["inquiries"] <= want["inquiries"]
    since = datetime.fromisoformat(snapshot["since"])
    assert since.astimezone(UTC).minute == 30  # Kolkata midnight
    assert 0.0 <= snapshot["conversionRate"] <= 1.0
    if since <= min(e["occurred_at"] for e in events):  # not straddling Kolkata midnight
        assert snapshot["uniqueVisitors"] >= 1 and snapshot["views"] >= 1


async def test_engagement_snapshots_report_today_as_stored(app, settings, worker):
    """Pushed totals are today's day row as the batch committed it; a batch of late events
    (none of them today) still pushes today's totals, unchanged."""
    tenant = await make_tenant(settings, timezone="America/New_York")
    org, profile = tenant.organization.id, tenant.profile.id
    now = datetime.now(UTC)
    today = [dict(e, occurred_at=min(e["occurred_at"], now)) for e in make_events([tenant.profile_id], 60, seed=6, hours=0.01)]
    late = [dict(e, occurred_at=e["occurred_at"] - timedelta(days=3)) for e in make_events([tenant.profile_id], 20, seed=7)]
    async with app.state.bus.subscribe(engagement_channel(tenant.profile_id)) as totals:
        await insert_pending(tenant, today)
        await worker.drain()
        first = await asyncio.wait_for(totals.get(), 2)
        await insert_pending(tenant, late)
        await worker.drain()
        second = await asyncio.wait_for(totals.get(), 2)
    [snapshot] = await engagement_snapshots([(org, profile)], {org: "America/New_York"})
    stored = snapshot.to_json()
    since = datetime.fromisoformat(first["since"])
    if since <= min(e["occurred_at"] for e in today) and stored["since"] == first["since"]:  # not around midnight
        assert {**first, "updatedAt": None} == {**second, "updatedAt": None} == {**stored, "updatedAt": None}
        assert first["views"] == expected_totals(today)["views"] and first["uniqueVisitors"] >= 1


class DeadBus:
    async def followed(self, channels: Collection[str]) -> set[str]:
        raise BusUnavailable("down for the test")

    async def publish_many(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        raise BusUnavailable("down for the test")


async def test_a_dead_bus_does_not_stop_processing(app, settings, caplog):
    tenant = await make_tenant(settings)
    events = make_events([tenant.profile_id], 50, seed=4)
    await insert_pending(tenant, events)
    pending = sum(e["profile_id"] is not None for e in events)
    assert await OutboxWorker(bus=DeadBus(), settings=settings, name="deadbus").drain() >= pending
    after = await state(tenant)
    assert after["pending"] == 0 and after["day"] == expected_totals(events)
    assert "live publish failed" in caplog.text


async def test_running_worker_wakes_on_notify_and_survives_a_dropped_listen_connection(app, settings):
    """With a 30 s poll, only LISTEN/NOTIFY can make it this fast."""
    tenant = await make_tenant(settings)
    worker = OutboxWorker(bus=app.state.bus, settings=settings_with(settings, worker_poll_seconds=30), name="listener")
    task = asyncio.create_task(worker.run())
    events: list[dict[str, Any]] = []

    async def processed_promptly(seed: int) -> None:
        batch = make_events([tenant.profile_id], 20, seed=seed)
        events.extend(batch)
        started = time.monotonic()
        await insert_pending(tenant, batch)
        while (await state(tenant))["pending"]:
            assert time.monotonic() - started < 5, "the worker did not wake on NOTIFY"
            await asyncio.sleep(0.05)

    async def listener_pid(other_than: int | None = None) -> int | None:
        async with connection() as conn:
            pids = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'pulsegraph-worker-listen'"
                " AND datname = current_database()"
            )
        found = [r["pid"] for r in pids if r["pid"] != other_than]
        return found[0] if len(found) == 1 else None

    try:
        first = await wait_for(listener_pid, timeout=5, what="the LISTEN connection")
        await asyncio.sleep(0.2)  # idle: the first poll has passed
        await processed_promptly(5)

        async with connection() as conn:  # the database drops the LISTEN connection
            assert await conn.fetchval("SELECT pg_terminate_backend($1)", first)
        await wait_for(lambda: listener_pid(other_than=first), timeout=10, what="the LISTEN connection to be re-opened")
        await asyncio.sleep(0.2)
        await processed_promptly(6)
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 10)
    assert task.done() and task.exception() is None
    assert (await state(tenant))["day"] == expected_totals(events)


# -- crash safety with real processes -----------------------------------------------------


def start_worker_process(database_url: str, log_path: Path, **env: str) -> subprocess.Popen:
    environment = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PULSEGRAPH_JWT_SECRET": TEST_JWT_SECRET,
        "PULSEGRAPH_DATA_DIR": str(log_path.parent),
        "BROADCAST_URL": "memory://",
        "PULSEGRAPH_DB_POOL_MIN": "1",
        "PULSEGRAPH_DB_POOL_MAX": "3",
        "PYTHONPATH": str(REPO),
        **env,
    }
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.outbox"], cwd=REPO, env=environment, stdout=log, stderr=subprocess.STDOUT
        )


async def wait_for(predicate, *, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_sigkill_mid_batch_loses_nothing_and_counts_nothing_twice(app, settings, database_url, tmp_path):
    tenant = await make_tenant(settings)
    now = datetime.now(UTC)
    views = [
        {
            **e,
            "type": PROFILE_VIEWED,
            "profile_id": tenant.profile_id,
            "engagement_ms": None,
            "occurred_at": now - timedelta(minutes=i % 300),
        }
        for i, e in enumerate(make_events([tenant.profile_id], 1000, seed=6))
    ]
    log_path = tmp_path / "worker.log"
    slow = {"PULSEGRAPH_WORKER_BATCH_SIZE": "50", "PULSEGRAPH_WORKER_TEST_DELAY_MS": "300"}
    victim = start_worker_process(database_url, log_path, **slow)
    try:
        await insert_pending(tenant, views)

        async def some_processed() -> bool:
            return (await state(tenant))["processed"] >= 150

        async def effects_applied_not_committed() -> bool:
            async with connection() as conn:
                return await conn.fetchval(
                    "SELECT count(*) > 0 FROM pg_stat_activity WHERE state = 'idle in transaction'"
                    " AND query LIKE '%profile_referrer_rollups%' AND datname = current_database()"
                )

        await wait_for(some_processed, timeout=60, what="the first worker to process some batches")
        # Inside a batch's 300 ms window: effects written and outbox marked, no commit.
        await wait_for(effects_applied_not_committed, timeout=10, what="a batch in flight")
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL

    # The killed batch is all or nothing: every processed outbox row has its effects, and
    # no effect exists without its processed row (the server rolls the open transaction back).
    async def rolled_back() -> dict[str, Any]:
        async with connection() as conn:
            busy = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pulsegraph' AND state LIKE 'idle in transaction%'"
                " AND datname = current_database()"
            )
        return await state(tenant) if busy == 0 else {}

    at_kill = await wait_for(rolled_back, timeout=10, what="the killed transaction to end")
    assert 0 < at_kill["processed"] < len(views), at_kill
    assert at_kill["day"].get("views", 0) == at_kill["hour"].get("views", 0) == at_kill["processed"]
    assert at_kill["profile_events"] == at_kill["processed"]

    survivor = start_worker_process(database_url, log_path, PULSEGRAPH_WORKER_BATCH_SIZE="50")
    try:

        async def all_processed() -> bool:
            return (await state(tenant))["pending"] == 0

        await wait_for(all_processed, timeout=60, what="a fresh worker to finish the queue")
        survivor.send_signal(signal.SIGTERM)  # clean shutdown
        assert survivor.wait(15) == 0, log_path.read_text()[-3000:]
    finally:
        if survivor.poll() is None:
            survivor.kill()

    final = await state(tenant)
    assert final["processed"] == len(views)
    assert final["day"]["views"] == final["hour"]["views"] == len(views)
    assert final["profile_events"] == final["distinct_profile_events"] == final["profile_event_views"] == len(views)
    assert final["referrer_views"] == len(views)
