"""Experiments as data: their definition, checks, storage and status changes.

An experiment has a key (unique in its organization, the assignment hash's seed), a name, a
hypothesis, 2 to 20 variants (key, name, weight; control first), a traffic allocation (the
share of targeted persons in the experiment, 0 < allocation <= 1), a targeting (a cohort, or
person-property filters, or everyone), metrics (one PRIMARY, any SECONDARY and GUARDRAIL),
the statistics it is read with (engine, correction, alpha, sequential tuning, CUPED's
pre-period in days), and a minimum detectable effect or minimum sample size.

A metric is an insight definition over events, per exposed person, counted from the person's
first exposure (the metric's window bounds the time after it):
- CONVERSION: did an event matching `event` (name and filters) happen (BINOMIAL);
- COUNT: how many matching events; SUM: the sum of a numeric event `property` over them;
- REVENUE: money of the ledger's events in `currency` (minor units): paid orders, bookings,
  gifts and subscription charges add their amount, refunds subtract theirs;
- RETENTION: did a matching event (default: any) happen between day `fromDay` and day
  `toDay` after exposure (BINOMIAL).

Status: DRAFT -> RUNNING -> STOPPED or COMPLETED (STOPPED -> COMPLETED too); every change is
audited with who and when. Variants, metrics and targeting change only in DRAFT; a running
experiment needs a primary metric. Every refusal is a BAD_USER_INPUT naming the field, given
before anything is written.
"""

from __future__ import annotations

import math
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import asyncpg
import orjson

from app import errors
from app.auth import Viewer, administered_organization
from app.database import connection, transaction
from app.errors import BadInput, NotFound
from app.services.experiments import stats
from app.services.insights import grammar
from app.services.insights.grammar import ALL_EVENTS, EventMatcher, PropertyFilter, PropertySource
from app.services.insights.query import check_regexes
from app.vocabulary import BOOKING_COMPLETED, GIFT_PURCHASED, ORDER_PAID, ORDER_REFUNDED, SUBSCRIPTION_CHARGED

REFUSAL = "experiments read every person of an organization: they need an organization admin token"
KEY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
NAME_MAX_CHARS = 200
HYPOTHESIS_MAX_CHARS = 5000
MAX_METRICS = 20
MAX_EXPERIMENTS = 1000  # per organization
MAX_WINDOW_HOURS = 24 * 366
MAX_CUPED_DAYS = 90
MAX_RETENTION_DAY = 366
# The ledger's money events a REVENUE metric reads: what they add (refunds subtract).
REVENUE_SIGNS = {ORDER_PAID: 1, BOOKING_COMPLETED: 1, GIFT_PURCHASED: 1, SUBSCRIPTION_CHARGED: 1, ORDER_REFUNDED: -1}


class Status(str, Enum):
    DRAFT = "draft"
    RUNNING = "running"
    STOPPED = "stopped"
    COMPLETED = "completed"


TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.DRAFT: frozenset({Status.RUNNING}),
    Status.RUNNING: frozenset({Status.STOPPED, Status.COMPLETED}),
    Status.STOPPED: frozenset({Status.COMPLETED}),
    Status.COMPLETED: frozenset(),
}


class MetricKind(str, Enum):
    CONVERSION = "conversion"
    COUNT = "count"
    SUM = "sum"
    REVENUE = "revenue"
    RETENTION = "retention"


class MetricRole(str, Enum):
    PRIMARY = "primary"
    SECONDARY = "secondary"
    GUARDRAIL = "guardrail"


BINOMIAL_KINDS = frozenset({MetricKind.CONVERSION, MetricKind.RETENTION})


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    name: str
    weight: float


