"""Privacy and retention: IP pseudonymization, event purges, data-subject export and deletion.

Each behaviour is shown with real rows: events ingested through the API, jobs run with an
explicit `now`, and what is left in the database read back.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.database import connection
from app.services import privacy
from tests.support.graphql import error_codes, gql

TRACK = """
mutation Track($events: [TrackEventInput!]!) {
  trackEvents(events: $events) { accepted duplicates dropped rejected { index field reason } eventIds }
}
"""
SETTINGS = "query($org: ID) { privacySettings(organizationId: $org) { organizationId ipRetentionDays eventRetentionDays purgedBefore } }"
UPDATE = """
mutation($org: ID, $ip: Int, $events: Int) {
  updateOrganizationSettings(organizationId: $org, ipRetentionDays: $ip, eventRetentionDays: $events) {
    organizationId ipRetentionDays eventRetentionDays
  }
}
"""
EXPORT = """
query($user: String, $anon: String, $org: ID) {
  subjectData(userId: $user, anonymousId: $anon, organizationId: $org) {
    organizationId userId anonymousId visitorIds truncated
    events { eventId type userId anonymousId ip ipHash properties sessionId }
    sessions { id visitorId eventCount }
    profileEvents { profileId eventId kind }
  }
}
"""
DELETE = """
mutation($user: String, $anon: String, $org: ID) {
  deleteSubjectData(userId: $user, anonymousId: $anon, organizationId: $org) { organizationId events profileEvents sessions }
}
"""
HASH_RE = re.compile(r"^\d{8}:[0-9a-f]{32}$")


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


def event(type_: str = "page.viewed", *, ip: str | None = "81.2.69.160", at: datetime | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "context": {"userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0"}}
    if ip is not None:
        body["context"]["ip"] = ip
    if at is not None:
        body["occurredAt"] = at.isoformat()
    body.update(extra)
    return body


async def track(client: Any, tenant: Any, *events: dict[str, Any]) -> list[str]:
    body = await gql(client, TRACK, {"events": list(events)}, token=tenant.org_admin_token)
    assert body.get("errors") is None, body
    result = body["data"]["trackEvents"]
    assert result["rejected"] == [], result
    return result["eventIds"]


async def rows(tenant: Any, table: str = "events", columns: str = "*") -> list[dict[str, Any]]:
    async with connection() as conn:
        found = await conn.fetch(f"SELECT {columns} FROM {table} WHERE organization_id = $1", uuid.UUID(tenant.org_id))
    return [dict(r) for r in found]


async def by_id(tenant: Any) -> dict[str, dict[str, Any]]:
    return {r["event_id"]: r for r in await rows(tenant, columns="event_id, host(ip) AS ip, ip_hash, visitor_id, occurred_at")}


async def set_retention(client: Any, tenant: Any, **changes: Any) -> dict[str, Any]:
    body = await gql(client, UPDATE, changes, token=tenant.org_admin_token)
    assert body.get("errors") is None, body
    return body["data"]["updateOrganizationSettings"]


# --------------------------------------------------------------------------- settings


async def test_retention_defaults_and_updates_with_field_named_errors(client, tenant, other_tenant):
    body = await gql(client, SETTINGS, token=tenant.org_admin_token)
    assert body["data"]["privacySettings"] == {
        "organizationId": tenant.org_id, "ipRetentionDays": 90, "eventRetentionDays": 395, "purgedBefore": None,
    }  # fmt: skip

    updated = await set_retention(client, tenant, ip=0, events=None)  # events: null = keep forever
    assert (updated["ipRetentionDays"], updated["eventRetentionDays"]) == (0, None)
    only_ip = await set_retention(client, tenant, ip=30)  # an omitted argument is left alone
    assert (only_ip["ipRetentionDays"], only_ip["eventRetentionDays"]) == (30, None)

    for variables, field in [
        ({"ip": -1}, "ipRetentionDays"),
        ({"ip": 4000}, "ipRetentionDays"),
        ({"events": 7}, "eventRetentionDays"),
        ({"events": 100_000}, "eventRetentionDays"),
    ]:
        refused = await gql(client, UPDATE, variables, token=tenant.org_admin_token)
        assert error_codes(refused) == ["BAD_USER_INPUT"], variables
        assert refused["errors"][0]["extensions"]["field"] == field
    null_ip = await gql(client, "mutation { updateOrganizationSettings(ipRetentionDays: null) { ipRetentionDays } }", token=tenant.org_admin_token)
    assert null_ip["errors"][0]["extensions"]["field"] == "ipRetentionDays"

    for token in (tenant.provider_token, tenant.service_token, tenant.ingestion_key):
        assert error_codes(await gql(client, UPDATE, {"ip": 1}, token=token)) == ["FORBIDDEN"]
    foreign = await gql(client, UPDATE, {"org": tenant.org_id, "ip": 1}, token=other_tenant.org_admin_token)
    assert error_codes(foreign) == ["NOT_FOUND"]
    assert error_codes(await gql(client, SETTINGS, token=tenant.admin_token)) == ["BAD_USER_INPUT"]
    by_admin = await gql(client, UPDATE, {"org": tenant.org_id, "ip": 14}, token=tenant.admin_token)
    assert by_admin["data"]["updateOrganizationSettings"]["ipRetentionDays"] == 14
    untouched = await gql(client, SETTINGS, token=other_tenant.org_admin_token)
    assert untouched["data"]["privacySettings"]["ipRetentionDays"] == 90
    await set_retention(client, tenant, events=395)  # a kept-forever tenant would block whole-month drops


# --------------------------------------------------------------------------- IPs


async def test_raw_ips_past_retention_are_replaced_by_a_keyed_hash(client, tenant, settings):
    await set_retention(client, tenant, ip=7)
    old_a, old_b, old_other, old_v6 = await track(
        client,
        tenant,
        event(at=ago(days=10)),
        event(at=ago(days=9)),
        event(at=ago(days=9), ip="81.2.69.161"),
        event(at=ago(days=8), ip="::ffff:81.2.69.160"),  # the same address, as a dual-stack socket reports it
    )
    (recent,) = await track(client, tenant, event(at=ago(days=1)))

    count = await privacy.pseudonymize_old_ips(datetime.now(UTC), settings=settings)
    assert count >= 4
    stored = await by_id(tenant)
    for event_id in (old_a, old_b, old_other, old_v6):
        assert stored[event_id]["ip"] is None
        assert HASH_RE.match(stored[event_id]["ip_hash"]), stored[event_id]
    assert stored[recent]["ip"] == "81.2.69.160" and stored[recent]["ip_hash"] is None
    # Equal addresses still match within the key period; different ones do not.
    assert stored[old_a]["ip_hash"] == stored[old_b]["ip_hash"] == stored[old_v6]["ip_hash"]
    assert stored[old_other]["ip_hash"] != stored[old_a]["ip_hash"]
    # Not a plain hash of the address: without the key, the IPv4 space cannot be tried.
    import hashlib

    assert hashlib.sha256(b"81.2.69.160").hexdigest()[:32] not in stored[old_a]["ip_hash"]
    await privacy.pseudonymize_old_ips(datetime.now(UTC), settings=settings)  # a second run changes nothing
    assert (await by_id(tenant))[old_a]["ip_hash"] == stored[old_a]["ip_hash"]


async def test_hashes_differ_across_key_periods_and_expired_keys_are_deleted(client, tenant, settings):
    await set_retention(client, tenant, ip=1)
    (first,) = await track(client, tenant, event(at=ago(days=3)))
    now = datetime.now(UTC)
    await privacy.pseudonymize_old_ips(now, settings=settings)
    period, period_end = privacy.key_period(now, settings)

    (second,) = await track(client, tenant, event(at=ago(days=2)))
    later = datetime.combine(period_end, datetime.min.time(), tzinfo=UTC) + timedelta(hours=1)  # the next period
    await privacy.pseudonymize_old_ips(later, settings=settings)
    stored = await by_id(tenant)
    first_hash, second_hash = stored[first]["ip_hash"], stored[second]["ip_hash"]
    assert first_hash.startswith(f"{period:%Y%m%d}:")
    assert second_hash.startswith(f"{period_end:%Y%m%d}:")
    assert first_hash.split(":")[1] != second_hash.split(":")[1]  # same IP, another period: no match

    async with connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM ip_hmac_keys WHERE period_start = $1", period) == 1
        assert await privacy.forget_expired_ip_keys(later) >= 1
        assert await conn.fetchval("SELECT count(*) FROM ip_hmac_keys WHERE period_start = $1", period) == 0
    # The key is gone: the same computation with a fresh key for that period cannot reproduce the hash.
    privacy._keys.clear()
    async with connection() as conn:
        await conn.execute("DELETE FROM ip_hmac_keys WHERE period_start > $1", now.date())  # leave no future key behind
        fresh = await privacy.current_ip_key(conn, now, settings)
    assert fresh.hash(tenant.org_id, "81.2.69.160") != first_hash


async def test_ip_retention_zero_never_stores_the_raw_ip(client, tenant, other_tenant, settings):
    await set_retention(client, tenant, ip=0)
    first, second, dnt = await track(
        client, tenant, event(), event(ip="81.2.69.160"), event(context={"ip": "81.2.69.160", "dnt": True})
    )
    (kept,) = await track(client, other_tenant, event())  # another organization, default retention
    stored = await by_id(tenant)
    assert stored[first]["ip"] is None and stored[second]["ip"] is None
    assert HASH_RE.match(stored[first]["ip_hash"])
    assert stored[first]["ip_hash"] == stored[second]["ip_hash"]
    assert stored[first]["visitor_id"] is not None  # the cookie-less visitor id was derived before hashing
    assert stored[dnt]["ip"] is None and stored[dnt]["ip_hash"] is None  # Do-Not-Track keeps neither
    assert (await by_id(other_tenant))[kept]["ip"] == "81.2.69.160"
    async with connection() as conn:
        key = await privacy.current_ip_key(conn, datetime.now(UTC), settings)
    assert key.hash(tenant.org_id, "81.2.69.160") == stored[first]["ip_hash"]  # what the job would write
    # Same address, other tenant: a different hash, so tenants cannot correlate visitors.
    assert key.hash(other_tenant.org_id, "81.2.69.160") != stored[first]["ip_hash"]


# --------------------------------------------------------------------------- events


async def test_events_past_retention_are_purged_once_processed(client, tenant, worker):
    await set_retention(client, tenant, events=31)
    profile = {"profileId": tenant.profile_id}
    old_view, old_page = await track(
        client,
        tenant,
        event("profile.viewed", at=ago(days=40), anonymousId="old-visitor", **profile),
        event(at=ago(days=40), anonymousId="old-visitor"),
    )
    (recent,) = await track(client, tenant, event("profile.viewed", at=ago(days=2), anonymousId="new-visitor", **profile))

    first_report = await privacy.purge_expired_events(datetime.now(UTC))
    left = {r["event_id"] for r in await rows(tenant)}
    assert old_view in left, "a pending event is kept until the worker has rolled it up"
    assert old_page not in left  # nothing to roll up: purged at once
    assert first_report.deleted_events >= 1

    await worker.drain()
    async with connection() as conn:
        views_before = await conn.fetchval(
            "SELECT sum(views) FROM profile_rollups WHERE organization_id = $1 AND grain = 'day'", uuid.UUID(tenant.org_id)
        )
    report = await privacy.purge_expired_events(datetime.now(UTC))
    assert {r["event_id"] for r in await rows(tenant)} == {recent}
    assert {r["event_id"] for r in await rows(tenant, "profile_events", "event_id")} == {recent}
    sessions = await rows(tenant, "sessions", "visitor_id, last_seen_at")
    assert all(s["last_seen_at"] > ago(days=31) for s in sessions) and sessions
    assert report.deleted_profile_events >= 1 and first_report.deleted_sessions + report.deleted_sessions >= 1
    async with connection() as conn:  # rollups are aggregates: they stay
        views_after = await conn.fetchval(
            "SELECT sum(views) FROM profile_rollups WHERE organization_id = $1 AND grain = 'day'", uuid.UUID(tenant.org_id)
        )
    assert views_after == views_before == 2
    settings_now = await gql(client, SETTINGS, token=tenant.org_admin_token)
    purged_before = datetime.fromisoformat(settings_now["data"]["privacySettings"]["purgedBefore"])
    assert abs(purged_before - ago(days=31)) < timedelta(minutes=5)


async def _no_org_keeps_events_forever() -> None:
    """Whole months go only when every organization has a retention, and only once they are
    older than the longest one; the shared test database holds every test's organizations."""
    async with connection() as conn:
        await conn.execute(
            "UPDATE organizations SET event_retention_days = 395"
            " WHERE event_retention_days IS NULL OR event_retention_days > 395"
        )


