"""What a domain adds to the scheduler: jobs run every round in every worker process.

A job is a name and a coroutine taking the round's clock and the settings; what it returns
(a count, a report) is what the round reports under that name. `workers/scheduler.py` lists
the jobs in the order a round runs them; an advisory lock lets one process run a round.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.settings import Settings


@dataclass(frozen=True, slots=True)
class Job:
    name: str
    run: Callable[[datetime, Settings], Awaitable[Any]]