@dataclass(frozen=True, slots=True)
class Metric:
    key: str
    name: str
    role: MetricRole
    kind: MetricKind
    matcher: EventMatcher | None = None  # REVENUE reads the ledger's events instead
    property_name: str | None = None  # SUM
    currency: str | None = None  # REVENUE
    window_hours: float | None = None  # CONVERSION, COUNT, SUM, REVENUE: after first exposure (None: no end)
    from_day: int | None = None  # RETENTION
    to_day: int | None = None

    @property
    def metric_type(self) -> stats.MetricType:
        return stats.MetricType.BINOMIAL if self.kind in BINOMIAL_KINDS else stats.MetricType.MEAN

    @property
    def event_types(self) -> frozenset[str]:
        if self.kind is MetricKind.REVENUE:
            return frozenset(REVENUE_SIGNS)
        return frozenset({self.events.event})

    @property
    def events(self) -> EventMatcher:
        """The events it reads (REVENUE: the ledger's, by type; RETENTION: any, unless named)."""
        if self.kind is MetricKind.REVENUE:
            return EventMatcher(ALL_EVENTS)
        return self.matcher or EventMatcher(ALL_EVENTS)

    @property
    def window_seconds(self) -> tuple[float, float | None]:
        """[start, end) of the events it counts, in seconds after the person's first exposure."""
        if self.kind is MetricKind.RETENTION:
            assert self.from_day is not None and self.to_day is not None
            return self.from_day * 86400.0, self.to_day * 86400.0
        return 0.0, self.window_hours * 3600.0 if self.window_hours is not None else None


@dataclass(frozen=True, slots=True)
class Targeting:
    cohort_id: uuid.UUID | None = None
    filters: tuple[PropertyFilter, ...] = ()


@dataclass(frozen=True, slots=True)
class Analysis:
    """How an experiment's results are read."""

    engine: stats.Engine = stats.Engine.FREQUENTIST
    correction: stats.Correction = stats.Correction.HOLM
    alpha: float = stats.DEFAULT_ALPHA
    sequential_tuning: float = stats.DEFAULT_SEQUENTIAL_TUNING
    cuped_days: int | None = None


@dataclass(frozen=True, slots=True)
class Definition:
    """Everything an experiment's creator decides (all of it checked)."""

    key: str
    name: str
    hypothesis: str
    variants: tuple[Variant, ...]
    allocation: float
    targeting: Targeting
    metrics: tuple[Metric, ...]
    analysis: Analysis
    minimum_detectable_effect: float | None = None
    minimum_sample_size: int | None = None


@dataclass(frozen=True, slots=True)
class StatusChange:
    from_status: Status | None
    to_status: Status
    actor: str
    actor_role: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Experiment:
    organization_id: uuid.UUID
    id: uuid.UUID
    definition: Definition
    status: Status
    started_at: datetime | None
    ended_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    history: tuple[StatusChange, ...] = field(default=())

    @property
    def key(self) -> str:
        return self.definition.key

    @property
    def primary(self) -> Metric | None:
        return next((m for m in self.definition.metrics if m.role is MetricRole.PRIMARY), None)


# -- checks ----------------------------------------------------------------------------------


def check_key(key: str, field: str) -> str:
    if not KEY_PATTERN.match(key or ""):
        raise BadInput("a key is 1 to 100 letters, digits, _ . : - (starting with a letter or digit)", field=field)
    return key


def check_text(value: str, field: str, limit: int, *, empty: bool = False) -> str:
    text = (value or "").strip()
    if not text and not empty:
        raise BadInput(f"{field} must not be empty", field=field)
    if len(text) > limit:
        raise BadInput(f"{field} has at most {limit} characters", field=field)
    return text


def check_variants(variants: list[Variant], field: str = "variants") -> tuple[Variant, ...]:
    """2 to 20 variants with distinct keys and weights 0 or more summing to a positive number."""
    if not stats.MIN_VARIANTS <= len(variants) <= stats.MAX_VARIANTS:
        raise BadInput(f"an experiment has {stats.MIN_VARIANTS} to {stats.MAX_VARIANTS} variants, control first", field=field)
    seen: set[str] = set()
    for i, v in enumerate(variants):
        check_key(v.key, f"{field}[{i}].key")
        if v.key in seen:
            raise BadInput(f"variant key {v.key!r} is given twice", field=f"{field}[{i}].key")
        seen.add(v.key)
        check_text(v.name, f"{field}[{i}].name", NAME_MAX_CHARS)
        if not math.isfinite(v.weight) or v.weight < 0:
            raise BadInput("a weight is a number 0 or more", field=f"{field}[{i}].weight")
    if not sum(v.weight for v in variants) > 0:
        raise BadInput("the variants' weights must sum to a positive number", field=field)
    return tuple(Variant(v.key, v.name.strip(), float(v.weight)) for v in variants)