async def _partition_exists(name: str) -> bool:
    async with connection() as conn:
        return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name))


async def _rolled_up_hours(org: uuid.UUID, month: datetime) -> tuple[int, int, int]:
    """Rows of the insights' pre-aggregates in the month, folded or queued (counts, actor
    hours, first hours)."""
    found = []
    async with connection() as conn:
        for table, column in (("event_hour_counts_live", "hour"), ("event_actor_hours_live", "hour"),
                              ("event_actor_first_live", "first_hour")):  # fmt: skip
            found.append(await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE organization_id = $1 AND {column} < $2", org, month + timedelta(days=31)
            ))  # fmt: skip
    return found[0], found[1], found[2]


async def test_whole_months_are_dropped_only_when_every_org_is_past_them_and_nothing_is_pending(client, tenant, settings):
    month = datetime(2001, 1, 1, tzinfo=UTC)
    org = uuid.UUID(tenant.org_id)
    async with connection() as conn:
        for parent in ("events", "profile_events"):
            await conn.execute("SELECT pulsegraph_ensure_month_partition($1, $2)", parent, month)
        await conn.execute(
            "INSERT INTO events (organization_id, occurred_at, event_id, type, profile_id)"
            " VALUES ($1, $2, 'ancient', 'profile.viewed', $3)",
            org, month + timedelta(days=3), uuid.UUID(tenant.profile_id),
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO outbox (organization_id, event_id, occurred_at, type) VALUES ($1, 'ancient', $2, 'profile.viewed')",
            org, month + timedelta(days=3),
        )  # fmt: skip
    try:
        # One organization keeps events forever: no month can go whole.
        await set_retention(client, tenant, events=None)
        report = await privacy.purge_expired_events(datetime.now(UTC))
        assert await _partition_exists("events_2001_01") and "events_2001_01" not in report.dropped_partitions

        # Every organization has a retention now, but the month still has a pending event.
        await set_retention(client, tenant, events=395)
        await _no_org_keeps_events_forever()
        report = await privacy.purge_expired_events(datetime.now(UTC))
        assert await _partition_exists("events_2001_01")
        assert {"events_2001_01", "profile_events_2001_01"} <= set(report.kept_partitions)
        assert await _rolled_up_hours(org, month) == (9, 0, 0)  # total + 8 dimensions; no visitor

        async with connection() as conn:
            await conn.execute("UPDATE outbox SET processed_at = now() WHERE organization_id = $1 AND event_id = 'ancient'", org)
        report = await privacy.purge_expired_events(datetime.now(UTC))
        assert {"events_2001_01", "profile_events_2001_01"} <= set(report.dropped_partitions)
        assert not await _partition_exists("events_2001_01")
        assert await _rolled_up_hours(org, month) == (0, 0, 0), "the insights' pre-aggregates go with the month"
        assert not await _partition_exists("profile_events_2001_01")
        # Months inside the retention window are never touched.
        current = datetime.now(UTC)
        assert await _partition_exists(f"events_{current:%Y_%m}")
    finally:
        async with connection() as conn:
            await conn.execute("UPDATE outbox SET processed_at = now() WHERE organization_id = $1 AND event_id = 'ancient'", org)


