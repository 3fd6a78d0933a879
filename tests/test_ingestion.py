"""Ingestion through GraphQL: what a client sends, what it is told, and what is stored.

Every test uses its own tenant and reads the database only to check what a user of the
analytics would notice: which events exist, with which enrichment, in which session,
and whether the worker has something to do for them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from app.auth import viewer_from_credential
from app.database import connection
from app.errors import Unavailable
from app.ratelimit import RateLimiter
from app.services import ingestion
from app.services.enrichment import visitor_id
from app.vocabulary import OUTBOX_CHANNEL
from tests.support.graphql import error_codes, gql
from tests.support.settings import settings_with
from tests.support.tracking import CHROME_WINDOWS, TRACK_EVENT, TRACK_EVENTS

FIREFOX_LINUX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"

PUBLISH = """
mutation Publish($events: [DomainEventInput!]!) {
  publishDomainEvents(events: $events) { accepted duplicates dropped rejected { index field reason } }
}
"""


def iso(ts: datetime) -> str:
    return ts.isoformat()


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


async def track(client: Any, token: str, *events: dict[str, Any]) -> dict[str, Any]:
    body = await gql(client, TRACK_EVENTS, {"events": list(events)}, token=token)
    assert body.get("errors") is None, body
    return body["data"]["trackEvents"]


async def stored(tenant: Any, columns: str = "*", where: str = "true", *args: Any) -> list[dict[str, Any]]:
    """The tenant's stored events, oldest first."""
    async with connection() as conn:
        rows = await conn.fetch(
            f"SELECT {columns} FROM events WHERE organization_id = $1 AND ({where}) ORDER BY occurred_at, event_id",
            uuid.UUID(tenant.org_id),
            *args,
        )
    return [dict(r) for r in rows]


async def outbox(tenant: Any) -> dict[str, datetime | None]:
    """event id -> processed_at."""
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT event_id, processed_at FROM outbox WHERE organization_id = $1", uuid.UUID(tenant.org_id)
        )
    return {r["event_id"]: r["processed_at"] for r in rows}


async def sessions(tenant: Any) -> list[dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT * FROM sessions WHERE organization_id = $1 ORDER BY started_at", uuid.UUID(tenant.org_id)
        )
    return [dict(r) for r in rows]


# --------------------------------------------------------------------------- batches


async def test_a_batch_stores_its_valid_events_and_names_each_rejected_one(client, tenant):
    result = await track(
        client,
        tenant.ingestion_key,
        {"type": "signup", "eventId": "ok-1", "properties": {"plan": "pro", "seats": 3}},
        {"type": ""},
        {"type": "profile.viewed", "eventId": "ok-2", "profileId": tenant.profile_id},
        {"type": "profile.viewed"},
        {"type": "page", "occurredAt": iso(datetime.now(UTC) + timedelta(hours=2))},
        {"type": "page", "engagementMs": -5},
        {"type": "page", "properties": {"blob": "x" * 9000}},
        {"type": "page", "eventId": "e" * 129},
        {"type": "page", "currency": "EUR"},
        {"type": "bad\ttype"},
    )

    assert result["accepted"] == 2
    assert result["duplicates"] == 0
    assert result["rejected"] == [
        {"index": 1, "field": "type", "reason": "type is required"},
        {"index": 3, "field": "profileId", "reason": "profile.viewed needs a profileId"},
        {"index": 4, "field": "occurredAt", "reason": "occurredAt is more than 3600 seconds in the future"},
        {"index": 5, "field": "engagementMs", "reason": "engagementMs must be an integer from 0 to 86400000"},
        {"index": 6, "field": "properties", "reason": "properties exceed 8192 bytes as JSON"},
        {"index": 7, "field": "eventId", "reason": "eventId is longer than 128 characters"},
        {
            "index": 8,
            "field": "amountMinor",
            "reason": "amountMinor must be a non-negative integer in minor units (e.g. cents)",
        },
        {"index": 9, "field": "type", "reason": "type must be printable text without leading or trailing spaces"},
    ]
    rows = await stored(tenant, "event_id, type, profile_id, properties")
    assert [(r["event_id"], r["type"]) for r in rows] == [("ok-1", "signup"), ("ok-2", "profile.viewed")]
    assert json.loads(rows[0]["properties"]) == {"plan": "pro", "seats": 3}
    assert str(rows[1]["profile_id"]) == tenant.profile_id


