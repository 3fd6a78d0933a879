"""What ingestion knows of experiments: the `experiment.exposed` event's properties, and the
event types running experiments read (left pending for the worker). Kept free of the
statistics' imports: ingestion loads it on its hot path."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg

from app.vocabulary import EXPERIMENT_EXPOSED

KEY_MAX_CHARS = 100
ALL_EVENTS = "$all"  # a metric over every event (the insight grammar's name for it)

_TRACKED = """
SELECT COALESCE(array_agg(DISTINCT t), '{}') FROM experiments, unnest(tracked_types) AS t
WHERE organization_id = $1 AND status = 'running'
"""


def check_properties(event_type: str, properties: Any) -> tuple[str, str] | None:
    """An exposure names its experiment and variant: (field, reason) of the first bad one, or None."""
    if event_type != EXPERIMENT_EXPOSED:
        return None
    props = properties if isinstance(properties, Mapping) else {}
    for name in ("experimentKey", "variant"):
        value = props.get(name)
        if not isinstance(value, str) or not value.strip() or len(value) > KEY_MAX_CHARS:
            return f"properties.{name}", f"{EXPERIMENT_EXPOSED} needs properties.{name}: text of 1 to {KEY_MAX_CHARS} characters"
    return None


async def tracked_types(conn: asyncpg.Connection, organization_id: uuid.UUID) -> frozenset[str]:
    """The event types the organization's running experiments read (`$all`: every type)."""
    return frozenset(await conn.fetchval(_TRACKED, organization_id))


def is_tracked(event_type: str, tracked: frozenset[str]) -> bool:
    return bool(tracked) and (event_type in tracked or ALL_EVENTS in tracked)
