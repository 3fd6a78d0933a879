"""Profile views sent to a running stack, and the subscription documents that follow them.

Live delivery is at-most-once: a view processed before the server has subscribed its channel
is not pushed, and neither websocket protocol acknowledges a subscription. Tests therefore
send warm-up views (`eventId` "warmup-...", one shared visitor) until a subscription has
delivered something, and only then the views under test.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.stacks import Stack
from tests.support.tracking import TRACK_EVENTS

BARRIER_WAIT = 45.0  # warm-up barrier: includes a worker process that is still starting
WARMUP = "warmup"
CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
PAGE_URL = "https://market.example/p/ada?utm_source=newsletter&utm_medium=email"
REFERRER = "https://www.google.com/search?q=ada+provider"

VIEWS = """
subscription Views($profileId: ID!) {
  profileViews(profileId: $profileId) {
    eventId profileId occurredAt country city deviceType browser os referrer utmSource isGov
  }
}"""
ENGAGEMENT = """
subscription Engagement($profileId: ID!) {
  engagementUpdates(profileId: $profileId) {
    profileId since views uniqueVisitors inquiries conversionRate updatedAt
  }
}"""


def _now_ms() -> datetime:
    now = datetime.now(UTC) - timedelta(seconds=1)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def view_event(profile_id: str, *, tag: str = "e2e", visitor: str | None = None, at: datetime | None = None) -> dict[str, Any]:
    """A profile view from desktop Chrome on Windows, referred by Google, tagged by a newsletter."""
    return {
        "type": "profile.viewed",
        "eventId": f"{tag}-{uuid.uuid4().hex}",
        "profileId": profile_id,
        "occurredAt": (at or _now_ms()).isoformat(),
        "anonymousId": visitor or f"visitor-{uuid.uuid4().hex[:12]}",
        "context": {"ip": "203.0.113.10", "userAgent": CHROME_UA, "url": PAGE_URL, "referrer": REFERRER},
    }


def view_batch(profile_id: str, count: int) -> list[dict[str, Any]]:
    """`count` views by distinct visitors, one millisecond apart (so occurredAt is distinct too)."""
    start = _now_ms()
    return [view_event(profile_id, at=start + timedelta(milliseconds=i)) for i in range(count)]


def warmup_event(profile_id: str) -> dict[str, Any]:
    return view_event(profile_id, tag=WARMUP, visitor="warmup-visitor")


def assert_view(view: dict[str, Any], sent: dict[str, Any]) -> None:
    """The pushed view is the sent event, enriched by the ingestion service."""
    assert view["eventId"] == sent["eventId"]
    assert view["profileId"] == sent["profileId"]
    assert datetime.fromisoformat(view["occurredAt"]) == datetime.fromisoformat(sent["occurredAt"]), view
    assert (view["deviceType"], view["browser"], view["os"]) == ("desktop", "Chrome", "Windows"), view
    assert view["referrer"] == "google.com", view  # the referring domain, without "www."
    assert view["utmSource"] == "newsletter", view
    assert view["isGov"] is False, view
    assert view["country"] is None and view["city"] is None, view  # no GeoIP database configured


async def track(http: httpx.AsyncClient, stack: Stack, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    """trackEvents over HTTP against the running server; every event must be accepted."""
    response = await http.post(
        stack.graphql_url,
        json={"query": TRACK_EVENTS, "variables": {"events": events}},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body
    result = body["data"]["trackEvents"]
    assert result == {"accepted": len(events), "duplicates": 0, "dropped": 0, "rejected": []}, result
    return result