async def test_a_busy_partition_is_kept_for_the_next_run(client, tenant):
    month = datetime(2002, 2, 1, tzinfo=UTC)
    async with connection() as conn:
        for parent in ("events", "profile_events"):
            await conn.execute("SELECT pulsegraph_ensure_month_partition($1, $2)", parent, month)
    await _no_org_keeps_events_forever()
    original = privacy.DROP_LOCK_TIMEOUT
    privacy.DROP_LOCK_TIMEOUT = "100ms"
    try:
        async with connection() as holder, holder.transaction():
            await holder.execute("LOCK TABLE events_2002_02 IN ACCESS SHARE MODE")  # a long report reading it
            report = await privacy.purge_expired_events(datetime.now(UTC))
            assert "events_2002_02" in report.kept_partitions
        report = await privacy.purge_expired_events(datetime.now(UTC))
        assert "events_2002_02" in report.dropped_partitions
    finally:
        privacy.DROP_LOCK_TIMEOUT = original


async def test_ingestion_recreates_a_dropped_month(client, tenant):
    """A late event for a month the job dropped is stored: the partition comes back."""
    late = ago(days=600)
    name = f"events_{late:%Y_%m}"
    await track(client, tenant, event(at=late))
    await _no_org_keeps_events_forever()
    report = await privacy.purge_expired_events(datetime.now(UTC))
    assert name in report.dropped_partitions and not await _partition_exists(name)
    (again,) = await track(client, tenant, event(at=late))
    assert again in await by_id(tenant) and await _partition_exists(name)


