"""Deterministic assignment: which variant a person gets, the same in every process and release.

Two independent uniform numbers in [0, 1) come from SHA-256 of the experiment key and the
person id (salted "allocation" and "variant"): the first 8 bytes read as an unsigned
integer over 2^64. A person is in the experiment when their allocation number is below the
allocation, and their variant is the one whose cumulative weight range (weights over their
sum, in the variants' order) holds their variant number. So raising the allocation only adds
persons (everyone below the old bound stays, with the same variant), and nothing depends on
the process, Python's hash seed or the order persons arrive in.

`assign` applies targeting (cohort membership, or person properties meeting every filter)
and records the exposure, all in one transaction under the experiment's lock.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import asyncpg

from app.database import transaction
from app.errors import BadInput
from app.services.experiments.definitions import Experiment, Status, Variant, experiment_by_key
from app.services.experiments.exposures import Exposure, lock_experiment, record_exposures
from app.services.insights import grammar
from app.services.insights.persons import PERSON_ID_MAX_CHARS

SCALE = float(2**64)


class Outcome(str, Enum):
    ASSIGNED = "assigned"
    NOT_ALLOCATED = "not_allocated"
    NOT_TARGETED = "not_targeted"


@dataclass(frozen=True, slots=True)
class Assignment:
    experiment_key: str
    person_id: str
    variant: str | None
    outcome: Outcome
    first_exposure: bool  # this call recorded the person's first exposure


def unit(experiment_key: str, person_id: str, purpose: str) -> float:
    """A uniform number in [0, 1) fixed by (purpose, experiment key, person id)."""
    digest = hashlib.sha256(f"{purpose}\x1f{experiment_key}\x1f{person_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / SCALE


def bucket(variants: tuple[Variant, ...], u: float) -> str:
    """The variant whose cumulative weight range holds u."""
    total = sum(v.weight for v in variants)
    running = 0.0
    for v in variants:
        running += v.weight / total
        if u < running and v.weight > 0:
            return v.key
    return next(v.key for v in reversed(variants) if v.weight > 0)


def variant_for(experiment_key: str, variants: tuple[Variant, ...], allocation: float, person_id: str) -> str | None:
    """The person's variant, or None when outside the allocation."""
    if unit(experiment_key, person_id, "allocation") >= allocation:
        return None
    return bucket(variants, unit(experiment_key, person_id, "variant"))


async def is_targeted(conn: asyncpg.Connection, experiment: Experiment, person_id: str) -> bool:
    t = experiment.definition.targeting
    org = experiment.organization_id
    if t.cohort_id is not None:
        return bool(await conn.fetchval(
            "SELECT true FROM cohort_members WHERE organization_id = $1 AND cohort_id = $2 AND person_id = $3",
            org, t.cohort_id, person_id,
        ))  # fmt: skip
    if not t.filters:
        return True
    sql = grammar.Sql([org, person_id])
    sql.joins_persons = True
    condition = grammar.filters_condition(sql, list(t.filters))
    return bool(await conn.fetchval(f"SELECT true FROM persons pp WHERE pp.organization_id = $1 AND pp.id = $2 AND {condition}", *sql.params))


def check_person(person_id: str) -> str:
    person = (person_id or "").strip()
    if not person or len(person) > PERSON_ID_MAX_CHARS:
        raise BadInput(f"a person id is 1 to {PERSON_ID_MAX_CHARS} characters (u:<userId>, a:<anonymousId>)", field="personId")
    return person


async def person_of(conn: asyncpg.Connection, org: uuid.UUID, key: str) -> str:
    """The person a key is now: a linked anonymous key is its user."""
    linked = await conn.fetchval("SELECT person_id FROM person_aliases WHERE organization_id = $1 AND alias = $2", org, key)
    return linked or key


async def assign(*, org: uuid.UUID, experiment_key: str, person_id: str, now: datetime | None = None) -> Assignment:
    """The person's variant in a RUNNING experiment (None outside its allocation or targeting),
    with their exposure recorded once. Any other status is refused (field experimentKey)."""
    key = check_person(person_id)
    async with transaction() as conn:
        experiment = await experiment_by_key(conn, org, experiment_key)
        if experiment.status is not Status.RUNNING:
            raise BadInput(f"experiment {experiment.key!r} is {experiment.status.name}: only a RUNNING experiment assigns",
                           field="experimentKey")  # fmt: skip
        person = await person_of(conn, org, key)
        d = experiment.definition
        variant = variant_for(d.key, d.variants, d.allocation, person)
        if variant is None:
            return Assignment(d.key, person, None, Outcome.NOT_ALLOCATED, False)
        if not await is_targeted(conn, experiment, person):
            return Assignment(d.key, person, None, Outcome.NOT_TARGETED, False)
        await lock_experiment(conn, experiment.id)
        recorded = await record_exposures(conn, experiment, [Exposure(person, variant, now or datetime.now(UTC))])
        return Assignment(d.key, person, variant, Outcome.ASSIGNED, recorded.new == 1)