async def test_track_event_reports_an_invalid_event_like_a_batch_of_one(client, tenant):
    body = await gql(
        client, TRACK_EVENT, {"event": {"type": "page", "engagementMs": 90_000_000}}, token=tenant.ingestion_key
    )

    assert body["data"]["trackEvent"] == {
        "accepted": 0,
        "duplicates": 0,
        "dropped": 0,
        "rejected": [
            {"index": 0, "field": "engagementMs", "reason": "engagementMs must be an integer from 0 to 86400000"}
        ],
        "eventIds": [],
    }
    assert await stored(tenant) == []


async def test_track_event_stores_one_event_with_a_generated_id(client, tenant):
    body = await gql(client, TRACK_EVENT, {"event": {"type": "signup"}}, token=tenant.ingestion_key)

    assert body["data"]["trackEvent"]["accepted"] == 1
    [row] = await stored(tenant, "event_id")
    assert uuid.UUID(row["event_id"]).version == 4
    assert body["data"]["trackEvent"]["eventIds"] == [row["event_id"]]


async def test_the_same_event_id_is_stored_once_across_calls_and_within_a_batch(client, tenant):
    event = {"type": "profile.viewed", "eventId": "view-42", "profileId": tenant.profile_id}

    first = await track(client, tenant.ingestion_key, event, {**event, "occurredAt": iso(ago(minutes=5))})
    again = await track(client, tenant.ingestion_key, event)

    assert (first["accepted"], first["duplicates"]) == (1, 1)
    assert (again["accepted"], again["duplicates"]) == (0, 1)
    assert len(await stored(tenant)) == 1
    assert list(await outbox(tenant)) == ["view-42"]


async def test_event_ids_are_scoped_to_the_organization(client, tenant, other_tenant):
    mine = await track(client, tenant.ingestion_key, {"type": "signup", "eventId": "shared-id"})
    theirs = await track(client, other_tenant.ingestion_key, {"type": "signup", "eventId": "shared-id"})

    assert mine["accepted"] == theirs["accepted"] == 1
    assert len(await stored(tenant)) == len(await stored(other_tenant)) == 1


async def test_a_batch_over_the_size_limit_is_refused_whole(client, tenant, settings):
    events = [{"type": "page"} for _ in range(settings.max_batch_size + 1)]

    body = await gql(client, TRACK_EVENTS, {"events": events}, token=tenant.ingestion_key)

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "events"
    assert "at most 1000 events" in body["errors"][0]["message"]
    assert await stored(tenant) == []


# --------------------------------------------------------------------------- time


async def test_occurred_at_must_have_an_offset_and_fall_in_the_accepted_window(client, tenant, settings):
    result = await track(
        client,
        tenant.ingestion_key,
        {"type": "page", "eventId": "in-window", "occurredAt": iso(ago(hours=3))},
        {"type": "page", "occurredAt": iso(datetime.now(UTC) + timedelta(minutes=90))},
        {"type": "page", "occurredAt": iso(ago(days=settings.max_event_age_days + 1))},
        {"type": "page", "occurredAt": ago(hours=1).replace(tzinfo=None).isoformat()},
        {"type": "page", "eventId": "slight-skew", "occurredAt": iso(datetime.now(UTC) + timedelta(minutes=30))},
    )

    assert [(r["index"], r["field"], r["reason"]) for r in result["rejected"]] == [
        (1, "occurredAt", "occurredAt is more than 3600 seconds in the future"),
        (2, "occurredAt", "occurredAt is older than 730 days"),
        (3, "occurredAt", "occurredAt needs a UTC offset, e.g. 2026-05-01T12:00:00Z"),
    ]
    assert {r["event_id"] for r in await stored(tenant, "event_id")} == {"in-window", "slight-skew"}


async def test_offsets_are_stored_as_the_same_instant_in_utc(client, tenant):
    moment = ago(days=3).replace(microsecond=0)
    local = moment.astimezone(ZoneInfo("America/New_York"))

    await track(client, tenant.ingestion_key, {"type": "page", "occurredAt": local.isoformat()})

    [row] = await stored(tenant, "occurred_at")
    assert row["occurred_at"] == moment