async def test_persons_past_retention_go_with_their_links_and_memberships(client, tenant):
    """Properties are personal data: a person every key of whom was last seen before the cutoff
    is deleted with their links and cohort memberships; one fresh key keeps the person whole."""
    await set_retention(client, tenant, events=31)
    await track(
        client, tenant,
        event(at=ago(days=40), anonymousId="gone-device", properties={"$set": {"email": "gone@example.com"}}),
        event("user.identified", at=ago(days=40), userId="gone", anonymousId="gone-device"),
        event(at=ago(days=40), userId="kept"),
        event("user.identified", at=ago(days=40), userId="kept", anonymousId="kept-device"),
        event(at=ago(days=2), anonymousId="kept-device"),
        event(at=ago(days=2), userId="fresh"),
    )  # fmt: skip
    org = uuid.UUID(tenant.org_id)
    cohort = uuid.uuid4()
    async with connection() as conn:
        await conn.execute(
            "INSERT INTO cohorts (organization_id, id, name, kind, created_by) VALUES ($1, $2, 'c', 'static', 't')", org, cohort
        )
        await conn.executemany(
            "INSERT INTO cohort_members (organization_id, cohort_id, person_id) VALUES ($1, $2, $3)",
            [(org, cohort, p) for p in ("u:gone", "u:kept", "u:fresh")],
        )
    report = await privacy.purge_expired_events(datetime.now(UTC))
    assert {r["id"] for r in await rows(tenant, "persons", "id")} == {"u:kept", "a:kept-device", "u:fresh"}
    assert report.deleted_persons >= 2  # other tenants of the test database may have some too
    assert {(r["alias"], r["person_id"]) for r in await rows(tenant, "person_aliases", "alias, person_id")} == {
        ("a:kept-device", "u:kept")
    }
    assert {r["person_id"] for r in await rows(tenant, "cohort_members", "person_id")} == {"u:kept", "u:fresh"}


