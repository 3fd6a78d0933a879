"""Gov alerts: every processed profile view is checked with the gov detector; a view whose
confidence reaches its organization's threshold is flagged and recorded as an alert.

Writing (the worker, inside the batch's transaction): `assess_views` checks the claimed
views before `profile_analytics.apply_events` inserts them, so the flag (`is_gov`) is part of
the profile event from the start; `record_alerts` then writes one alert per view that was new
in this batch, and a `gov_alert` notification for each of them in the same transaction. The
alert's key is the view's event id: effects stay exactly-once.

The check uses the raw IP while ingestion kept it; when it did not (IP retention 0,
Do-Not-Track) it falls back to the network ingestion recorded (AS number and organization),
and says so in the reasons. Alerts flag; they never block or drop anything.

An alert describes the network, never the person: no IP address or visitor id is kept.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import asyncpg
import orjson

from app.auth import ReadableProfile, Viewer, administered_organization, readable_profile
from app.consumers import Batch, Consumer
from app.database import connection
from app.errors import BadInput, NotFound
from app.live_messages import GovAlertMessage
from app.runners import QueryRunner, Tenant
from app.services.gov_detection import GovCheck, GovDetector
from app.services.notifications import enqueue_notifications
from app.services.notifications.kinds import GOV_ALERT
from app.timebuckets import RangeSpec, TimeRange, resolve_range, utcnow
from app.vocabulary import (
    GOV_ALERTS,
    GOV_ASSESSMENT,
    PROFILE_ANALYTICS,
    PROFILE_VIEWED,
)
from models.organizations import Organization

MIN_THRESHOLD = 0.05  # below this nearly every network would alert: a typo, not a policy
MAX_ALERTS = 500

# -- writing: the worker's checks -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GovFinding:
    """A view at or above its organization's threshold."""

    check: GovCheck
    threshold: float


ViewKey = tuple[uuid.UUID, str]  # (organization_id, event_id)


async def assess_views(
    conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]], detector: GovDetector
) -> dict[ViewKey, GovFinding]:
    """The claimed views that reach their organization's threshold, by (organization, event id)."""
    views = [r for r in rows if r["type"] == PROFILE_VIEWED and r["profile_id"] is not None]
    if not views:
        return {}
    thresholds = await _thresholds(conn, {r["organization_id"] for r in views})
    findings: dict[ViewKey, GovFinding] = {}
    for row in views:
        threshold = thresholds.get(row["organization_id"])
        if threshold is None:
            continue  # organization deleted meanwhile: nothing to alert
        check = check_view(detector, row)
        if check.confidence >= threshold:
            findings[(row["organization_id"], row["event_id"])] = GovFinding(check, threshold)
    return findings


def check_view(detector: GovDetector, row: Mapping[str, Any]) -> GovCheck:
    """The raw IP when ingestion kept it, else the network it recorded."""
    ip = row["ip"]
    if ip:
        try:
            return detector.check_ip(str(ip))
        except BadInput:  # not an address: ingestion validated it, but never fail a batch
            pass
    country = row["country"]
    return detector.check_recorded_network(
        asn=row["asn"], organization=row["as_org"], country=country.strip() if country else None
    )


async def _thresholds(conn: asyncpg.Connection, org_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, float]:
    rows = await conn.fetch(
        "SELECT id, gov_alert_threshold FROM organizations WHERE id = ANY($1::uuid[])", list(org_ids)
    )
    return {r["id"]: float(r["gov_alert_threshold"]) for r in rows}


ALERT_COLUMNS = (
    ("organization_id", "uuid"),
    ("event_id", "text"),
    ("profile_id", "uuid"),
    ("occurred_at", "timestamptz"),
    ("confidence", "real"),
    ("threshold", "real"),
    ("network_name", "text"),
    ("asn", "bigint"),
    ("country", "text"),
    ("city", "text"),
    ("device_type", "text"),
    ("browser", "text"),
    ("os", "text"),
)
_names = ", ".join(name for name, _ in ALERT_COLUMNS)
_arrays = ", ".join(f"${i}::{kind}[]" for i, (_, kind) in enumerate(ALERT_COLUMNS, start=1))
_n = len(ALERT_COLUMNS)
# text[][] cannot hold ragged lists, so reasons and signals travel as one JSON array each.
INSERT_ALERTS = f"""
INSERT INTO gov_alerts ({_names}, reasons, signals)
SELECT {_names}, ARRAY(SELECT jsonb_array_elements_text(a.r)), ARRAY(SELECT jsonb_array_elements_text(a.s))
FROM unnest({_arrays}, ${_n + 1}::jsonb[], ${_n + 2}::jsonb[])
     AS a({_names}, r, s)
ON CONFLICT DO NOTHING
RETURNING {_names}, reasons, signals, raised_at
"""