async def test_a_late_event_in_a_month_without_partition_is_stored(client, tenant):
    long_ago = ago(days=600)

    result = await track(
        client, tenant.ingestion_key, {"type": "import", "eventId": "old", "occurredAt": iso(long_ago)}
    )

    assert result["accepted"] == 1
    [row] = await stored(tenant, "event_id, occurred_at")
    assert row["occurred_at"] == long_ago


# --------------------------------------------------------------------------- enrichment


async def test_device_source_and_address_are_derived_from_the_context(client, tenant):
    await track(
        client,
        tenant.ingestion_key,
        {
            "type": "profile.viewed",
            "profileId": tenant.profile_id,
            "context": {
                "ip": "::ffff:198.51.100.23",
                "userAgent": CHROME_WINDOWS,
                "url": "https://shop.example/p/ada?utm_source=newsletter&utm_medium=email&utm_campaign=spring",
                "referrer": "https://www.google.com/search?q=ada",
                "utmCampaign": "override",
            },
        },
    )

    [row] = await stored(tenant)
    assert (row["browser"], row["os"], row["device_type"]) == ("Chrome", "Windows", "desktop")
    assert (row["utm_source"], row["utm_medium"], row["utm_campaign"]) == ("newsletter", "email", "override")
    assert row["referrer_domain"] == "google.com"
    assert row["url"] == "https://shop.example/p/ada?utm_source=newsletter&utm_medium=email&utm_campaign=spring"
    assert str(row["ip"]) == "198.51.100.23"
    assert row["user_agent"] == CHROME_WINDOWS
    assert row["dnt"] is False


async def test_graphql_events_without_context_ip_get_no_address(client, tenant):
    await track(client, tenant.ingestion_key, {"type": "page", "context": {"userAgent": CHROME_WINDOWS}})

    [row] = await stored(tenant, "ip, visitor_id")
    assert row == {"ip": None, "visitor_id": None}


async def test_visitor_id_prefers_user_then_anonymous_id_then_a_daily_hash(client, tenant):
    context = {"ip": "198.51.100.7", "userAgent": FIREFOX_LINUX}
    await track(
        client,
        tenant.ingestion_key,
        {"type": "a", "eventId": "1", "userId": "u-1", "anonymousId": "anon-1", "context": context},
        {"type": "a", "eventId": "2", "anonymousId": "anon-1", "context": context},
        {"type": "a", "eventId": "3", "context": context},
        {"type": "a", "eventId": "4", "context": {**context, "ip": "::ffff:198.51.100.7"}},
        {"type": "a", "eventId": "5", "context": {**context, "userAgent": CHROME_WINDOWS}},
    )

    ids = {r["event_id"]: r["visitor_id"] for r in await stored(tenant, "event_id, visitor_id")}
    async with connection() as conn:
        salt = await conn.fetchval("SELECT salt FROM visitor_salts WHERE day = $1", datetime.now(UTC).date())
    expected_hash = visitor_id(
        organization_id=tenant.org_id,
        user_id=None,
        anonymous_id=None,
        ip="198.51.100.7",
        user_agent=FIREFOX_LINUX,
        salt=salt,
    )
    assert ids["1"] == "u:u-1"
    assert ids["2"] == "a:anon-1"
    assert ids["3"] == ids["4"] == expected_hash
    assert expected_hash.startswith("h:")
    assert ids["5"].startswith("h:") and ids["5"] != ids["3"]


async def test_hashed_visitors_differ_between_organizations(client, tenant, other_tenant):
    event = {"type": "a", "context": {"ip": "198.51.100.8", "userAgent": FIREFOX_LINUX}}
    await track(client, tenant.ingestion_key, event)
    await track(client, other_tenant.ingestion_key, event)

    [mine] = await stored(tenant, "visitor_id")
    [theirs] = await stored(other_tenant, "visitor_id")
    assert mine["visitor_id"].startswith("h:") and theirs["visitor_id"].startswith("h:")
    assert mine["visitor_id"] != theirs["visitor_id"]


# --------------------------------------------------------------------------- do not track