# --------------------------------------------------------------------------- data subjects


async def test_subject_export_and_deletion_are_scoped_to_the_tenant(client, tenant, other_tenant, worker):
    profile = {"profileId": tenant.profile_id}
    alice = await track(
        client,
        tenant,
        event("profile.viewed", userId="alice", properties={"plan": "pro"}, **profile),
        event("page.viewed", userId="alice", anonymousId="device-a"),
    )
    (anon_only,) = await track(client, tenant, event("page.viewed", anonymousId="device-a"))
    (bob,) = await track(client, tenant, event("profile.viewed", userId="bob", **profile))
    (foreign_alice,) = await track(client, other_tenant, event("page.viewed", userId="alice"))
    await worker.drain()

    body = await gql(client, EXPORT, {"user": "alice"}, token=tenant.org_admin_token)
    assert body.get("errors") is None, body
    data = body["data"]["subjectData"]
    assert data["organizationId"] == tenant.org_id and data["truncated"] is False
    assert {e["eventId"] for e in data["events"]} == set(alice)
    assert {e["eventId"] for e in data["profileEvents"]} == {alice[0]}
    assert data["events"][0]["properties"] in ({"plan": "pro"}, {})
    assert data["events"][0]["ip"] == "81.2.69.160"
    assert data["sessions"] and all(s["visitorId"] == "u:alice" for s in data["sessions"])
    assert foreign_alice not in {e["eventId"] for e in data["events"]} and bob not in {e["eventId"] for e in data["events"]}

    by_device = (await gql(client, EXPORT, {"anon": "device-a"}, token=tenant.org_admin_token))["data"]["subjectData"]
    assert {e["eventId"] for e in by_device["events"]} == {alice[1], anon_only}

    theirs = (await gql(client, EXPORT, {"user": "alice"}, token=other_tenant.org_admin_token))["data"]["subjectData"]
    assert [e["eventId"] for e in theirs["events"]] == [foreign_alice]

    # Who may ask, and how.
    assert error_codes(await gql(client, EXPORT, {}, token=tenant.org_admin_token)) == ["BAD_USER_INPUT"]
    assert error_codes(await gql(client, EXPORT, {"user": "alice"}, token=tenant.provider_token)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, DELETE, {"user": "alice"}, token=tenant.ingestion_key)) == ["FORBIDDEN"]
    assert error_codes(await gql(client, EXPORT, {"user": "alice"})) == ["UNAUTHENTICATED"]
    cross = await gql(client, DELETE, {"user": "alice", "org": tenant.org_id}, token=other_tenant.org_admin_token)
    assert error_codes(cross) == ["NOT_FOUND"]
    assert set(alice) <= {r["event_id"] for r in await rows(tenant)}

    async with connection() as conn:
        views_before = await conn.fetchval(
            "SELECT sum(views) FROM profile_rollups WHERE organization_id = $1 AND grain = 'day'", uuid.UUID(tenant.org_id)
        )
    deleted = await gql(client, DELETE, {"user": "alice", "anon": "device-a"}, token=tenant.org_admin_token)
    assert deleted.get("errors") is None, deleted
    counts = deleted["data"]["deleteSubjectData"]
    assert (counts["organizationId"], counts["events"], counts["profileEvents"]) == (tenant.org_id, 3, 1)
    assert counts["sessions"] >= 1

    left = {r["event_id"] for r in await rows(tenant)}
    assert left == {bob}
    assert {r["event_id"] for r in await rows(tenant, "profile_events", "event_id")} == {bob}
    assert {r["visitor_id"] for r in await rows(tenant, "sessions", "visitor_id")} == {"u:bob"}
    assert {r["event_id"] for r in await rows(other_tenant)} == {foreign_alice}
    empty = (await gql(client, EXPORT, {"user": "alice"}, token=tenant.org_admin_token))["data"]["subjectData"]
    assert empty["events"] == [] and empty["sessions"] == [] and empty["profileEvents"] == []
    async with connection() as conn:  # aggregates stay
        views_after = await conn.fetchval(
            "SELECT sum(views) FROM profile_rollups WHERE organization_id = $1 AND grain = 'day'", uuid.UUID(tenant.org_id)
        )
    assert views_after == views_before == 2

    by_admin = await gql(client, EXPORT, {"user": "alice", "org": other_tenant.org_id}, token=tenant.admin_token)
    assert [e["eventId"] for e in by_admin["data"]["subjectData"]["events"]] == [foreign_alice]


