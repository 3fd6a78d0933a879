"""Property-based tests of ingestion: whatever a client sends, the answer is structured.

Hypothesis generates arbitrary JSON-shaped events (any keys, any JSON values, nested
objects, hostile strings) and well-formed ones. The properties:

- validation never raises: each event is valid or rejected exactly once, with a reason;
- a well-formed event is always accepted, and stored exactly once however often it is sent;
- the service's counts always add up to the batch, and what it accepted is what is stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from app.auth import Role, Viewer
from app.database import connection
from app.services.buyer_emails import BUYER_EMAIL
from app.services.enrichment import GeoLocator
from app.services.ingestion import TrackOutcome, track_events, validation

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "\x00", "\ud800", "profile.viewed", "2026-01-01T00:00:00", "2026-01-01T00:00:00Z", "EUR", "not-a-uuid"]),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=12,
)
FIELD_NAMES = st.one_of(st.sampled_from(list(validation.EVENT_FIELDS)), st.text(max_size=12))
CONTEXT = st.one_of(
    JSON_VALUES,
    st.dictionaries(st.one_of(st.sampled_from(list(validation.CONTEXT_FIELDS)), st.text(max_size=8)), JSON_VALUES, max_size=5),
)
ARBITRARY_EVENT = st.one_of(
    JSON_VALUES,
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=8),
    st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=6).map(lambda d: {**d, "type": "page.viewed"}),
    st.builds(lambda d, c: {**d, "type": "profile.viewed", "context": c}, st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=4), CONTEXT),
)

PRINTABLE_ID = st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF, exclude_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=40).filter(
    lambda s: s.isprintable() and s.strip() == s
)
OFFSETS = st.sampled_from([timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8)])


# property keys whose values ingestion checks have their own tests: here any value is valid
CHECKED_KEYS = (BUYER_EMAIL, "$set", "$set_once")
PLAIN_KEY = st.text(max_size=10).filter(lambda s: "\x00" not in s and s not in CHECKED_KEYS)


@st.composite
def valid_events(draw: Any) -> dict[str, Any]:
    """What a correct client sends (no profile: profile ids are checked against the database)."""
    event: dict[str, Any] = {"type": draw(st.sampled_from(["page.viewed", "signup", "Signed Up", "$pageview"]))}
    if draw(st.booleans()):
        event["event_id"] = draw(PRINTABLE_ID)
    if draw(st.booleans()):
        moment = datetime.now(UTC) - timedelta(seconds=draw(st.integers(min_value=60, max_value=600 * 86400)))
        event["occurred_at"] = moment.astimezone(timezone(draw(OFFSETS))).isoformat().replace("+00:00", "Z")
    for key in ("user_id", "anonymous_id", "session_id"):
        if draw(st.booleans()):
            event[key] = draw(PRINTABLE_ID)
    if draw(st.booleans()):
        event["engagement_ms"] = draw(st.integers(min_value=0, max_value=validation.ENGAGEMENT_MAX_MS))
    if draw(st.booleans()):
        event["properties"] = draw(st.dictionaries(PLAIN_KEY, st.one_of(st.integers(-1000, 1000), st.text(max_size=20).filter(lambda s: "\x00" not in s), st.booleans()), max_size=5))
    if draw(st.booleans()):
        event["context"] = {
            "ip": draw(st.one_of(st.ip_addresses().map(str), st.text(max_size=20))),
            "user_agent": draw(st.text(max_size=60)),
            "url": draw(st.sampled_from(["https://example.com/p?utm_source=x", "not a url", "", "https://[bad"])),
            "dnt": draw(st.booleans()),
        }
    return event


def _validate(events: list[Any], *, domain: bool = False, money: bool = False) -> tuple[list[Any], TrackOutcome]:
    from app.settings import get_settings

    outcome = TrackOutcome()
    valid = validation.validate_all(
        events, now=datetime.now(UTC), settings=get_settings(), domain=domain, money_allowed=money, outcome=outcome
    )
    return valid, outcome


@hsettings(max_examples=400, deadline=None)
@given(st.lists(ARBITRARY_EVENT, max_size=6), st.booleans(), st.booleans())
def test_validation_never_raises_and_accounts_for_every_event(settings, events, domain, money):
    valid, outcome = _validate(events, domain=domain, money=money)
    indexes = sorted([e.index for e in valid] + [r.index for r in outcome.rejected])
    assert indexes == list(range(len(events)))
    for rejection in outcome.rejected:
        assert rejection.reason and isinstance(rejection.reason, str)
        assert rejection.field is None or (isinstance(rejection.field, str) and len(rejection.field) <= 80)
    for event in valid:
        assert event.occurred_at.tzinfo is not None
        assert len(event.properties.encode()) <= validation.PROPERTIES_MAX_BYTES
        assert "\x00" not in "".join(v or "" for v in event.context.values())


@hsettings(max_examples=300, deadline=None)
@given(st.lists(valid_events(), min_size=1, max_size=5))
def test_well_formed_events_are_always_valid(settings, events):
    valid, outcome = _validate(events)
    assert outcome.rejected == []
    assert len(valid) == len(events)


def _viewer(tenant: Any) -> Viewer:
    return Viewer(subject="org-admin", role=Role.ORG_ADMIN, organization_id=uuid.UUID(tenant.org_id))


async def _stored_ids(tenant: Any) -> set[str]:
    async with connection() as conn:
        rows = await conn.fetch("SELECT event_id FROM events WHERE organization_id = $1", uuid.UUID(tenant.org_id))
    return {r["event_id"] for r in rows}


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(st.one_of(ARBITRARY_EVENT, valid_events()), max_size=6))
async def test_the_service_answers_every_batch_with_counts_that_add_up(app, settings, tenant, batch):
    before = await _stored_ids(tenant)
    outcome = await track_events(viewer=_viewer(tenant), events=batch, geo=GeoLocator(None, None), settings=settings)
    assert outcome.accepted + outcome.duplicates + outcome.dropped + len(outcome.rejected) == len(batch)
    assert len(outcome.event_ids) == outcome.accepted
    assert await _stored_ids(tenant) - before == set(outcome.event_ids)


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(batch=st.lists(valid_events(), min_size=1, max_size=5))
async def test_well_formed_events_are_accepted_once_however_often_they_are_sent(app, settings, tenant, batch):
    batch = [{**event, "event_id": f"prop-{uuid.uuid4()}"} for event in batch]
    first = await track_events(viewer=_viewer(tenant), events=batch, geo=GeoLocator(None, None), settings=settings)
    assert first.rejected == [] and first.accepted + first.dropped == len(batch)
    again = await track_events(viewer=_viewer(tenant), events=batch, geo=GeoLocator(None, None), settings=settings)
    assert again.accepted == 0 and again.duplicates + again.dropped == len(batch)