async def test_dnt_events_are_kept_anonymously_by_default(client, tenant, settings):
    assert settings.dnt_mode == "anonymize"
    result = await track(
        client,
        tenant.ingestion_key,
        {
            "type": "profile.viewed",
            "profileId": tenant.profile_id,
            "userId": "u-7",
            "anonymousId": "anon-7",
            "sessionId": "s-7",
            "context": {
                "ip": "198.51.100.9",
                "userAgent": CHROME_WINDOWS,
                "url": "https://x.example/?utm_source=ads",
                "dnt": True,
            },
        },
    )

    assert (result["accepted"], result["dropped"]) == (1, 0)
    [row] = await stored(tenant)
    identifying = ("ip", "user_id", "anonymous_id", "visitor_id", "session_id", "user_agent", "city", "region", "asn")
    assert {column: row[column] for column in identifying} == dict.fromkeys(identifying)
    assert row["dnt"] is True
    assert (row["browser"], row["device_type"], row["utm_source"]) == ("Chrome", "desktop", "ads")
    assert await sessions(tenant) == []


async def test_dnt_events_are_not_stored_in_drop_mode(app, tenant, settings):
    viewer = await viewer_from_credential(tenant.ingestion_key)

    outcome = await ingestion.track_events(
        viewer=viewer,
        events=[
            {"type": "page", "event_id": "tracked", "context": {"dnt": False}},
            {"type": "page", "event_id": "private", "context": {"dnt": True, "ip": "198.51.100.10"}},
        ],
        geo=app.state.geo,
        settings=settings_with(settings, dnt_mode="drop"),
    )

    assert (outcome.accepted, outcome.dropped, outcome.duplicates, outcome.rejected) == (1, 1, 0, [])
    assert outcome.event_ids == ["tracked"]
    assert [r["event_id"] for r in await stored(tenant, "event_id")] == ["tracked"]
    assert list(await outbox(tenant)) == ["tracked"]


# --------------------------------------------------------------------------- sessions


def visit(tenant: Any, at: datetime, event_id: str, visitor: str = "anon-s", **extra: Any) -> dict[str, Any]:
    return {"type": "page", "eventId": event_id, "anonymousId": visitor, "occurredAt": iso(at), **extra}


async def test_events_within_30_minutes_share_a_session_and_a_longer_gap_starts_one(client, tenant):
    start = ago(days=2).replace(microsecond=0)

    await track(
        client,
        tenant.ingestion_key,
        visit(
            tenant,
            start,
            "s1",
            context={"url": "https://x.example/landing?utm_source=ads", "userAgent": CHROME_WINDOWS},
        ),
        visit(tenant, start + timedelta(minutes=10), "s2"),
        visit(tenant, start + timedelta(minutes=50), "s3"),
        visit(tenant, start + timedelta(minutes=5), "other-1", visitor="anon-other"),
    )

    by_event = {r["event_id"]: r["session_id"] for r in await stored(tenant, "event_id, session_id")}
    assert by_event["s1"] == by_event["s2"]
    assert by_event["s3"] not in (None, by_event["s1"])
    assert by_event["other-1"] not in (None, by_event["s1"], by_event["s3"])
    first, other, second = await sessions(tenant)
    assert (first["id"], first["visitor_id"], first["event_count"]) == (by_event["s1"], "a:anon-s", 2)
    assert (first["started_at"], first["last_seen_at"]) == (start, start + timedelta(minutes=10))
    assert (first["landing_page"], first["utm_source"], first["browser"]) == (
        "https://x.example/landing?utm_source=ads", "ads", "Chrome",
    )  # fmt: skip
    assert (other["visitor_id"], other["event_count"]) == ("a:anon-other", 1)
    assert (second["id"], second["event_count"], second["started_at"]) == (
        by_event["s3"],
        1,
        start + timedelta(minutes=50),
    )


async def test_a_later_call_continues_the_visitors_open_session(client, tenant):
    start = ago(hours=5).replace(microsecond=0)
    await track(client, tenant.ingestion_key, visit(tenant, start, "c1"))
    await track(client, tenant.ingestion_key, visit(tenant, start + timedelta(minutes=20), "c2"))
    await track(client, tenant.ingestion_key, visit(tenant, start + timedelta(minutes=25), "c3", sessionId="mine"))

    by_event = {r["event_id"]: r["session_id"] for r in await stored(tenant, "event_id, session_id")}
    assert by_event["c1"] == by_event["c2"]
    assert by_event["c3"] == "mine"
    rows = {s["id"]: s for s in await sessions(tenant)}
    assert rows[by_event["c1"]]["event_count"] == 2
    assert rows[by_event["c1"]]["last_seen_at"] == start + timedelta(minutes=20)
    assert rows["mine"]["event_count"] == 1