async def record_alerts(
    conn: asyncpg.Connection, views: Sequence[Mapping[str, Any]], findings: Mapping[ViewKey, GovFinding]
) -> list[GovAlertMessage]:
    """Write an alert for each new flagged view; returns those written, to be sent live."""
    flagged = [(v, findings[key]) for v in views if (key := (v["organization_id"], v["event_id"])) in findings]
    if not flagged:
        return []
    rows = [_alert_row(view, finding) for view, finding in flagged]
    columns = [[row[name] for row in rows] for name, _ in ALERT_COLUMNS]
    reasons = [orjson.dumps(f.check.reasons).decode() for _, f in flagged]
    signals = [orjson.dumps(f.check.signals).decode() for _, f in flagged]
    inserted = [_alert_of(r) for r in await conn.fetch(INSERT_ALERTS, *columns, reasons, signals)]
    await enqueue_notifications(conn, kind=GOV_ALERT, notifications=[(a.organization_id, a.to_json()) for a in inserted])
    return inserted


def _alert_row(view: Mapping[str, Any], finding: GovFinding) -> dict[str, Any]:
    check = finding.check
    country = check.country or view.get("country")
    return {
        "organization_id": view["organization_id"],
        "event_id": view["event_id"],
        "profile_id": view["profile_id"],
        "occurred_at": view["occurred_at"],
        "confidence": check.confidence,
        "threshold": finding.threshold,
        "network_name": check.organization,
        "asn": check.asn,
        "country": country.strip() if country else None,
        "city": view.get("city"),
        "device_type": view.get("device_type"),
        "browser": view.get("browser"),
        "os": view.get("os"),
    }


# -- the alert (app/live_messages.GovAlertMessage), as stored, queried and pushed -------------


def _alert_of(row: Mapping[str, Any]) -> GovAlertMessage:
    country = row["country"]
    return GovAlertMessage(
        event_id=row["event_id"],
        organization_id=row["organization_id"],
        profile_id=row["profile_id"],
        occurred_at=row["occurred_at"].astimezone(UTC),
        raised_at=row["raised_at"].astimezone(UTC),
        confidence=_rounded(row["confidence"]),
        threshold=_rounded(row["threshold"]),
        network_name=row["network_name"],
        asn=row["asn"],
        country=country.strip() if country else None,
        city=row["city"],
        device_type=row["device_type"],
        browser=row["browser"],
        os=row["os"],
        reasons=tuple(row["reasons"]),
        signals=tuple(row["signals"]),
    )


def _rounded(value: float) -> float:
    """`real` columns return 0.699999988; the detector's confidences have three decimals."""
    return round(float(value), 3)


# -- reading ------------------------------------------------------------------------------------

ALERTS_IN_RANGE = """
SELECT *, count(*) OVER () AS total
FROM gov_alerts
WHERE organization_id = $1 AND profile_id = $2 AND occurred_at >= $3 AND occurred_at < $4
ORDER BY occurred_at DESC, event_id DESC
LIMIT $5
"""
ALERTS_BY_EVENT = """
SELECT * FROM gov_alerts WHERE organization_id = $1 AND event_id = ANY($2::text[])
"""


@dataclass(frozen=True, slots=True)
class GovAlertList:
    profile_id: uuid.UUID
    range: TimeRange
    total: int
    alerts: list[GovAlertMessage]


