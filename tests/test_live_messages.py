"""Live messages (app/live_messages.py): each class's JSON is exactly what the bus carried
before the messages were typed (subscribers outside this code base read it), it reads back
into an equal message, and each names the channels its subscribers follow.

End-to-end delivery over real sockets is in tests/test_live.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from app.live_messages import (
    EngagementSnapshotMessage,
    FraudAlertMessage,
    GiftPurchasedMessage,
    GovAlertMessage,
    LiveMessage,
    ProfileViewMessage,
    RevenueCountersMessage,
    publishable,
)
from app.services.profile_analytics.effects import DayTotals, engagement_snapshots, view_message
from app.services.profile_analytics.sketches import new_sketch
from app.services.revenue.ledger import gift_message
from app.timebuckets import day_start
from resolvers.live import to_profile_view
from resolvers.profile_analytics import profile_view_of

PROFILE = uuid.UUID("11111111-1111-4111-8111-111111111111")
ORG = uuid.UUID("22222222-2222-4222-8222-222222222222")
RULE = uuid.UUID("33333333-3333-4333-8333-333333333333")
ALERT = uuid.UUID("44444444-4444-4444-8444-444444444444")
AT = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

GOV_ALERT = GovAlertMessage(
    event_id="e-1", organization_id=ORG, profile_id=PROFILE, occurred_at=AT, raised_at=AT + timedelta(seconds=2),
    confidence=0.9, threshold=0.7, network_name="Ministry of Defence", asn=64500, country="GB", city="London",
    device_type="desktop", browser="Firefox", os="Linux", reasons=("network on the gov list",), signals=("asn",),
)  # fmt: skip
GOV_ALERT_JSON = {
    "eventId": "e-1",
    "organizationId": "22222222-2222-4222-8222-222222222222",
    "profileId": "11111111-1111-4111-8111-111111111111",
    "occurredAt": "2026-11-22T10:00:00+00:00",
    "raisedAt": "2026-11-22T10:00:02+00:00",
    "confidence": 0.9,
    "threshold": 0.7,
    "networkName": "Ministry of Defence",
    "asn": 64500,
    "country": "GB",
    "city": "London",
    "deviceType": "desktop",
    "browser": "Firefox",
    "os": "Linux",
    "reasons": ["network on the gov list"],
    "signals": ["asn"],
}

# A claimed view as the worker holds it: a country from a char(2) column may come padded,
# and the time in whatever zone the driver returned.
VIEW_EVENT = {
    "event_id": "e-1", "profile_id": PROFILE, "occurred_at": datetime(2026, 11, 22, 11, 0, tzinfo=ZoneInfo("Europe/Berlin")),
    "country": "GB ", "city": "London", "device_type": "desktop", "browser": "Firefox", "os": "Linux",
    "referrer_domain": "google.com", "utm_source": "newsletter", "is_gov": True,
}  # fmt: skip
VIEW_JSON = {
    "eventId": "e-1",
    "profileId": "11111111-1111-4111-8111-111111111111",
    "occurredAt": "2026-11-22T10:00:00+00:00",
    "country": "GB",
    "city": "London",
    "deviceType": "desktop",
    "browser": "Firefox",
    "os": "Linux",
    "referrer": "google.com",
    "utmSource": "newsletter",
    "isGov": True,
    "govAlert": GOV_ALERT_JSON,
}

FRAUD_ALERT = FraudAlertMessage(
    id=ALERT, organization_id=ORG, rule_id=RULE, rule_name="Failed payments", kind="failed_payments", risk="high",
    subject="actor:u:42", status="open", details={"failed": 6, "threshold": 5, "windowMinutes": 10},
    evidence=("p-1", "p-2"), triggered_at=AT, last_triggered_at=AT + timedelta(minutes=3),
    raised_at=AT + timedelta(minutes=3, seconds=1), updated_at=AT + timedelta(minutes=3, seconds=1),
)  # fmt: skip
FRAUD_ALERT_JSON = {
    "id": "44444444-4444-4444-8444-444444444444",
    "organizationId": "22222222-2222-4222-8222-222222222222",
    "ruleId": "33333333-3333-4333-8333-333333333333",
    "ruleName": "Failed payments",
    "kind": "failed_payments",
    "risk": "high",
    "subject": "actor:u:42",
    "status": "open",
    "details": {"failed": 6, "threshold": 5, "windowMinutes": 10},
    "evidence": ["p-1", "p-2"],
    "triggeredAt": "2026-11-22T10:00:00+00:00",
    "lastTriggeredAt": "2026-11-22T10:03:00+00:00",
    "raisedAt": "2026-11-22T10:03:01+00:00",
    "updatedAt": "2026-11-22T10:03:01+00:00",
}

GIFT_ROW = {
    "event_id": "g-1", "organization_id": ORG, "profile_id": PROFILE, "customer_id": "u:donor", "amount_minor": 500,
    "currency": "EUR", "category": "roses", "occurred_at": AT,
}  # fmt: skip
GIFT_JSON = {
    "eventId": "g-1",
    "organizationId": "22222222-2222-4222-8222-222222222222",
    "profileId": "11111111-1111-4111-8111-111111111111",
    "donorId": "u:donor",
    "amountMinor": 500,
    "currency": "EUR",
    "category": "roses",
    "occurredAt": "2026-11-22T10:00:00+00:00",
}

ORG_COUNTERS = RevenueCountersMessage(
    organization_id=ORG, start=datetime(2026, 11, 22, 5, 0, tzinfo=UTC), end=datetime(2026, 11, 23, 5, 0, tzinfo=UTC),
    revenue=((1250, "EUR"), (-300, "USD")), transactions=4, failed_payments=1, updated_at=AT,
)  # fmt: skip
ORG_COUNTERS_JSON = {
    "organizationId": "22222222-2222-4222-8222-222222222222",
    "from": "2026-11-22T05:00:00+00:00",
    "to": "2026-11-23T05:00:00+00:00",
    "revenue": [{"amountMinor": 1250, "currency": "EUR"}, {"amountMinor": -300, "currency": "USD"}],
    "transactions": 4,
    "failedPayments": 1,
    "updatedAt": "2026-11-22T10:00:00+00:00",
}
PLATFORM_COUNTERS = RevenueCountersMessage(
    organization_id=None, start=datetime(2026, 11, 22, tzinfo=UTC), end=datetime(2026, 11, 23, tzinfo=UTC),
    revenue=(), transactions=0, failed_payments=0, updated_at=AT,
)  # fmt: skip
PLATFORM_COUNTERS_JSON = {
    "organizationId": None,
    "from": "2026-11-22T00:00:00+00:00",
    "to": "2026-11-23T00:00:00+00:00",
    "revenue": [],
    "transactions": 0,
    "failedPayments": 0,
    "updatedAt": "2026-11-22T10:00:00+00:00",
}


def over_the_bus(message: LiveMessage) -> dict[str, Any]:
    """The payload as a subscriber receives it: encoded to JSON text and decoded again."""
    return orjson.loads(orjson.dumps(message.to_json()))


def sketch_of(*ids: str) -> bytes:
    sketch = new_sketch()
    for visitor in ids:
        sketch.update(visitor)
    return sketch.serialize_compact()


CASES = [
    pytest.param(GOV_ALERT, GOV_ALERT_JSON, id="gov alert"),
    pytest.param(view_message(VIEW_EVENT, GOV_ALERT), VIEW_JSON, id="flagged view"),
    pytest.param(FRAUD_ALERT, FRAUD_ALERT_JSON, id="fraud alert"),
    pytest.param(gift_message(GIFT_ROW), GIFT_JSON, id="gift"),
    pytest.param(ORG_COUNTERS, ORG_COUNTERS_JSON, id="organization counters"),
    pytest.param(PLATFORM_COUNTERS, PLATFORM_COUNTERS_JSON, id="platform counters"),
]


@pytest.mark.parametrize(("message", "expected"), CASES)
def test_each_message_keeps_the_wire_format_and_reads_back_equal(
    message: LiveMessage, expected: dict[str, Any]
) -> None:
    assert message.to_json() == expected
    assert type(message).from_json(over_the_bus(message)) == message


def test_a_view_without_details_or_alert_sends_nulls() -> None:
    event = {"event_id": "e-2", "profile_id": PROFILE, "occurred_at": AT}
    message = view_message(event)
    assert message.to_json() == {
        "eventId": "e-2", "profileId": "11111111-1111-4111-8111-111111111111", "occurredAt": "2026-11-22T10:00:00+00:00",
        "country": None, "city": None, "deviceType": None, "browser": None, "os": None, "referrer": None,
        "utmSource": None, "isGov": False, "govAlert": None,
    }  # fmt: skip
    assert ProfileViewMessage.from_json(over_the_bus(message)) == message


async def test_an_engagement_snapshot_reports_the_day_the_batch_wrote() -> None:
    now = datetime(2026, 11, 22, 15, 0, tzinfo=UTC)  # 10:00 in New York: its day began at 05:00 UTC
    day = (ORG, PROFILE, day_start(now, "America/New_York"))
    totals = DayTotals(views=3, inquiries=1, visitors_hll=sketch_of("v1", "v2"), inquirers_hll=sketch_of("v1"),
                       favorites=-1, shares=2, clicks=4)  # fmt: skip
    [snapshot] = await engagement_snapshots([(ORG, PROFILE)], {ORG: "America/New_York"}, written={day: totals}, now=now)
    assert snapshot.to_json() == {
        "profileId": "11111111-1111-4111-8111-111111111111",
        "since": "2026-11-22T05:00:00+00:00",
        "views": 3,
        "uniqueVisitors": 2,
        "inquiries": 1,
        "conversionRate": 0.5,
        "favorites": -1,
        "shares": 2,
        "clicks": 4,
        "updatedAt": "2026-11-22T15:00:00+00:00",
    }
    assert EngagementSnapshotMessage.from_json(over_the_bus(snapshot)) == snapshot


def test_each_message_names_the_channels_its_subscribers_follow() -> None:
    profile, org = str(PROFILE), str(ORG)
    assert view_message(VIEW_EVENT).channels == (f"pg.views.{profile}",) == (ProfileViewMessage.channel_of(profile),)
    assert GOV_ALERT.channels == (f"pg.gov.{profile}",) == (GovAlertMessage.channel_of(profile),)
    assert gift_message(GIFT_ROW).channels == (f"pg.gifts.{profile}",) == (GiftPurchasedMessage.channel_of(profile),)
    assert EngagementSnapshotMessage.channel_of(profile) == f"pg.engagement.{profile}"
    assert FRAUD_ALERT.channels == (f"pg.fraud.{org}", "pg.fraud.all")
    assert (
        FraudAlertMessage.channel_of(org) == f"pg.fraud.{org}" and FraudAlertMessage.channel_of(None) == "pg.fraud.all"
    )
    assert ORG_COUNTERS.channels == (f"pg.revenue.{org}",) == (RevenueCountersMessage.channel_of(org),)
    assert PLATFORM_COUNTERS.channels == ("pg.revenue.all",) == (RevenueCountersMessage.channel_of(None),)


def test_publishing_sends_each_message_only_where_followed_encoding_it_once() -> None:
    view = view_message(VIEW_EVENT)
    sent = publishable([FRAUD_ALERT, view, GOV_ALERT], {f"pg.fraud.{ORG}", "pg.fraud.all", f"pg.gov.{PROFILE}"})
    assert [channel for channel, _ in sent] == [f"pg.fraud.{ORG}", "pg.fraud.all", f"pg.gov.{PROFILE}"]
    assert sent[0][1] is sent[1][1] and sent[0][1] == FRAUD_ALERT_JSON
    assert sent[2][1] == GOV_ALERT_JSON


def test_a_live_view_and_a_stored_one_map_to_the_same_profile_view() -> None:
    """`profileViews` reads the bus payload; `recentProfileViews` the stored row: one mapper."""
    stored = view_message(VIEW_EVENT, GOV_ALERT)
    live = to_profile_view(over_the_bus(stored))
    assert live == profile_view_of(stored)
    assert live.country == "GB" and live.gov_alert is not None and live.gov_alert.reasons == ["network on the gov list"]