async def test_a_session_ends_at_24_hours_even_without_a_pause(client, tenant):
    start = ago(days=3).replace(microsecond=0)
    events = [visit(tenant, start + timedelta(minutes=20 * n), f"long-{n}") for n in range(76)]  # 25 hours

    await track(client, tenant.ingestion_key, *events)

    rows = await sessions(tenant)
    assert [r["event_count"] for r in rows] == [72, 4]
    assert rows[0]["last_seen_at"] - rows[0]["started_at"] == timedelta(hours=23, minutes=40)
    assert rows[1]["started_at"] == start + timedelta(hours=24)


# --------------------------------------------------------------------------- who may write


async def test_credentials_that_may_not_track_are_refused(client, tenant):
    event = {"events": [{"type": "page"}]}

    provider = await gql(client, TRACK_EVENTS, event, token=tenant.provider_token)
    platform_admin = await gql(client, TRACK_EVENTS, event, token=tenant.admin_token)
    anonymous = await gql(client, TRACK_EVENTS, event)
    bad_key = await gql(client, TRACK_EVENTS, event, token=tenant.ingestion_key[:-4] + "abcd")
    bad_jwt = await gql(client, TRACK_EVENTS, event, token="not-a-token")

    assert error_codes(provider) == ["FORBIDDEN"]
    assert error_codes(platform_admin) == ["FORBIDDEN"]
    assert error_codes(anonymous) == ["UNAUTHENTICATED"]
    assert error_codes(bad_key) == ["UNAUTHENTICATED"]
    assert error_codes(bad_jwt) == ["UNAUTHENTICATED"]
    assert await stored(tenant) == []


async def test_org_admin_and_service_tokens_may_track(client, tenant):
    by_admin = await track(client, tenant.org_admin_token, {"type": "page", "eventId": "from-admin"})
    by_service = await track(client, tenant.service_token, {"type": "page", "eventId": "from-service"})

    assert by_admin["accepted"] == by_service["accepted"] == 1
    assert {r["event_id"] for r in await stored(tenant, "event_id")} == {"from-admin", "from-service"}


async def test_a_foreign_or_unknown_profile_is_not_found_and_nothing_is_stored_for_it(client, tenant, other_tenant):
    result = await track(
        client,
        tenant.ingestion_key,
        {"type": "profile.viewed", "eventId": "foreign", "profileId": other_tenant.profile_id},
        {"type": "profile.viewed", "eventId": "unknown", "profileId": str(uuid.uuid4())},
        {"type": "profile.viewed", "eventId": "garbled", "profileId": "not-a-uuid"},
        {"type": "profile.viewed", "eventId": "mine", "profileId": tenant.profile_id},
    )

    assert result["accepted"] == 1
    assert result["rejected"] == [
        {"index": 0, "field": "profileId", "reason": "profile not found"},
        {"index": 1, "field": "profileId", "reason": "profile not found"},
        {"index": 2, "field": "profileId", "reason": "profileId is not a valid id"},
    ]
    assert [r["event_id"] for r in await stored(tenant, "event_id")] == ["mine"]
    assert await stored(other_tenant) == []
    assert list(await outbox(tenant)) == ["mine"]


# --------------------------------------------------------------------------- domain events and money


def gift(tenant: Any, event_id: str, **extra: Any) -> dict[str, Any]:
    return {"eventId": event_id, "type": "GIFT_PURCHASED", "profileId": tenant.profile_id, **extra}


