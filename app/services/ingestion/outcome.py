"""What a call to `track_events` reports back.

Every submitted event ends up counted exactly once: accepted, duplicate, dropped (Do-Not-Track
in "drop" mode) or rejected, a rejection naming the event's index, the GraphQL camelCase field
at fault and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Rejection:
    index: int
    field: str | None
    reason: str


@dataclass(slots=True)
class TrackOutcome:
    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
