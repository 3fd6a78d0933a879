"""The REST beacon endpoints, as a browser's fetch() or navigator.sendBeacon() uses them.

The test client connects from 203.0.113.7 (see conftest), which is what the endpoints
must record as the visitor's address when the event does not name one.
"""

from __future__ import annotations

import uuid
from typing import Any

from app.database import connection
from app.ratelimit import RateLimiter

CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)


async def stored(tenant: Any) -> list[dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT * FROM events WHERE organization_id = $1 ORDER BY occurred_at, event_id", uuid.UUID(tenant.org_id)
        )
    return [dict(r) for r in rows]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_track_stores_a_json_event_with_the_callers_address_and_browser(client, tenant):
    response = await client.post(
        "/track",
        json={
            "type": "profile.viewed",
            "eventId": "rest-1",
            "profileId": tenant.profile_id,
            "context": {"url": "https://x.example/?utm_source=qr"},
        },
        headers={**bearer(tenant.ingestion_key), "User-Agent": CHROME_ANDROID},
    )

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0, "dropped": 0, "rejected": [], "eventIds": ["rest-1"]}
    assert response.headers["access-control-allow-origin"] == "*"
    [row] = await stored(tenant)
    assert (row["event_id"], str(row["ip"]), row["user_agent"]) == ("rest-1", "203.0.113.7", CHROME_ANDROID)
    assert (row["device_type"], row["os"], row["utm_source"]) == ("mobile", "Android", "qr")
    assert row["visitor_id"].startswith("h:")


async def test_send_beacon_posts_text_plain_with_the_key_in_the_url(client, tenant):
    response = await client.post(
        f"/track?key={tenant.ingestion_key}",
        content=b'{"type": "page.left", "engagementMs": 12000, "anonymousId": "cookie-9"}',
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    [row] = await stored(tenant)
    assert (row["type"], row["engagement_ms"], row["visitor_id"]) == ("page.left", 12000, "a:cookie-9")


async def test_the_event_context_overrides_what_the_request_says(client, tenant):
    await client.post(
        "/track",
        json={"type": "page", "context": {"ip": "198.51.100.77", "userAgent": "curl/8.5.0"}},
        headers={**bearer(tenant.ingestion_key), "User-Agent": CHROME_ANDROID},
    )

    [row] = await stored(tenant)
    assert (str(row["ip"]), row["user_agent"], row["device_type"]) == ("198.51.100.77", "curl/8.5.0", "bot")


async def test_a_dnt_header_makes_the_event_anonymous(client, tenant):
    response = await client.post(
        "/track", json={"type": "page", "userId": "u-1"}, headers={**bearer(tenant.ingestion_key), "DNT": "1"}
    )

    assert response.json()["accepted"] == 1
    [row] = await stored(tenant)
    assert (row["dnt"], row["ip"], row["user_id"], row["visitor_id"]) == (True, None, None, None)


async def test_a_batch_reports_rejections_with_the_inputs_field_names(client, tenant):
    response = await client.post(
        "/track/batch",
        json={
            "events": [
                {"type": "page", "eventId": "b-1"},
                {"type": "profile.viewed", "profileID": tenant.profile_id},
                "not an event",
                {"type": "page", "context": {"userAgent": 42}},
                {"type": "page", "eventId": "b-1"},
                {"type": "page", "occurredAt": "yesterday"},
            ]
        },
        headers=bearer(tenant.ingestion_key),
    )

    assert response.status_code == 200
    assert response.json() == {
        "accepted": 1,
        "duplicates": 1,
        "dropped": 0,
        "rejected": [
            {"index": 1, "field": "profileID", "reason": "unknown field 'profileID'"},
            {"index": 2, "field": None, "reason": "each event must be an object"},
            {"index": 3, "field": "context.userAgent", "reason": "context.userAgent must be a string"},
            {"index": 5, "field": "occurredAt", "reason": "occurredAt is not an ISO 8601 date-time"},
        ],
        "eventIds": ["b-1"],
    }
    assert [r["event_id"] for r in await stored(tenant)] == ["b-1"]


async def test_malformed_bodies_are_refused_with_a_json_error(client, tenant):
    broken = await client.post("/track", content=b'{"type": "page",', headers=bearer(tenant.ingestion_key))
    empty = await client.post("/track", content=b"", headers=bearer(tenant.ingestion_key))
    not_a_batch = await client.post("/track/batch", json=[{"type": "page"}], headers=bearer(tenant.ingestion_key))
    too_many = await client.post(
        "/track/batch", json={"events": [{"type": "p"}] * 1001}, headers=bearer(tenant.ingestion_key)
    )

    assert broken.status_code == 400
    assert broken.json()["error"]["code"] == "BAD_USER_INPUT"
    assert broken.json()["error"]["field"] == "body"
    assert broken.json()["error"]["message"].startswith("the request body is not valid JSON")
    assert (empty.status_code, empty.json()["error"]["field"]) == (400, "body")
    assert (not_a_batch.status_code, not_a_batch.json()["error"]["field"]) == (400, "events")
    assert (too_many.status_code, too_many.json()["error"]["field"]) == (400, "events")
    assert await stored(tenant) == []


async def test_credentials_are_checked_like_graphql(client, tenant):
    event = {"type": "page"}

    nobody = await client.post("/track", json=event)
    wrong_key = await client.post(f"/track?key={tenant.ingestion_key[:-4]}abcd", json=event)
    jwt_in_url = await client.post(f"/track?key={tenant.org_admin_token}", json=event)
    provider = await client.post("/track", json=event, headers=bearer(tenant.provider_token))
    service = await client.post("/track", json=event, headers=bearer(tenant.service_token))

    assert (nobody.status_code, nobody.json()["error"]["code"]) == (401, "UNAUTHENTICATED")
    assert (wrong_key.status_code, wrong_key.json()["error"]["code"]) == (401, "UNAUTHENTICATED")
    assert (jwt_in_url.status_code, jwt_in_url.json()["error"]["field"]) == (401, "key")
    assert (provider.status_code, provider.json()["error"]["code"]) == (403, "FORBIDDEN")
    assert (service.status_code, service.json()["accepted"]) == (200, 1)
    assert len(await stored(tenant)) == 1


async def test_a_beacon_over_its_rate_gets_429_with_retry_after(app, client, tenant):
    original = app.state.rate_limiter
    app.state.rate_limiter = RateLimiter(rate=2, burst=2)
    try:
        ok = await client.post(
            "/track/batch", json={"events": [{"type": "a"}, {"type": "b"}]}, headers=bearer(tenant.ingestion_key)
        )
        limited = await client.post("/track", json={"type": "c"}, headers=bearer(tenant.ingestion_key))
    finally:
        app.state.rate_limiter = original

    assert ok.json()["accepted"] == 2
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    error = limited.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert 0 < error["retryAfterSeconds"] <= 0.5
    assert len(await stored(tenant)) == 2


async def test_a_database_outage_answers_503_so_the_beacon_retries(client, tenant, monkeypatch):
    def refused() -> Any:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr("app.services.ingestion.service.connection", refused)
    response = await client.post("/track", json={"type": "page"}, headers=bearer(tenant.ingestion_key))
    monkeypatch.undo()

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "UNAVAILABLE"
    assert await stored(tenant) == []


async def test_browsers_may_call_track_from_any_site(client):
    """A beacon on a customer's site sends fetch() with JSON and a key: the preflight must pass."""
    response = await client.options(
        "/track",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert "POST" in response.headers["access-control-allow-methods"]
