"""Monthly partitions of the raw tables (`events`, `profile_events`), made when first needed.

The migrations create the months around their run; late or back-filled events, and months
that retention dropped, get their partition when the first event for them is written. Each
process remembers the partitions it has ensured, so a month costs one round trip per process.
A rollback may undo a partition made inside the rolled-back transaction, and retention drops
whole months: after either, `forget()` makes this process check again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

import asyncpg

Partition = tuple[str, date]  # (parent table, first day of the month)

_ensured: set[Partition] = set()

_ENSURE = """
SELECT pulsegraph_ensure_month_partition(p.parent, p.month)
FROM unnest($1::text[], $2::timestamptz[]) AS p(parent, month)
"""


def month_of(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


async def ensure(conn: asyncpg.Connection, needed: Iterable[Partition]) -> None:
    """Create the partitions in `needed` that this process has not ensured yet."""
    missing = sorted(set(needed) - _ensured)
    if not missing:
        return
    await conn.execute(
        _ENSURE, [parent for parent, _ in missing], [datetime(m.year, m.month, 1, tzinfo=UTC) for _, m in missing]
    )
    _ensured.update(missing)


def forget() -> None:
    """Check every partition again next time (after a rollback, or after retention dropped some)."""
    _ensured.clear()


def is_missing_partition(exc: BaseException) -> bool:
    """A write that found no partition for its row: a month this process thought it had."""
    return isinstance(exc, asyncpg.CheckViolationError) and "no partition" in str(exc)