def check_metrics(metrics: list[Metric], field: str = "metrics") -> tuple[Metric, ...]:
    if len(metrics) > MAX_METRICS:
        raise BadInput(f"at most {MAX_METRICS} metrics", field=field)
    seen: set[str] = set()
    for i, m in enumerate(metrics):
        where = f"{field}[{i}]"
        check_key(m.key, f"{where}.key")
        if m.key in seen:
            raise BadInput(f"metric key {m.key!r} is given twice", field=f"{where}.key")
        seen.add(m.key)
        check_text(m.name, f"{where}.name", NAME_MAX_CHARS)
        check_metric(m, where)
    if sum(m.role is MetricRole.PRIMARY for m in metrics) > 1:
        raise BadInput("an experiment has one primary metric", field=field)
    return tuple(metrics)


def check_metric(m: Metric, where: str) -> None:
    """A metric names what it counts; other kinds' fields are refused."""
    given = {"event": m.matcher is not None, "property": m.property_name is not None, "currency": m.currency is not None,
             "windowHours": m.window_hours is not None, "fromDay": m.from_day is not None, "toDay": m.to_day is not None}  # fmt: skip
    takes = {
        MetricKind.CONVERSION: {"event", "windowHours"}, MetricKind.COUNT: {"event", "windowHours"},
        MetricKind.SUM: {"event", "property", "windowHours"}, MetricKind.REVENUE: {"currency", "windowHours"},
        MetricKind.RETENTION: {"event", "fromDay", "toDay"},
    }[m.kind]  # fmt: skip
    for name in sorted(k for k, v in given.items() if v and k not in takes):
        raise BadInput(f"a {m.kind.name} metric has no {name}; it takes {', '.join(sorted(takes))}", field=f"{where}.{name}")
    if m.kind in (MetricKind.CONVERSION, MetricKind.COUNT, MetricKind.SUM) and m.matcher is None:
        raise BadInput(f"a {m.kind.name} metric names the event it counts", field=f"{where}.event")
    if m.kind is MetricKind.SUM and not (m.property_name or "").strip():
        raise BadInput("a SUM metric names the numeric event property it adds up", field=f"{where}.property")
    if m.kind is MetricKind.REVENUE and not re.fullmatch(r"[A-Z]{3}", m.currency or ""):
        raise BadInput("a REVENUE metric names its ISO 4217 currency (e.g. EUR)", field=f"{where}.currency")
    if m.window_hours is not None and not 0 < m.window_hours <= MAX_WINDOW_HOURS:
        raise BadInput(f"windowHours is from 0 (exclusive) to {MAX_WINDOW_HOURS}", field=f"{where}.windowHours")
    if m.kind is MetricKind.RETENTION:
        if m.from_day is None or m.to_day is None or not 0 <= m.from_day < m.to_day <= MAX_RETENTION_DAY:
            raise BadInput(f"a RETENTION metric counts from day fromDay to day toDay (0 <= fromDay < toDay <= {MAX_RETENTION_DAY})",
                           field=f"{where}.fromDay")  # fmt: skip


