"""Event ingestion's entry points: one call validates, dedupes, enriches and stores a batch.

Every rule about what an accepted event is lives in this package. The GraphQL resolvers and
the REST beacon endpoints convert their input to plain dicts with snake_case keys (the field
names of `TrackEventInput`) and call `track_events`; nothing else writes events.

Decisions a client can notice (the others are with the step that makes them: `validation`,
`enrich`, `storage`):

- One bad event never fails the batch: it is reported as a `Rejection` (index, the
  GraphQL camelCase field, reason) and the others are stored. Only auth, the batch size
  and an unreachable database refuse the whole call.
- Ingestion keys are public (they ship in page JavaScript and `?key=` URLs), so money
  events are only accepted from credentials that may publish domain events (service or
  organization admin tokens), through either mutation.
- Do-Not-Track, "drop" mode: not stored, counted in `dropped` ("anonymize" mode: `enrich`).
- An organization with `ipRetentionDays = 0` never has a raw IP stored: it is replaced
  by its keyed hash (`ip_hash`) after enrichment (see app/services/privacy.py).
- A repeat of an eventId within one batch is a duplicate, as in a later call (`storage`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from app.auth import Viewer, require_service, require_writer
from app.database import connection, unavailable_on_database_errors
from app.errors import BadInput, Forbidden, UserError
from app.result_cache import result_cache
from app.services import privacy
from app.services.enrichment import GeoLocator, salt_day
from app.services.ingestion.enrich import daily_salt, enrich_event
from app.services.ingestion.outcome import TrackOutcome
from app.services.ingestion.storage import store
from app.services.ingestion.validation import ValidEvent, keep_known_profiles, validate_all
from app.settings import Settings


def authorize(*, viewer: Viewer, domain: bool) -> uuid.UUID:
    """Domain events drive revenue and rollups, so only backends may publish them."""
    return require_service(viewer) if domain else require_writer(viewer)


def check_batch_size(*, count: int, settings: Settings) -> None:
    """Refuse oversized batches whole, before they cost rate-limit tokens or queries."""
    if count > settings.max_batch_size:
        raise BadInput(
            f"at most {settings.max_batch_size} events per call, got {count}; split the batch", field="events"
        )


def rate_limit_key(viewer: Viewer) -> str:
    """The credential, not the caller's address: one key shared by many browsers is one budget."""
    return f"key:{viewer.ingestion_key_id}" if viewer.ingestion_key_id else viewer.subject


async def track_events(
    *,
    viewer: Viewer,
    events: Sequence[Mapping[str, Any]],
    geo: GeoLocator,
    settings: Settings,
    client_ip: str | None = None,
    domain: bool = False,
) -> TrackOutcome:
    """Store the valid events of a batch durably, once each, and report what happened to the rest."""
    organization_id = authorize(viewer=viewer, domain=domain)
    check_batch_size(count=len(events), settings=settings)
    now = datetime.now(UTC)
    outcome = TrackOutcome()
    valid = validate_all(
        events, now=now, settings=settings, domain=domain, money_allowed=_may_publish_money(viewer), outcome=outcome
    )
    if not valid:
        return outcome
    async with unavailable_on_database_errors():
        known, salt = await _lookups(organization_id, valid, now)
    valid = keep_known_profiles(valid, known, outcome)
    valid = _apply_dnt(valid, settings, outcome)
    valid = _drop_repeats(valid, outcome)
    if not valid:
        return _finish(outcome, valid, set())
    org = str(organization_id)
    rows = [enrich_event(event, org=org, client_ip=client_ip, geo=geo, salt=salt) for event in valid]
    async with unavailable_on_database_errors():
        await privacy.pseudonymize_at_ingest(organization_id, rows, now=now, settings=settings)
        fresh = await store(organization_id, rows)
    if fresh:
        # Reports count the open hour from raw events, processed or not: this process's next
        # answer includes them. Other processes hear of them once the worker has processed them.
        result_cache().bump([organization_id])
    return _finish(outcome, valid, fresh)


def _may_publish_money(viewer: Viewer) -> bool:
    """The same credentials that may publish domain events (see the module docstring)."""
    try:
        require_service(viewer)
    except UserError:
        return False
    return True


def _finish(outcome: TrackOutcome, valid: list[ValidEvent], fresh: set[str]) -> TrackOutcome:
    """Every submitted event ends up counted exactly once: accepted, duplicate, dropped or rejected."""
    outcome.event_ids = [e.event_id for e in valid if e.event_id in fresh]
    outcome.accepted = len(outcome.event_ids)
    outcome.duplicates += len(valid) - outcome.accepted
    outcome.rejected.sort(key=lambda r: r.index)
    return outcome


def _apply_dnt(valid: list[ValidEvent], settings: Settings, outcome: TrackOutcome) -> list[ValidEvent]:
    """Drop mode honours Do-Not-Track by not storing at all; anonymize mode is applied in enrich_event."""
    if settings.dnt_mode != "drop":
        return valid
    kept = [event for event in valid if not event.dnt]
    outcome.dropped += len(valid) - len(kept)
    return kept


def _drop_repeats(valid: list[ValidEvent], outcome: TrackOutcome) -> list[ValidEvent]:
    """The second occurrence of an eventId in one batch is a duplicate, as it would be in the next call."""
    seen: set[str] = set()
    kept: list[ValidEvent] = []
    for event in valid:
        if event.event_id in seen:
            outcome.duplicates += 1
        else:
            seen.add(event.event_id)
            kept.append(event)
    return kept


async def _lookups(organization_id: uuid.UUID, valid: list[ValidEvent], now: datetime) -> tuple[set[uuid.UUID], bytes]:
    """Everything validation and enrichment need from the database, on one connection."""
    wanted = list({e.profile_id for e in valid if e.profile_id is not None})
    async with connection() as conn:
        known = await _open_organization_profiles(conn, organization_id, wanted)
        salt = await daily_salt(conn, salt_day(now))
    return known, salt


ORGANIZATION_AND_PROFILES = """
SELECT o.status,
       ARRAY(SELECT p.id FROM profiles p WHERE p.organization_id = o.id AND p.id = ANY($2::uuid[])) AS known
FROM organizations o WHERE o.id = $1
"""


async def _open_organization_profiles(
    conn: asyncpg.Connection, organization_id: uuid.UUID, wanted: list[uuid.UUID]
) -> set[uuid.UUID]:
    """The batch's profiles that belong to the viewer's organization, in the same query that
    refuses a suspended organization (a platform admin's suspension stops its data at once)."""
    row = await conn.fetchrow(ORGANIZATION_AND_PROFILES, organization_id, wanted)
    if row is None:
        return set()
    if row["status"] == "suspended":
        raise Forbidden("this organization is suspended: its events are refused until a platform admin reinstates it")
    return set(row["known"])

