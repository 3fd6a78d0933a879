"""Sessions: how long visits last, how many pages they see, how many bounce, where they enter
and leave.

Definitions (the README's insights section states them too):
- A session is what ingestion assigned (the client's sessionId, or 30 minutes of inactivity /
  24 hours end one); it belongs to the period in which its first event happened, and the range
  selects sessions by that first event.
- Duration: from its first to its last event (a one-event session lasts 0 seconds).
- Pages: its events that carry a URL; entry and exit pages are the first and last of them by
  event time (then arrival), without query string or fragment.
- A bounce is a session with exactly one event; the bounce rate is bounces / sessions.
Sessions are read from the events themselves (not the sessions table), so late events move a
session's start, end and pages like any other insight.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from app.services.insights.grammar import Sql
from app.services.insights.query import InsightRunner, InsightScope, Periods, fetch, periods
from app.timebuckets import Grain, RangeSpec, TimeRange

SESSION_SPAN = timedelta(hours=24)  # ingestion ends every session within a day
TOP_PAGES = 10


@dataclass(frozen=True, slots=True)
class SessionsQuery:
    organization_id: uuid.UUID | str
    range: RangeSpec
    grain: Grain = Grain.DAY


@dataclass(slots=True)
class SessionPeriod:
    start: datetime
    sessions: int = 0
    bounces: int = 0
    total_seconds: float = 0.0
    pages: int = 0

    @property
    def average_seconds(self) -> float:
        return self.total_seconds / self.sessions if self.sessions else 0.0

    @property
    def pages_per_session(self) -> float:
        return self.pages / self.sessions if self.sessions else 0.0

    @property
    def bounce_rate(self) -> float:
        return self.bounces / self.sessions if self.sessions else 0.0


@dataclass(slots=True)
class SessionMetrics:
    range: TimeRange
    grain: Grain
    total: SessionPeriod
    periods: list[SessionPeriod] = field(default_factory=list)
    entry_pages: list[tuple[str, int]] = field(default_factory=list)
    exit_pages: list[tuple[str, int]] = field(default_factory=list)


def statement(sql: Sql, org: uuid.UUID, span: Periods) -> str:
    """Per-session facts from its events, then per period (and the range as a whole) and the
    top entry and exit pages, in one statement over one scan."""
    page = "split_part(split_part(e.url, '#', 1), '?', 1)"
    order = "e.occurred_at, e.received_at, e.event_id"
    start, end = span.range.start, span.range.end
    return f"""
WITH per_session AS MATERIALIZED (
    SELECT min(e.occurred_at) AS started, max(e.occurred_at) AS ended, count(*) AS events, count(e.url) AS pages,
           (array_agg({page} ORDER BY {order}) FILTER (WHERE e.url IS NOT NULL))[1] AS entry,
           (array_agg({page} ORDER BY {order.replace(",", " DESC,")} DESC) FILTER (WHERE e.url IS NOT NULL))[1] AS exit
    FROM events e
    WHERE e.organization_id = {sql.param(org, 'uuid')} AND e.session_id IS NOT NULL
      AND e.occurred_at >= {sql.param(start - SESSION_SPAN, 'timestamptz')}
      AND e.occurred_at < {sql.param(end + SESSION_SPAN, 'timestamptz')}
    GROUP BY e.session_id
    HAVING min(e.occurred_at) >= {sql.param(start, 'timestamptz')} AND min(e.occurred_at) < {sql.param(end, 'timestamptz')}
)
SELECT 'period' AS kind, i, NULL::text AS page,
       count(*) AS sessions, count(*) FILTER (WHERE events = 1) AS bounces,
       COALESCE(sum(extract(epoch FROM ended - started)), 0)::float8 AS seconds, COALESCE(sum(pages), 0)::bigint AS pages
FROM (SELECT *, width_bucket(started, {sql.param(span.starts, 'timestamptz[]')}) AS i FROM per_session) p
GROUP BY GROUPING SETS ((i), ())
UNION ALL
(SELECT 'entry', NULL, entry, count(*), 0, 0, 0 FROM per_session WHERE entry IS NOT NULL
 GROUP BY entry ORDER BY count(*) DESC, entry LIMIT {TOP_PAGES})
UNION ALL
(SELECT 'exit', NULL, exit, count(*), 0, 0, 0 FROM per_session WHERE exit IS NOT NULL
 GROUP BY exit ORDER BY count(*) DESC, exit LIMIT {TOP_PAGES})
"""


class SessionsRunner(InsightRunner[Periods, SessionMetrics]):
    kind = "insight_sessions"

    @property
    def query(self) -> SessionsQuery:
        return self.inputs["query"]

    def plan(self, scope: InsightScope) -> Periods:
        return periods(self.query.range, self.query.grain, scope.timezone)

    async def fetch(self, scope: InsightScope, plan: Periods) -> list[Any]:
        sql = Sql()
        text = statement(sql, scope.organization_id, plan)
        return await fetch(sql, text)

    def calculate(self, scope: InsightScope, plan: Periods, fetched: list[Any]) -> SessionMetrics:
        metrics = SessionMetrics(plan.range, plan.grain, SessionPeriod(plan.range.start))
        metrics.periods = [SessionPeriod(start) for start in plan.starts]
        for row in fetched:
            if row["kind"] == "entry":
                metrics.entry_pages.append((row["page"], row["sessions"]))
            elif row["kind"] == "exit":
                metrics.exit_pages.append((row["page"], row["sessions"]))
            else:
                target = metrics.total if row["i"] is None else metrics.periods[row["i"] - 1]
                target.sessions, target.bounces = row["sessions"], row["bounces"]
                target.total_seconds, target.pages = row["seconds"], row["pages"] or 0
        return metrics


async def session_metrics(*, viewer: Any, query: SessionsQuery) -> SessionMetrics:
    return await SessionsRunner(viewer=viewer, organization_id=query.organization_id, query=query).run()