class GovAlertsQuery(QueryRunner[ReadableProfile, TimeRange, GovAlertList]):
    """A profile's gov alerts in a range, newest first, with the range's total."""

    kind = "gov_alerts"

    async def scope(self) -> ReadableProfile:
        return await readable_profile(self.viewer, self.inputs["profile_id"])

    def validate(self, profile: ReadableProfile) -> None:
        if not 1 <= self.inputs["limit"] <= MAX_ALERTS:
            raise BadInput(f"limit must be between 1 and {MAX_ALERTS}", field="limit")

    def plan(self, profile: ReadableProfile) -> TimeRange:
        return resolve_range(self.inputs["time_range"], profile.timezone, now=self.inputs.get("now") or utcnow())

    def tenant(self, profile: ReadableProfile) -> Tenant:
        return Tenant(profile.organization_id, profile.id)

    async def fetch(self, profile: ReadableProfile, span: TimeRange) -> GovAlertList:
        async with connection() as conn:
            rows = await conn.fetch(
                ALERTS_IN_RANGE, profile.organization_id, profile.id, span.start, span.end, self.inputs["limit"]
            )
        total = int(rows[0]["total"]) if rows else 0  # the window count is taken before LIMIT
        return GovAlertList(profile.id, span, total, [_alert_of(r) for r in rows])


async def gov_alerts(
    *, viewer: Viewer, profile_id: uuid.UUID | str, time_range: RangeSpec, limit: int = 100
) -> GovAlertList:
    """A profile's gov alerts (its provider, its organization's admins, platform admins)."""
    return await GovAlertsQuery(viewer=viewer, profile_id=profile_id, time_range=time_range, limit=limit).run()


async def alerts_of_views(organization_id: uuid.UUID, event_ids: Sequence[str]) -> dict[str, GovAlertMessage]:
    """The alerts of some views, by event id (to explain flagged views in a listing)."""
    if not event_ids:
        return {}
    async with connection() as conn:
        rows = await conn.fetch(ALERTS_BY_EVENT, organization_id, list(event_ids))
    return {r["event_id"]: _alert_of(r) for r in rows}


# -- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GovAlertSettings:
    organization_id: uuid.UUID
    threshold: float


REFUSAL = "gov alert settings need an organization admin token"


async def alert_settings(*, viewer: Viewer, organization_id: uuid.UUID | str | None = None) -> GovAlertSettings:
    """An organization's threshold (organization admins, platform admins naming it)."""
    org = await administered_organization(viewer, organization_id, refusal=REFUSAL)
    return await _read_settings(org)


async def update_alert_settings(
    *, viewer: Viewer, threshold: float, organization_id: uuid.UUID | str | None = None
) -> GovAlertSettings:
    """Change the threshold; views processed from now on are judged by the new one."""
    org = await administered_organization(viewer, organization_id, refusal=REFUSAL)
    if not isinstance(threshold, int | float) or not math.isfinite(threshold) or not MIN_THRESHOLD <= threshold <= 1:
        raise BadInput(f"threshold must be a number from {MIN_THRESHOLD} to 1", field="threshold")
    await Organization.filter(id=org).update(gov_alert_threshold=float(threshold))
    return await _read_settings(org)


async def _read_settings(org: uuid.UUID) -> GovAlertSettings:
    found = await Organization.get_or_none(id=org)
    if found is None:
        raise NotFound("organization not found", field="organizationId")
    return GovAlertSettings(org, _rounded(found.gov_alert_threshold))


# --------------------------------------------------------------------------- the worker's side


class ViewAssessment(Consumer):
    """Before the views are stored: which reach their organization's gov threshold, so the
    flag is part of each stored view."""

    name = GOV_ASSESSMENT
    event_types = frozenset({PROFILE_VIEWED})

    def __init__(self, detector: GovDetector) -> None:
        self.detector = detector

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> dict[ViewKey, GovFinding]:
        return await assess_views(conn, rows, self.detector)


class AlertRecorder(Consumer):
    """After the views are stored: an alert for each new flagged view, sent to its profile."""

    name = GOV_ALERTS
    after_mark = True

    async def apply(
        self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch
    ) -> list[GovAlertMessage]:
        views = batch.effects[PROFILE_ANALYTICS].views
        return await record_alerts(conn, views, batch.effects[GOV_ASSESSMENT])

    def channels(self, batch: Batch) -> set[str]:
        return {alert.channel for alert in batch.effects[self.name]}

    def feed(self, batch: Batch, followed: Collection[str]) -> list[GovAlertMessage]:
        return [alert for alert in batch.effects[self.name] if alert.channel in followed]
