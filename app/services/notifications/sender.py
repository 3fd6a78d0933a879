"""The worker's step: claim due deliveries, send them, keep every attempt.

A claim (`FOR UPDATE SKIP LOCKED`, so several workers share the queue) counts the attempt
and moves the delivery's next_attempt_at past the time a send may take, then commits: the
send happens outside any transaction, and a worker that dies mid-send leaves the delivery
due again (at least once, with the same webhook-id). The outcome is recorded afterwards:
delivered on a 2xx answer (webhooks) or an accepting SMTP server (email); otherwise due
again after base * 2^(attempt-1) seconds (capped, the wait drawn between half of it and all
of it, so receivers coming back are not hit by every delivery at once), or dead after its
max_attempts.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from app.database import transaction
from app.services.notifications import destinations, mail, signing
from app.services.notifications.channels import EMAIL
from app.settings import Settings

log = logging.getLogger("pulsegraph.notifications")

EXCERPT_CHARS = 500
USER_AGENT = "pulsegraph-webhooks"

CLAIM = """
WITH due AS (
    SELECT d.id FROM notification_deliveries d
    JOIN notification_channels c ON c.id = d.channel_id AND c.enabled
    WHERE d.status = 'pending' AND d.next_attempt_at <= COALESCE($3, now())
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE notification_deliveries d SET attempts = d.attempts + 1, next_attempt_at = now() + $2::interval
FROM due, notification_channels c
WHERE d.id = due.id AND c.id = d.channel_id
RETURNING d.id, d.kind, d.payload, d.attempts, d.max_attempts, d.created_at,
          c.kind AS channel_kind, c.name AS channel_name, c.url, c.secret, c.recipients
"""
RECORD_ATTEMPT = """
INSERT INTO notification_attempts (delivery_id, number, organization_id, attempted_at, status_code, error, duration_ms,
                                   response_excerpt)
SELECT d.id, $2, d.organization_id, $3, $4, $5, $6, $7 FROM notification_deliveries d WHERE d.id = $1
ON CONFLICT DO NOTHING
"""
DELIVERED = """
UPDATE notification_deliveries SET status = 'delivered', delivered_at = now(), last_error = NULL
WHERE id = $1 AND status = 'pending'
"""
FAILED = """
UPDATE notification_deliveries
SET status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'pending' END,
    next_attempt_at = now() + $3::interval, last_error = $2
WHERE id = $1 AND status = 'pending'
"""


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt as the receiver answered it."""

    started_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None  # None: delivered
    excerpt: str | None


async def send_due(settings: Settings, client: httpx.AsyncClient | None = None) -> int:
    """Send every delivery due when the call began, batch after batch, each at most once (one
    whose short backoff ends meanwhile waits for the next call); returns how many were attempted."""
    total = 0
    own = client is None
    http = client or new_client(settings)
    due_by: datetime | None = None
    try:
        while True:
            claimed, due_by = await _claim(settings, due_by)
            if not claimed:
                return total
            outcomes = await asyncio.gather(*(attempt(row, settings, http) for row in claimed))
            for row, outcome in zip(claimed, outcomes, strict=True):
                await _record(row, outcome, settings)
            total += len(claimed)
    finally:
        if own:
            await http.aclose()


def new_client(settings: Settings) -> httpx.AsyncClient:
    """Redirects are not followed (a redirect could point anywhere the check refused)."""
    return httpx.AsyncClient(timeout=settings.notification_timeout_seconds, follow_redirects=False, trust_env=False)


async def _claim(settings: Settings, due_by: datetime | None) -> tuple[list[asyncpg.Record], datetime]:
    """Claim deliveries due by `due_by` (the database's clock at the first claim of a call)."""
    lease = timedelta(seconds=2 * settings.notification_timeout_seconds + 30)
    async with transaction() as conn:
        due_by = due_by or await conn.fetchval("SELECT now()")
        return await conn.fetch(CLAIM, max(1, settings.notification_batch_size), lease, due_by), due_by


async def attempt(row: Mapping[str, Any], settings: Settings, client: httpx.AsyncClient) -> Outcome:
    started, clock = datetime.now(UTC), time.perf_counter()
    try:
        if row["channel_kind"] == EMAIL:
            code, error, excerpt = await _email(row, settings)
        else:
            code, error, excerpt = await _webhook(row, settings, client, started)
    except Exception as exc:  # never lose the attempt's record to an unexpected error
        log.exception("delivery %s: attempt failed", row["id"])
        code, error, excerpt = None, f"{type(exc).__name__}: {exc}", None
    return Outcome(started, round((time.perf_counter() - clock) * 1000), code, error, excerpt)


def webhook_body(row: Mapping[str, Any]) -> bytes:
    """The Standard Webhooks envelope: type, timestamp (when the notification was raised) and
    data; the same bytes on every attempt."""
    payload = row["payload"]
    data = orjson.loads(payload) if isinstance(payload, str | bytes) else payload
    return orjson.dumps({"type": row["kind"], "timestamp": row["created_at"].astimezone(UTC).isoformat(), "data": data})


async def _webhook(
    row: Mapping[str, Any], settings: Settings, client: httpx.AsyncClient, at: datetime
) -> tuple[int | None, str | None, str | None]:
    try:
        destination = await destinations.checked_destination(row["url"], settings)
    except destinations.RefusedDestination as exc:
        return None, f"refused: {exc}", None
    body = webhook_body(row)
    headers = {
        **signing.signed_headers(secret=row["secret"], message_id=str(row["id"]), at=at, body=body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    request = _pinned_request(client, destination, headers, body)
    try:
        response = await client.send(request)
    except httpx.TimeoutException as exc:
        return None, f"timeout: {type(exc).__name__}", None
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}", None
    excerpt = response.text[:EXCERPT_CHARS]
    if 200 <= response.status_code < 300:
        return response.status_code, None, excerpt
    return response.status_code, f"HTTP {response.status_code}", excerpt


def _pinned_request(
    client: httpx.AsyncClient, destination: destinations.Destination, headers: dict[str, str], body: bytes
) -> httpx.Request:
    """To the address that was checked, with the name in the Host header and for TLS (SNI and
    the certificate check), so the name is not resolved a second time."""
    url = httpx.URL(destination.url)
    return client.build_request(
        "POST", url.copy_with(host=str(destination.address)), headers={**headers, "host": url.netloc.decode()},
        content=body, extensions={"sni_hostname": destination.host},
    )  # fmt: skip


async def _email(row: Mapping[str, Any], settings: Settings) -> tuple[int | None, str | None, str | None]:
    payload = row["payload"]
    data = orjson.loads(payload) if isinstance(payload, str | bytes) else payload
    lines = [f"{key}: {value}" for key, value in data.items()]
    body = f"{row['kind']} notification for channel {row['channel_name']!r}\n\n" + "\n".join(lines) + "\n"
    message = mail.message(
        settings, to=row["recipients"], subject=f"[pulsegraph] {row['kind']}", body=body, message_id=str(row["id"])
    )
    result = await mail.send_mail(settings, message)
    return result.code, result.error, (result.reply or "")[:EXCERPT_CHARS] or None


def backoff(attempt_number: int, settings: Settings) -> timedelta:
    capped = min(settings.notification_backoff_max_seconds, settings.notification_backoff_base_seconds * 2 ** (attempt_number - 1))
    return timedelta(seconds=capped * random.uniform(0.5, 1.0))


async def _record(row: Mapping[str, Any], outcome: Outcome, settings: Settings) -> None:
    delivery_id: uuid.UUID = row["id"]
    async with transaction() as conn:
        await conn.execute(
            RECORD_ATTEMPT, delivery_id, row["attempts"], outcome.started_at, outcome.status_code,
            _clip(outcome.error), outcome.duration_ms, outcome.excerpt,
        )  # fmt: skip
        if outcome.error is None:
            await conn.execute(DELIVERED, delivery_id)
        else:
            await conn.execute(FAILED, delivery_id, _clip(outcome.error), backoff(row["attempts"], settings))


def _clip(text: str | None) -> str | None:
    return text[:EXCERPT_CHARS] if text else text
