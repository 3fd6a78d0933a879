"""The events of a worker's claimed batch, read back from `events` by primary key.

The outbox row a worker claims carries only an event's key (organization, occurred_at,
event id); the claim itself, the profile events, the ledger, the fraud rules and the
invoices read the rest of the event back. Each key is one primary-key probe (`LIMIT 1`
keeps it a nested index lookup): written as a plain join of the keys to `events`,
PostgreSQL sort-merges the whole month partition instead, which took 0.5-1 s per batch on
a bench month of a million events and grows with the month.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

# The event of key row `k` (columns organization_id, occurred_at, event_id), as `e`.
EVENT_OF_KEY = """LATERAL (
    SELECT * FROM events e
    WHERE e.organization_id = k.organization_id AND e.occurred_at = k.occurred_at AND e.event_id = k.event_id
    LIMIT 1
) e"""

# A FROM item: the events of the keys passed as $1 (organizations), $2 (occurred_at) and
# $3 (event ids); see `keys_of`.
CLAIMED_EVENTS = f"""unnest($1::uuid[], $2::timestamptz[], $3::text[]) AS k(organization_id, occurred_at, event_id)
CROSS JOIN {EVENT_OF_KEY}"""


def keys_of(rows: Sequence[Mapping[str, Any]]) -> tuple[list[uuid.UUID], list[datetime], list[str]]:
    """The $1..$3 arguments of `CLAIMED_EVENTS` for these claimed rows."""
    return (
        [r["organization_id"] for r in rows],
        [r["occurred_at"] for r in rows],
        [r["event_id"] for r in rows],
    )
