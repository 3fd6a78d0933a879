"""What a domain adds to the outbox worker: a consumer of claimed batches.

The worker claims a batch of outbox rows and, in ONE transaction, hands the events found to
every registered consumer (`workers/consumers.py` lists them, in order), marks the rows
processed and commits; so a batch's effects and its processed mark commit together. A
consumer that takes row locks many workers contend for (rollups) sets `after_mark`: it runs
after the mark, last, so its locks are held the shortest time.

After the commit the worker asks every consumer which live channels its effects concern,
asks the event bus which of them somebody follows, and sends their messages: first what
consumers build from memory (`feed`), then what they read from the database (`totals`).
Consumers return typed live messages (app/live_messages.py); the worker turns them into
the bus's JSON. Consumers see each other's effects in `Batch.effects`, by consumer name.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import asyncpg

from app.live_messages import LiveMessage


@dataclass
class Batch:
    """A claimed batch's events (rows of `events` with their outbox keys) and what each
    consumer made of them."""

    rows: Sequence[Mapping[str, Any]]
    effects: dict[str, Any] = field(default_factory=dict)


class Consumer:
    """One domain's part of processing a batch. Override `apply`; the live hooks send nothing
    unless overridden."""

    name: ClassVar[str]
    event_types: ClassVar[Collection[str] | None] = None  # None: every event of the batch
    after_mark: ClassVar[bool] = False

    def taken(self, rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        """The rows of the event types this consumer takes."""
        if self.event_types is None:
            return list(rows)
        return [row for row in rows if row["type"] in self.event_types]

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> Any:
        """Apply `rows` inside the batch's transaction; what it returns is `batch.effects[name]`."""
        raise NotImplementedError

    def channels(self, batch: Batch) -> set[str]:
        """Every channel this consumer's live messages for the batch may go to."""
        return set()

    def feed(self, batch: Batch, followed: Collection[str]) -> list[LiveMessage]:
        """Messages built from memory, sent first (what a live feed waits for). Only messages
        to `followed` channels are sent, so a consumer may skip building the others."""
        return []

    async def totals(self, batch: Batch, followed: Collection[str]) -> list[LiveMessage]:
        """Messages that read the database, sent after the feed; built only for `followed` channels."""
        return []
