"""The scheduler: every domain's periodic jobs (`app.jobs.Job`), run inside every worker process.

Every `settings.jobs_interval_seconds` (hourly by default; the first run after
`jobs_initial_delay_seconds`) it runs the jobs of `JOBS`, in order: today the privacy and
retention jobs (`privacy.JOBS`: raw IPs past each organization's ipRetentionDays become keyed
hashes; raw data past eventRetentionDays is purged once processed; keys of finished periods
are deleted), then every cohort's members are computed again (`cohorts.JOBS`). A domain with
jobs adds one line to `JOBS`.

Any number of worker processes may run it: a PostgreSQL advisory lock lets one run at a
time, and the others skip that round. A failed run is logged and retried next round.

`python -m workers.scheduler --once` runs the jobs once and prints what they did
(for cron, or by hand after changing retention).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from app import logs
from app.database import close_database, connection, init_database
from app.jobs import Job
from app.services import privacy
from app.services.insights import cohorts
from app.settings import Settings

log = logging.getLogger("pulsegraph.scheduler")

JOBS_LOCK_KEY = 7_214_002  # advisory lock id: one job run at a time across processes


JOBS: tuple[Job, ...] = (*privacy.JOBS, *cohorts.JOBS)


@dataclass(slots=True)
class JobsReport:
    ran: bool = False  # False when another process held the lock
    results: dict[str, Any] = field(default_factory=dict)  # what each job returned, by its name


async def run_jobs_once(settings: Settings, now: datetime | None = None, jobs: tuple[Job, ...] = JOBS) -> JobsReport:
    """Run every job once, in order, unless another process is running them right now."""
    now = now or datetime.now(UTC)
    report = JobsReport()
    async with connection() as lock_conn:
        if not await lock_conn.fetchval("SELECT pg_try_advisory_lock($1)", JOBS_LOCK_KEY):
            return report
        try:
            report.ran = True
            for job in jobs:
                report.results[job.name] = await job.run(now, settings)
        finally:
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", JOBS_LOCK_KEY)
    return report


class Scheduler:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stopping = asyncio.Event()

    async def run(self) -> None:
        """Run the jobs every interval until `stop()`; never raises (jobs are retried)."""
        delay = max(0, self.settings.jobs_initial_delay_seconds)
        while not await self._sleep(delay):
            try:
                report = await run_jobs_once(self.settings)
                log.debug("scheduled jobs: %s", report)
            except Exception:  # noqa: BLE001 - a failed run must not stop the worker
                log.exception("scheduled privacy/retention jobs failed; retrying next round")
            delay = max(1, self.settings.jobs_interval_seconds)

    async def stop(self) -> None:
        self._stopping.set()

    async def _sleep(self, seconds: float) -> bool:
        """True when stopped."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        return self._stopping.is_set()


async def run_with_jobs(worker: Any, settings: Settings) -> None:
    """Run an outbox worker with the scheduler beside it; both stop when the worker does."""
    if not settings.jobs_enabled:
        await worker.run()
        return
    scheduler = Scheduler(settings)
    task = asyncio.create_task(scheduler.run(), name="pulsegraph-scheduler")
    try:
        await worker.run()
    finally:
        await scheduler.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _once(settings: Settings) -> JobsReport:
    await init_database(settings, global_fallback=False)
    try:
        return await run_jobs_once(settings)
    finally:
        await close_database()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m workers.scheduler", description=__doc__.split("\n")[0])
    parser.add_argument("--once", action="store_true", required=True, help="run the jobs once and exit")
    parser.parse_args()
    logs.configure(logs.level_name())
    report = asyncio.run(_once(Settings.from_env()))
    print(json.dumps(asdict(report), default=str, indent=2))


if __name__ == "__main__":
    main()