async def test_a_service_publishes_domain_events_and_money_needs_amount_and_currency(client, tenant):
    body = await gql(
        client,
        PUBLISH,
        {
            "events": [
                gift(tenant, "g-1", amountMinor=2500, currency="EUR"),
                gift(tenant, "g-2"),
                gift(tenant, "g-3", amountMinor=0, currency="EUR"),
                gift(tenant, "g-4", amountMinor=100, currency="eur"),
                {"eventId": "v-1", "type": "PROFILE_VIEWED", "profileId": tenant.profile_id},
                gift(tenant, "g-1", amountMinor=2500, currency="EUR"),
            ]
        },
        token=tenant.service_token,
    )

    assert body.get("errors") is None, body
    result = body["data"]["publishDomainEvents"]
    assert (result["accepted"], result["duplicates"]) == (2, 1)
    assert result["rejected"] == [
        {
            "index": 1,
            "field": "amountMinor",
            "reason": "amountMinor must be a positive integer in minor units (e.g. cents)",
        },
        {
            "index": 2,
            "field": "amountMinor",
            "reason": "amountMinor must be a positive integer in minor units (e.g. cents)",
        },
        {"index": 3, "field": "currency", "reason": "currency must be an ISO 4217 code such as EUR"},
    ]
    rows = await stored(tenant, "event_id, type, amount_minor, currency")
    assert sorted((r["event_id"], r["type"], r["amount_minor"], r["currency"]) for r in rows) == [
        ("g-1", "gift.purchased", 2500, "EUR"),
        ("v-1", "profile.viewed", None, None),
    ]


async def test_only_service_and_org_admin_tokens_publish_domain_events(client, tenant):
    events = {"events": [{"eventId": "d-1", "type": "PROFILE_VIEWED", "profileId": tenant.profile_id}]}

    by_key = await gql(client, PUBLISH, events, token=tenant.ingestion_key)
    by_provider = await gql(client, PUBLISH, events, token=tenant.provider_token)
    by_nobody = await gql(client, PUBLISH, events)
    by_admin = await gql(client, PUBLISH, events, token=tenant.org_admin_token)

    assert error_codes(by_key) == ["FORBIDDEN"]
    assert error_codes(by_provider) == ["FORBIDDEN"]
    assert error_codes(by_nobody) == ["UNAUTHENTICATED"]
    assert by_admin["data"]["publishDomainEvents"]["accepted"] == 1


async def test_money_events_through_track_events_need_a_service_credential(client, tenant):
    purchase = {"type": "booking.completed", "profileId": tenant.profile_id, "amountMinor": 12000, "currency": "EUR"}

    by_key = await track(client, tenant.ingestion_key, {**purchase, "eventId": "b-key"})
    by_service = await track(client, tenant.service_token, {**purchase, "eventId": "b-service"})

    assert by_key["rejected"] == [
        {
            "index": 0,
            "field": "type",
            "reason": "booking.completed moves money: publish it with a service token (publishDomainEvents)",
        }
    ]
    assert by_service["accepted"] == 1
    assert [r["event_id"] for r in await stored(tenant, "event_id")] == ["b-service"]


async def test_a_custom_event_may_carry_an_amount_with_its_currency(client, tenant):
    result = await track(
        client,
        tenant.ingestion_key,
        {"type": "refund.issued", "eventId": "r-1", "amountMinor": 300, "currency": "USD"},
        {"type": "refund.issued", "eventId": "r-2", "amountMinor": 300},
    )

    assert result["rejected"] == [
        {"index": 1, "field": "currency", "reason": "currency must be an ISO 4217 code such as EUR"}
    ]
    [row] = await stored(tenant, "amount_minor, currency")
    assert (row["amount_minor"], row["currency"]) == (300, "USD")


# --------------------------------------------------------------------------- the worker's queue


async def test_vocabulary_events_wait_for_the_worker_and_custom_events_do_not(client, tenant):
    await track(
        client,
        tenant.ingestion_key,
        {"type": "profile.viewed", "eventId": "view", "profileId": tenant.profile_id},
        {"type": "profile.engaged", "eventId": "engaged", "profileId": tenant.profile_id, "engagementMs": 42_000},
        {"type": "signup", "eventId": "custom"},
        {"type": "signup", "eventId": "custom-with-profile", "profileId": tenant.profile_id},
    )

    queue = await outbox(tenant)
    assert queue["view"] is None and queue["engaged"] is None
    assert queue["custom"] is not None and queue["custom-with-profile"] is not None
    assert len(queue) == 4