# --------------------------------------------------------------------------- scheduler


async def test_scheduler_runs_the_jobs_once_across_processes(client, tenant, settings):
    from workers.scheduler import JOBS_LOCK_KEY, run_jobs_once

    await set_retention(client, tenant, ip=0)
    await set_retention(client, tenant, ip=3)
    (old,) = await track(client, tenant, event(at=ago(days=4)))
    async with connection() as other_process:
        await other_process.execute("SELECT pg_advisory_lock($1)", JOBS_LOCK_KEY)
        try:
            skipped = await run_jobs_once(settings)
        finally:
            await other_process.execute("SELECT pg_advisory_unlock($1)", JOBS_LOCK_KEY)
    assert skipped.ran is False
    assert (await by_id(tenant))[old]["ip"] == "81.2.69.160"

    report = await run_jobs_once(settings)
    assert report.ran and report.results["pseudonymized_ips"] >= 1
    assert list(report.results) == ["pseudonymized_ips", "purge", "forgotten_keys", "cohorts"]
    assert (await by_id(tenant))[old]["ip"] is None


async def test_scheduler_runs_beside_the_worker_and_stops_with_it(settings):
    from tests.support.settings import settings_with
    from workers.scheduler import run_with_jobs

    class FakeWorker:
        def __init__(self) -> None:
            self.stop = asyncio.Event()

        async def run(self) -> None:
            await self.stop.wait()

    calls: list[datetime] = []
    original = privacy.forget_expired_ip_keys

    async def counting(now: datetime) -> int:
        calls.append(now)
        return await original(now)

    privacy.forget_expired_ip_keys = counting  # type: ignore[assignment]
    try:
        fake = FakeWorker()
        quick = settings_with(settings, jobs_initial_delay_seconds=0, jobs_interval_seconds=3600)
        task = asyncio.create_task(run_with_jobs(fake, quick))
        for _ in range(600):  # the jobs before it read the whole test database: seconds on a busy machine
            if calls:
                break
            await asyncio.sleep(0.05)
        fake.stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        privacy.forget_expired_ip_keys = original  # type: ignore[assignment]
    assert len(calls) == 1