def check_definition(d: Definition) -> Definition:
    if not 0 < d.allocation <= 1:
        raise BadInput("allocation is the share of targeted persons in the experiment: 0 (exclusive) to 1", field="allocation")
    a = d.analysis
    if not 0 < a.alpha < 1:
        raise BadInput("alpha is between 0 and 1 (exclusive)", field="alpha")
    if not a.sequential_tuning > 0:
        raise BadInput("sequentialTuning (the target sample size N*) is positive", field="sequentialTuning")
    if a.cuped_days is not None and not 1 <= a.cuped_days <= MAX_CUPED_DAYS:
        raise BadInput(f"cupedDays (the pre-exposure window) is from 1 to {MAX_CUPED_DAYS}", field="cupedDays")
    if d.minimum_detectable_effect is not None and not (math.isfinite(d.minimum_detectable_effect) and d.minimum_detectable_effect > 0):
        raise BadInput("minimumDetectableEffect is a positive number", field="minimumDetectableEffect")
    if d.minimum_sample_size is not None and d.minimum_sample_size < 1:
        raise BadInput("minimumSampleSize is 1 or more", field="minimumSampleSize")
    for i, f in enumerate(d.targeting.filters):
        if f.source is not PropertySource.PERSON:
            raise BadInput("targeting filters read person properties (source PERSON)", field=f"targeting.filters[{i}].source")
    return Definition(
        check_key(d.key, "key"), check_text(d.name, "name", NAME_MAX_CHARS),
        check_text(d.hypothesis, "hypothesis", HYPOTHESIS_MAX_CHARS, empty=True), check_variants(list(d.variants)),
        d.allocation, d.targeting, check_metrics(list(d.metrics)), a, d.minimum_detectable_effect, d.minimum_sample_size,
    )  # fmt: skip


# -- stored form -----------------------------------------------------------------------------


def stored_filter(f: PropertyFilter) -> dict[str, Any]:
    """A checked filter as JSON (numbers compared as numbers are kept as exact text)."""
    value = list(f.value) if isinstance(f.value, tuple) else str(f.value) if isinstance(f.value, Decimal) else f.value
    return {"source": f.source.value, "key": f.key, "operator": f.operator.value, "value": value}


def read_filter(d: dict[str, Any], where: str) -> PropertyFilter:
    operator = grammar.FilterOperator(d["operator"])
    value = d.get("value")
    if isinstance(value, list):
        value = tuple(value)
    elif operator in (grammar.FilterOperator.GREATER_THAN, grammar.FilterOperator.LESS_THAN):
        value = Decimal(value)
    return PropertyFilter(PropertySource(d["source"]), d["key"], operator, value, where)


def stored_metric(m: Metric) -> dict[str, Any]:
    out: dict[str, Any] = {"key": m.key, "name": m.name, "role": m.role.value, "kind": m.kind.value}
    if m.matcher is not None:
        out["event"] = {"event": m.matcher.event, "filters": [stored_filter(f) for f in m.matcher.filters]}
    for name, value in (("property", m.property_name), ("currency", m.currency), ("windowHours", m.window_hours),
                        ("fromDay", m.from_day), ("toDay", m.to_day)):  # fmt: skip
        if value is not None:
            out[name] = value
    return out


def read_metric(d: dict[str, Any], i: int) -> Metric:
    matcher = None
    if "event" in d:
        where = f"metrics[{i}].event.filters"
        matcher = EventMatcher(d["event"]["event"], tuple(read_filter(f, f"{where}[{j}]") for j, f in enumerate(d["event"]["filters"])))
    return Metric(d["key"], d["name"], MetricRole(d["role"]), MetricKind(d["kind"]), matcher, d.get("property"),
                  d.get("currency"), d.get("windowHours"), d.get("fromDay"), d.get("toDay"))  # fmt: skip


def stored_targeting(t: Targeting) -> dict[str, Any]:
    if t.cohort_id is not None:
        return {"cohortId": str(t.cohort_id)}
    if t.filters:
        return {"filters": [stored_filter(f) for f in t.filters]}
    return {}


def read_targeting(d: dict[str, Any]) -> Targeting:
    if "cohortId" in d:
        return Targeting(cohort_id=uuid.UUID(d["cohortId"]))
    return Targeting(filters=tuple(read_filter(f, f"targeting.filters[{i}]") for i, f in enumerate(d.get("filters", []))))