async def test_the_worker_is_woken_only_when_it_has_work(client, tenant, settings):
    listener = await asyncpg.connect(settings.database_url)
    wakeups: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener(OUTBOX_CHANNEL, lambda *args: wakeups.put_nowait(args[2]))
    try:
        await track(client, tenant.ingestion_key, {"type": "signup"})
        await asyncio.sleep(0.2)
        assert wakeups.empty()

        await track(client, tenant.ingestion_key, {"type": "profile.viewed", "profileId": tenant.profile_id})
        assert await asyncio.wait_for(wakeups.get(), timeout=5) == OUTBOX_CHANNEL
    finally:
        await listener.close()


# --------------------------------------------------------------------------- limits and failures


async def test_a_credential_over_its_rate_is_told_when_to_retry(app, client, tenant):
    original = app.state.rate_limiter
    app.state.rate_limiter = RateLimiter(rate=1, burst=3)
    try:
        first = await track(client, tenant.ingestion_key, {"type": "a"}, {"type": "b"}, {"type": "c"})
        refused = await gql(
            client, TRACK_EVENTS, {"events": [{"type": "d"}, {"type": "e"}]}, token=tenant.ingestion_key
        )
    finally:
        app.state.rate_limiter = original

    assert first["accepted"] == 3
    assert error_codes(refused) == ["RATE_LIMITED"]
    assert 1.0 < refused["errors"][0]["extensions"]["retryAfterSeconds"] <= 2.0
    assert len(await stored(tenant)) == 3


async def test_refused_calls_cost_no_rate_limit_tokens(app, client, tenant):
    original = app.state.rate_limiter
    app.state.rate_limiter = RateLimiter(rate=1, burst=2)
    try:
        oversized = await gql(client, TRACK_EVENTS, {"events": [{"type": "x"}] * 1001}, token=tenant.ingestion_key)
        accepted = await track(client, tenant.ingestion_key, {"type": "a"}, {"type": "b"})
    finally:
        app.state.rate_limiter = original

    assert error_codes(oversized) == ["BAD_USER_INPUT"]
    assert accepted["accepted"] == 2


async def test_an_unreachable_database_is_a_retryable_error_not_a_success(client, tenant, monkeypatch):
    def refused() -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("app.services.ingestion.service.connection", refused)

    body = await gql(client, TRACK_EVENTS, {"events": [{"type": "page"}]}, token=tenant.ingestion_key)

    monkeypatch.undo()
    assert error_codes(body) == ["UNAVAILABLE"]
    assert body["errors"][0]["message"] == "database unavailable; nothing was stored, retry"
    assert body["data"] is None
    assert await stored(tenant) == []


async def test_a_connection_lost_mid_write_stores_nothing(app, tenant, monkeypatch):
    async def lost(*args: Any, **kwargs: Any) -> None:
        raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")

    monkeypatch.setattr("app.services.ingestion.sessions.upsert", lost)
    viewer = await viewer_from_credential(tenant.ingestion_key)

    with pytest.raises(Unavailable):
        await ingestion.track_events(
            viewer=viewer,
            events=[{"type": "page", "anonymous_id": "v"}],
            geo=app.state.geo,
            settings=app.state.settings,
        )

    monkeypatch.undo()
    assert await stored(tenant) == []
    assert await outbox(tenant) == {}


async def test_text_is_made_storable_and_hostile_json_is_rejected(client, tenant):
    result = await track(
        client,
        tenant.ingestion_key,
        {
            "type": "page",
            "eventId": "nul",
            "context": {"userAgent": "Bot\u0000/1.0", "url": "https://x.example/\u0000"},
        },
        {"type": "page", "properties": {"note": "a\u0000b"}},
        {"type": "page", "properties": {"escaped": "\\u0000 is fine"}, "eventId": "escaped"},
    )

    assert result["rejected"] == [
        {"index": 1, "field": "properties", "reason": "properties must not contain NUL characters"}
    ]
    rows = {r["event_id"]: r for r in await stored(tenant, "event_id, user_agent, url, properties")}
    assert rows["nul"]["user_agent"] == "Bot/1.0"
    assert rows["nul"]["url"] == "https://x.example/"
    assert json.loads(rows["escaped"]["properties"]) == {"escaped": "\\u0000 is fine"}
