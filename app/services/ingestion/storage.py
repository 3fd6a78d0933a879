"""Storing a batch: outbox, events, sessions and persons in one transaction, retried when that is safe.

Idempotency: the outbox's primary key (organization, eventId) is the ledger. Its rows go in
first and only the events it took as new are copied into `events`, so a repeat in a later
call is a duplicate, even with other fields changed (repeats inside one batch were set apart
by the service already). Events the worker has something to do for wake it with a NOTIFY,
delivered at commit. The months' partitions come from `app.partitions`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

import asyncpg

from app import partitions
from app.database import connection
from app.services.experiments import contract as experiments
from app.services.ingestion import sessions
from app.services.ingestion.enrich import STORED_COLUMNS, Row
from app.services.insights import persons
from app.vocabulary import OUTBOX_CHANNEL


async def _ensure_partitions(conn: asyncpg.Connection, rows: Iterable[Row]) -> None:
    """Late or back-filled events may fall in months the migration did not create.

    profile_events partitions are made too for events the worker will copy there, so a
    late profile event cannot become a poison message for the worker. Runs outside the
    transaction (DDL takes locks).
    """
    needed: set[partitions.Partition] = set()
    for row in rows:
        month = partitions.month_of(row.event.occurred_at)
        needed.add(("events", month))
        if row.pending:
            needed.add(("profile_events", month))
    await partitions.ensure(conn, needed)


async def store(organization_id: uuid.UUID, rows: list[Row]) -> set[str]:
    """Write the batch in one transaction; returns the ids that were new.

    Retried once when a partition vanished under the process cache (retention drops
    old months) or when PostgreSQL broke a deadlock: the transaction rolled back whole,
    so running it again cannot store anything twice.
    """
    rows.sort(key=lambda r: r.event.event_id)  # one lock order across concurrent batches
    async with connection() as conn:
        for attempt in (1, 2):
            await _ensure_partitions(conn, rows)
            try:
                return await _write(conn, organization_id, rows)
            except (asyncpg.CheckViolationError, asyncpg.DeadlockDetectedError) as exc:
                if attempt == 2 or not _is_retryable_write_error(exc):
                    raise
                partitions.forget()
    raise AssertionError("unreachable")


def _is_retryable_write_error(exc: Exception) -> bool:
    return isinstance(exc, asyncpg.DeadlockDetectedError) or partitions.is_missing_partition(exc)


async def _write(conn: asyncpg.Connection, organization_id: uuid.UUID, rows: list[Row]) -> set[str]:
    """Outbox (the idempotency ledger) first; only the events it took as new are stored."""
    async with conn.transaction():
        tracked = await experiments.tracked_types(conn, organization_id)
        pending = {r.event.event_id for r in rows if r.pending or experiments.is_tracked(r.event.type, tracked)}
        fresh_ids = await _insert_outbox(conn, organization_id, rows, pending)
        fresh = [row for row in rows if row.event.event_id in fresh_ids]
        if not fresh:
            return fresh_ids
        continued = await sessions.assign(conn, organization_id, fresh)
        await conn.copy_records_to_table(
            "events", records=[row.record(organization_id) for row in fresh], columns=STORED_COLUMNS
        )
        await sessions.upsert(conn, organization_id, fresh, continued)
        await persons.record(conn, organization_id, fresh)  # last: its row locks are held the shortest
        if any(row.event.event_id in pending for row in fresh):
            await conn.execute(f"NOTIFY {OUTBOX_CHANNEL}")  # delivered at commit
    return fresh_ids


_INSERT_OUTBOX = """
INSERT INTO outbox (organization_id, event_id, occurred_at, type, processed_at)
SELECT $1::uuid, e.event_id, e.occurred_at, e.type, CASE WHEN e.pending THEN NULL ELSE now() END
FROM unnest($2::text[], $3::timestamptz[], $4::text[], $5::bool[]) AS e(event_id, occurred_at, type, pending)
ON CONFLICT (organization_id, event_id) DO NOTHING
RETURNING event_id
"""


async def _insert_outbox(conn: asyncpg.Connection, organization_id: uuid.UUID, rows: list[Row], pending: set[str]) -> set[str]:
    """Events the worker has nothing to do for are stored already processed, so it never sees
    them; `pending` are the ids it has effects for (running experiments' types included)."""
    records = await conn.fetch(
        _INSERT_OUTBOX,
        organization_id,
        [r.event.event_id for r in rows],
        [r.event.occurred_at for r in rows],
        [r.event.type for r in rows],
        [r.event.event_id in pending for r in rows],
    )
    return {record["event_id"] for record in records}