def tracked_types(metrics: tuple[Metric, ...]) -> list[str]:
    """The event types the worker must see while the experiment runs."""
    return sorted(set().union(*(m.event_types for m in metrics))) if metrics else []


COLUMNS = ("organization_id, id, key, name, hypothesis, status, variants, allocation, targeting, metrics, engine,"
           " correction, alpha, sequential_tuning, cuped_days, minimum_detectable_effect, minimum_sample_size,"
           " started_at, ended_at, created_by, created_at, updated_at")  # fmt: skip


def from_row(row: asyncpg.Record, history: tuple[StatusChange, ...] = ()) -> Experiment:
    variants = orjson.loads(row["variants"])
    definition = Definition(
        row["key"], row["name"], row["hypothesis"], tuple(Variant(v["key"], v["name"], v["weight"]) for v in variants),
        row["allocation"], read_targeting(orjson.loads(row["targeting"])),
        tuple(read_metric(m, i) for i, m in enumerate(orjson.loads(row["metrics"]))),
        Analysis(stats.Engine(row["engine"]), stats.Correction(row["correction"]), row["alpha"], row["sequential_tuning"],
                 row["cuped_days"]),
        row["minimum_detectable_effect"], row["minimum_sample_size"],
    )  # fmt: skip
    return Experiment(row["organization_id"], row["id"], definition, Status(row["status"]), row["started_at"],
                      row["ended_at"], row["created_by"], row["created_at"], row["updated_at"], history)  # fmt: skip


def definition_params(d: Definition) -> list[Any]:
    """Parameters $3..$17 of the insert and the update, in COLUMNS order after status."""
    return [
        d.key, d.name, d.hypothesis, orjson.dumps([{"key": v.key, "name": v.name, "weight": v.weight} for v in d.variants]).decode(),
        d.allocation, orjson.dumps(stored_targeting(d.targeting)).decode(),
        orjson.dumps([stored_metric(m) for m in d.metrics]).decode(), tracked_types(d.metrics),
        d.analysis.engine.value, d.analysis.correction.value, d.analysis.alpha, d.analysis.sequential_tuning,
        d.analysis.cuped_days, d.minimum_detectable_effect, d.minimum_sample_size,
    ]  # fmt: skip


# -- scope and reads -------------------------------------------------------------------------


async def experiment_scope(viewer: Viewer, organization_id: Any) -> uuid.UUID:
    """Organization admins their own organization, platform admins the one they name."""
    return await administered_organization(viewer, organization_id, refusal=REFUSAL)


def parse_id(value: Any, field: str = "id") -> uuid.UUID:
    return errors.parse_id(value, "experiment", field)


async def history_of(conn: asyncpg.Connection, org: uuid.UUID, experiment_id: uuid.UUID) -> tuple[StatusChange, ...]:
    rows = await conn.fetch(
        "SELECT from_status, to_status, actor, actor_role, at FROM experiment_status_audit"
        " WHERE organization_id = $1 AND experiment_id = $2 ORDER BY id", org, experiment_id,
    )  # fmt: skip
    return tuple(StatusChange(Status(r["from_status"]) if r["from_status"] else None, Status(r["to_status"]), r["actor"],
                              r["actor_role"], r["at"]) for r in rows)  # fmt: skip


async def get_experiment(*, org: uuid.UUID, experiment_id: Any, field: str = "id") -> Experiment:
    eid = parse_id(experiment_id, field)
    async with connection() as conn:
        row = await conn.fetchrow(f"SELECT {COLUMNS} FROM experiments WHERE organization_id = $1 AND id = $2", org, eid)
        if row is None:
            raise NotFound("experiment not found", field=field)
        return from_row(row, await history_of(conn, org, eid))


async def list_experiments(*, org: uuid.UUID, status: Status | None = None) -> list[Experiment]:
    async with connection() as conn:
        rows = await conn.fetch(
            f"SELECT {COLUMNS} FROM experiments WHERE organization_id = $1 AND ($2::text IS NULL OR status = $2)"
            " ORDER BY created_at DESC, id", org, status.value if status else None,
        )  # fmt: skip
    return [from_row(r) for r in rows]