@pytest.mark.parametrize("period_days", [1, 30])
def test_key_periods_tile_time(settings, period_days):
    from tests.support.settings import settings_with

    custom = settings_with(settings, ip_hmac_key_period_days=period_days)
    moment = datetime(2026, 3, 15, 12, tzinfo=UTC)
    start, end = privacy.key_period(moment, custom)
    assert start <= moment.date() < end and (end - start).days == period_days
    assert privacy.key_period(datetime.combine(end, datetime.min.time(), tzinfo=UTC), custom)[0] == end


async def test_fraud_alerts_about_an_address_are_pseudonymized_with_its_events(client, worker, tenant, settings):
    """An accounts-per-IP alert names the address; past IP retention it names the address's
    HMAC instead, the same one its events now carry."""
    from tests.support.fraud_streams import Stream, alerts_of, run

    stream = Stream(base=datetime.now(UTC) - timedelta(days=100))
    sign_ups = [stream.account(f"new-{i}", "198.51.100.23", i) for i in range(4)]
    await run(client, worker, tenant, stream)
    [alert] = [a for a in await alerts_of(client, tenant) if a["kind"] == "ACCOUNTS_PER_IP"]
    assert alert["subject"] == "ip:198.51.100.23" and alert["details"]["ip"] == "198.51.100.23"

    await privacy.pseudonymize_old_ips(datetime.now(UTC), settings=settings)

    [after] = [a for a in await alerts_of(client, tenant) if a["kind"] == "ACCOUNTS_PER_IP"]
    hashed = after["subject"].removeprefix("ip:")
    assert HASH_RE.match(hashed) and after["details"]["ip"] == hashed and after["id"] == alert["id"]
    assert after["evidence"] == alert["evidence"] == sign_ups
    async with connection() as conn:
        stored = await conn.fetch(
            "SELECT ip, ip_hash FROM events WHERE organization_id = $1 AND event_id = ANY($2::text[])",
            tenant.organization.id,
            sign_ups,
        )
    assert {(r["ip"], r["ip_hash"]) for r in stored} == {(None, hashed)}
    await privacy.pseudonymize_old_ips(datetime.now(UTC), settings=settings)  # a second run changes nothing
    assert [a for a in await alerts_of(client, tenant) if a["kind"] == "ACCOUNTS_PER_IP"] == [after]


async def test_deleting_a_subject_erases_them_from_the_ledger_and_fraud_alerts(client, worker, tenant):
    """The ledger (bookkeeping) and fraud alerts (investigations) keep their rows, but the
    subject's ids become tokens: counts stay right, nothing leads back to the person."""
    from tests.support.fraud_streams import Stream, alerts_of, run

    stream = Stream()
    for minute in range(4):
        stream.failed("subject-17", minute)
    await run(client, worker, tenant, stream)
    gift = {"eventId": f"gift-{uuid.uuid4().hex[:8]}", "type": "GIFT_PURCHASED", "profileId": tenant.profile_id,
            "amountMinor": 700, "currency": "EUR", "userId": "subject-17"}  # fmt: skip
    published = await gql(
        client,
        "mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted } }",
        {"e": [gift]},
        token=tenant.service_token,
    )
    assert published["data"]["publishDomainEvents"]["accepted"] == 1
    await worker.drain()
    [alert] = [a for a in await alerts_of(client, tenant) if a["kind"] == "FAILED_PAYMENTS"]
    assert alert["subject"] == "actor:u:subject-17" and alert["details"]["actor"] == "subject-17"

    deleted = await gql(client, DELETE, {"user": "subject-17"}, token=tenant.org_admin_token)
    assert deleted["data"]["deleteSubjectData"]["events"] == 5, deleted

    [after] = [a for a in await alerts_of(client, tenant) if a["kind"] == "FAILED_PAYMENTS"]
    token = after["subject"].removeprefix("actor:")
    assert token.startswith("erased:") and after["details"]["actor"] == token and after["id"] == alert["id"]
    assert after["evidence"] == alert["evidence"] and after["details"]["failedPayments"] == 4
    async with connection() as conn:
        customers = await conn.fetch(
            "SELECT DISTINCT customer_id FROM transactions WHERE organization_id = $1", tenant.organization.id
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE organization_id = $1 AND customer_id LIKE '%subject-17%'",
            tenant.organization.id,
        )
    assert left == 0 and [r["customer_id"] for r in customers] == [token]  # one person, still one customer
