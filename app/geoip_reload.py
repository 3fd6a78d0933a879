"""Follow GeoIP databases replaced on disk while the process runs.

`pulsegraph geoip update` swaps new files in atomically; every API and worker process then
picks them up on its next look, without a restart. The look is a background task (a stat of
each file every few seconds), so lookups on the ingestion path never touch the filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

log = logging.getLogger("pulsegraph.geoip")


class Reloadable(Protocol):
    def reload_if_changed(self) -> bool: ...


async def reload_periodically(targets: Sequence[Reloadable], interval_seconds: float) -> None:
    """Until cancelled; a failing target is logged and asked again next time."""
    while True:
        await asyncio.sleep(interval_seconds)
        for target in targets:
            try:
                target.reload_if_changed()
            except Exception:  # noqa: BLE001 - the current files keep answering
                log.exception("GeoIP reload check failed; trying again in %.1fs", interval_seconds)


@contextlib.asynccontextmanager
async def geoip_reloading(targets: Sequence[Reloadable], interval_seconds: float) -> AsyncIterator[None]:
    """Run `reload_periodically` for the duration of the block (not at all when the
    interval is 0 or less)."""
    if interval_seconds <= 0:
        yield
        return
    task = asyncio.create_task(reload_periodically(targets, interval_seconds), name="pulsegraph-geoip-reload")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