async def experiment_by_key(conn: asyncpg.Connection, org: uuid.UUID, key: str, field: str = "experimentKey") -> Experiment:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM experiments WHERE organization_id = $1 AND key = $2", org, key)
    if row is None:
        raise NotFound("experiment not found", field=field)
    return from_row(row)


# -- writes ----------------------------------------------------------------------------------


async def check_references(conn: asyncpg.Connection, org: uuid.UUID, d: Definition) -> None:
    """What PostgreSQL must confirm before anything is written: the cohort exists, regexes compile."""
    if d.targeting.cohort_id is not None and not await conn.fetchval(
        "SELECT true FROM cohorts WHERE organization_id = $1 AND id = $2", org, d.targeting.cohort_id
    ):
        raise BadInput("no such cohort in this organization", field="targeting.cohortId")
    sql = grammar.Sql()
    for m in d.metrics:
        if m.matcher is not None:
            grammar.matcher_condition(sql, m.matcher)
    grammar.filters_condition(sql, list(d.targeting.filters))
    await check_regexes(conn, sql.regexes)


async def create_experiment(*, org: uuid.UUID, actor: str, definition: Definition) -> Experiment:
    """Store a DRAFT experiment (checked whole first; nothing is written on a refusal)."""
    d = check_definition(definition)
    async with transaction() as conn:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('experiments:' || $1::text))", str(org))
        if await conn.fetchval("SELECT count(*) FROM experiments WHERE organization_id = $1", org) >= MAX_EXPERIMENTS:
            raise BadInput(f"an organization has at most {MAX_EXPERIMENTS} experiments; delete one first", field="key")
        if await conn.fetchval("SELECT true FROM experiments WHERE organization_id = $1 AND key = $2", org, d.key):
            raise BadInput(f"an experiment with key {d.key!r} exists already", field="key")
        await check_references(conn, org, d)
        row = await conn.fetchrow(
            f"INSERT INTO experiments (organization_id, id, status, key, name, hypothesis, variants, allocation, targeting,"
            f" metrics, tracked_types, engine, correction, alpha, sequential_tuning, cuped_days, minimum_detectable_effect,"
            f" minimum_sample_size, created_by) VALUES ($1, $2, 'draft', $3, $4, $5, $6::jsonb, $7, $8::jsonb, $9::jsonb,"
            f" $10, $11, $12, $13, $14, $15, $16, $17, $18) RETURNING {COLUMNS}",
            org, uuid.uuid4(), *definition_params(d), actor,
        )  # fmt: skip
        return from_row(row)


async def locked(conn: asyncpg.Connection, org: uuid.UUID, experiment_id: uuid.UUID, field: str = "id") -> Experiment:
    row = await conn.fetchrow(f"SELECT {COLUMNS} FROM experiments WHERE organization_id = $1 AND id = $2 FOR UPDATE", org, experiment_id)
    if row is None:
        raise NotFound("experiment not found", field=field)
    return from_row(row)


FROZEN_WHILE_RUNNING = ("variants", "metrics", "targeting", "key", "cupedDays")


def check_changes(current: Experiment, new: Definition, changed: set[str]) -> None:
    """Variants, metrics, targeting, CUPED's window and the key (the hash's seed) change only in
    DRAFT; after it ends, only the name and hypothesis."""
    if current.status is Status.DRAFT:
        return
    frozen = FROZEN_WHILE_RUNNING if current.status is Status.RUNNING else tuple(changed - {"name", "hypothesis"})
    for name in sorted(changed & set(frozen)):
        raise BadInput(f"the {name} of a {current.status.name} experiment cannot change; create a new experiment",
                       field=name)  # fmt: skip


