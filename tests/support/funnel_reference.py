"""The funnel definitions of app/services/insights/funnels.py, computed the plain way: walking
each person's events in Python, one event at a time. Tests compare the SQL with this.

Events are `ProductEvent`s (tests/support/product_events.py); a matcher is any predicate on
one. Nothing here reads the database."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from tests.support.product_events import ProductEvent, ordered

Matcher = Callable[[ProductEvent], bool]


@dataclass(frozen=True)
class RefExclusion:
    matcher: Matcher
    from_step: int
    to_step: int


@dataclass(frozen=True)
class RefBreakdown:
    value: Callable[[ProductEvent], Any]  # the value of one event (None: none)
    attribution: str = "first_touch"  # first_touch | last_touch | step
    step: int | None = None
    limit: int = 10


@dataclass
class RefFunnel:
    steps: list[Matcher]
    start: datetime
    end: datetime
    order: str = "ordered"  # ordered | strict | unordered
    window: int = 14 * 86400
    exclusions: list[RefExclusion] = field(default_factory=list)
    breakdown: RefBreakdown | None = None
    hold: list[Callable[[ProductEvent], Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Entity:
    """One counted person (or person and held values): the furthest step and the counted
    attempt's events."""

    person: str
    level: int
    chain: tuple[ProductEvent, ...]

    def seconds(self, a: int, b: int) -> float:
        return (self.chain[b].occurred_at - self.chain[a].occurred_at).total_seconds()


@dataclass
class Chain:
    """An attempt on its way: (row number, event) of its step events, start first."""

    rows: tuple[tuple[int, ProductEvent], ...]

    @property
    def start_rn(self) -> int:
        return self.rows[0][0]

    @property
    def start_t(self) -> datetime:
        return self.rows[0][1].occurred_at

    def key(self) -> tuple:
        # the latest start, then the earliest step events
        return (self.start_rn, *(-rn for rn, _ in self.rows[1:]))


def entities(funnel: RefFunnel, events: list[ProductEvent], links: dict[str, str] | None = None) -> list[Entity]:
    links = links or {}
    window = timedelta(seconds=funnel.window)
    until = funnel.end + window
    by_entity: dict[tuple, list[ProductEvent]] = {}
    for event in events:
        if event.user_id is None and event.anonymous_id is None:
            continue  # no person (do-not-track): never counts
        if not funnel.start <= event.occurred_at < until:
            continue
        relevant = funnel.order == "strict" or any(m(event) for m in funnel.steps) or any(
            x.matcher(event) for x in funnel.exclusions
        )
        if not relevant:
            continue
        key = (event.key(links), *(h(event) for h in funnel.hold))
        by_entity.setdefault(key, []).append(event)
    # STRICT: an event is the person's next one when it follows in all their events (events
    # with other held values included)
    position: dict[str, int] = {}
    by_person: dict[str, list[ProductEvent]] = {}
    for key, evs in by_entity.items():
        by_person.setdefault(key[0], []).extend(evs)
    for evs in by_person.values():
        position.update({e.event_id: i for i, e in enumerate(ordered(evs))})
    out = []
    for key, evs in by_entity.items():
        if funnel.order == "unordered":
            found = _unordered(funnel, ordered(evs))
        else:
            found = _ordered(funnel, ordered(evs), position)
        if found is not None:
            out.append(Entity(key[0], found[0], found[1]))
    return out