async def update_experiment(*, org: uuid.UUID, experiment_id: Any, definition_of: Any, changed: set[str]) -> Experiment:
    """Change an experiment: `definition_of(current)` gives the new definition; `changed`
    names the fields the caller gave."""
    eid = parse_id(experiment_id)
    async with transaction() as conn:
        current = await locked(conn, org, eid)
        new = check_definition(definition_of(current.definition))
        check_changes(current, new, changed)
        if new.key != current.key and await conn.fetchval(
            "SELECT true FROM experiments WHERE organization_id = $1 AND key = $2", org, new.key
        ):
            raise BadInput(f"an experiment with key {new.key!r} exists already", field="key")
        await check_references(conn, org, new)
        row = await conn.fetchrow(
            f"UPDATE experiments SET key = $3, name = $4, hypothesis = $5, variants = $6::jsonb, allocation = $7,"
            f" targeting = $8::jsonb, metrics = $9::jsonb, tracked_types = $10, engine = $11, correction = $12, alpha = $13,"
            f" sequential_tuning = $14, cuped_days = $15, minimum_detectable_effect = $16, minimum_sample_size = $17,"
            f" updated_at = now() WHERE organization_id = $1 AND id = $2 RETURNING {COLUMNS}",
            org, eid, *definition_params(new),
        )  # fmt: skip
        return from_row(row, await history_of(conn, org, eid))


async def set_status(*, org: uuid.UUID, experiment_id: Any, status: Status, viewer: Viewer) -> Experiment:
    """Move an experiment along DRAFT -> RUNNING -> STOPPED / COMPLETED, audited. Starting
    needs a primary metric and sets startedAt; ending sets endedAt."""
    eid = parse_id(experiment_id)
    actor, role = viewer.actor
    async with transaction() as conn:
        current = await locked(conn, org, eid)
        if status not in TRANSITIONS[current.status]:
            allowed = ", ".join(s.name for s in sorted(TRANSITIONS[current.status], key=lambda s: s.value)) or "none"
            raise BadInput(f"a {current.status.name} experiment cannot become {status.name} (allowed: {allowed})", field="status")
        if status is Status.RUNNING and current.primary is None:
            raise BadInput("an experiment starts with a primary metric: add one to its metrics", field="metrics")
        row = await conn.fetchrow(
            f"UPDATE experiments SET status = $3, updated_at = now(),"
            f" started_at = CASE WHEN $3 = 'running' THEN now() ELSE started_at END,"
            f" ended_at = CASE WHEN $3 IN ('stopped', 'completed') THEN COALESCE(ended_at, now()) ELSE ended_at END"
            f" WHERE organization_id = $1 AND id = $2 RETURNING {COLUMNS}", org, eid, status.value,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO experiment_status_audit (organization_id, experiment_id, from_status, to_status, actor, actor_role)"
            " VALUES ($1, $2, $3, $4, $5, $6)", org, eid, current.status.value, status.value, actor, role,
        )  # fmt: skip
        if status is Status.RUNNING:
            await seed_statistics(conn, from_row(row))
        return from_row(row, await history_of(conn, org, eid))


async def seed_statistics(conn: asyncpg.Connection, experiment: Experiment) -> None:
    """One zero row per metric and variant, so results list every variant before anyone is exposed."""
    d = experiment.definition
    await conn.execute(
        "INSERT INTO experiment_statistics (organization_id, experiment_id, metric, variant)"
        " SELECT $1, $2, m, v FROM unnest($3::text[]) m, unnest($4::text[]) v ON CONFLICT DO NOTHING",
        experiment.organization_id, experiment.id, [m.key for m in d.metrics], [v.key for v in d.variants],
    )  # fmt: skip


async def delete_experiment(*, org: uuid.UUID, experiment_id: Any) -> uuid.UUID:
    """Delete an experiment with its exposures, statistics and audit."""
    eid = parse_id(experiment_id)
    async with transaction() as conn:
        deleted = await conn.fetchval("DELETE FROM experiments WHERE organization_id = $1 AND id = $2 RETURNING id", org, eid)
    if deleted is None:
        raise NotFound("experiment not found", field="id")
    return deleted