def _ordered(
    funnel: RefFunnel, events: list[ProductEvent], position: dict[str, int]
) -> tuple[int, tuple[ProductEvent, ...]] | None:
    n = len(funnel.steps)
    w = timedelta(seconds=funnel.window)
    strict = funnel.order == "strict"
    standing: list[Chain | None] = [None] * n  # the latest attempt on each step
    previous: list[Chain | None] = [None] * n  # STRICT: what the previous event moved onto each step
    records: list[tuple[int, int, Chain]] = []
    dropped: set[int] = set()
    for rn, ev in enumerate(events, 1):
        hits = [x for x in funnel.exclusions if x.matcher(ev)]
        for x in hits:  # judged on the steps as they stood before this event
            target = standing[x.to_step]
            for k in range(x.from_step, x.to_step):
                s = standing[k]
                if s is None or ev.occurred_at - s.start_t > w:
                    continue
                if target is not None and target.start_rn >= s.start_rn:
                    continue
                dropped.add(s.start_rn)
        for x in hits:
            for k in range(x.from_step, x.to_step):
                standing[k] = None
                previous[k] = None
        moved: list[Chain | None] = [None] * n
        for k, matches in enumerate(funnel.steps):
            if not matches(ev):
                continue
            if k == 0:
                if funnel.start <= ev.occurred_at < funnel.end:
                    moved[0] = Chain(((rn, ev),))
                continue
            before = previous[k - 1] if strict else standing[k - 1]
            if strict and before is not None and position[before.rows[-1][1].event_id] != position[ev.event_id] - 1:
                before = None
            if before is not None and ev.occurred_at - before.start_t <= w:
                moved[k] = Chain((*before.rows, (rn, ev)))
        for k, chain in enumerate(moved):
            if chain is None:
                continue
            records.append((k, rn, chain))
            if standing[k] is None or chain.key() > standing[k].key():
                standing[k] = chain
        previous = moved
    alive = [(k, -rn, c) for k, rn, c in records if c.start_rn not in dropped]
    if not alive:
        return None
    k, _, chain = max(alive, key=lambda r: (r[0], r[1]))
    return k, tuple(e for _, e in chain.rows)


def _unordered(funnel: RefFunnel, events: list[ProductEvent]) -> tuple[int, tuple[ProductEvent, ...]] | None:
    n = len(funnel.steps)
    w = timedelta(seconds=funnel.window)
    rows = list(enumerate(events, 1))
    best = None
    for rn, ev in rows:
        if not any(m(ev) for m in funnel.steps) or not funnel.start <= ev.occurred_at < funnel.end:
            continue
        frame = [(r, e) for r, e in rows if ev.occurred_at <= e.occurred_at <= ev.occurred_at + w]
        done = []
        for matches in funnel.steps:
            first = next(((r, e) for r, e in frame if matches(e)), None)
            if first is not None:
                done.append(first)
        done.sort(key=lambda re: (re[1].occurred_at, re[0]))
        if funnel.exclusions:
            xs = [e.occurred_at for _, e in frame if any(x.matcher(e) for x in funnel.exclusions)]
            until = done[-1][1].occurred_at if len(done) == n else ev.occurred_at + w
            if xs and min(xs) <= until:
                continue
        key = (len(done) - 1, -done[-1][0], rn)
        if best is None or key > best[0]:
            best = (key, tuple(e for _, e in done))
    if best is None:
        return None
    return best[0][0], best[1]


# -- the answers ------------------------------------------------------------------------------


def breakdown_value(funnel: RefFunnel, entity: Entity) -> Any:
    b = funnel.breakdown
    assert b is not None
    if b.attribution == "first_touch":
        return b.value(entity.chain[0])
    if b.attribution == "last_touch":
        return b.value(entity.chain[entity.level])
    return b.value(entity.chain[b.step]) if entity.level >= b.step else None


def steps(funnel: RefFunnel, found: list[Entity]) -> list[dict[str, Any]]:
    """The answer's steps, as the API names their fields."""
    n = len(funnel.steps)
    out = []
    first = sum(1 for e in found if e.level >= 0)
    previous = first
    for k in range(n):
        reached = [e for e in found if e.level >= k]
        times = [e.seconds(k - 1, k) for e in reached] if k else []
        out.append(
            {
                "index": k,
                "count": len(reached),
                "conversionRate": len(reached) / first if first else 0.0,
                "conversionRateFromPrevious": len(reached) / previous if previous else 0.0,
                "dropOff": 0 if k == 0 else previous - len(reached),
                "averageSecondsToConvert": statistics.fmean(times) if times else None,
                "medianSecondsToConvert": statistics.median(times) if times else None,
            }
        )
        previous = len(reached)
    return out


def breakdowns(funnel: RefFunnel, found: list[Entity]) -> dict[Any, list[dict[str, Any]]]:
    """Steps per breakdown value: every value (tests pick limits without ties at the cut)."""
    groups: dict[Any, list[Entity]] = {}
    for e in found:
        groups.setdefault(breakdown_value(funnel, e), []).append(e)
    return {value: steps(funnel, members) for value, members in groups.items()}
