"""Cohorts: named sets of persons, their definitions and members."""

from __future__ import annotations

from datetime import datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from schema.common import TimeRangeInput
from schema.insights import EventMatcherInput, PropertyFilterInput


@strawberry.enum(description="What decides a cohort's members.")
class CohortKind(Enum):
    BEHAVIORAL = strawberry.enum_value(
        "behavioral", description="Did (or did not) do an event at least minCount times in the last `days` days."
    )
    PERSON_PROPERTY = strawberry.enum_value("person_property", description="Person properties meet every filter.")
    FIRST_SEEN = strawberry.enum_value("first_seen", description="First seen in a range.")
    STATIC = strawberry.enum_value("static", description="A list of person ids.")


@strawberry.input(description="A cohort's definition: its kind and that kind's fields (another kind's field is refused).")
class CohortDefinitionInput:
    kind: CohortKind = strawberry.field(description="The kind; the fields below say which kind takes them.")
    event: EventMatcherInput | None = strawberry.field(default=None, description="BEHAVIORAL: the event and its filters.")
    performed: bool | None = strawberry.field(
        default=None, description="BEHAVIORAL: true (default) for persons who did it, false for those who did not."
    )
    min_count: int | None = strawberry.field(default=None, description="BEHAVIORAL: at least this many times (1.., default 1).")
    days: int | None = strawberry.field(default=None, description="BEHAVIORAL: in the last this many days (1..365).")
    filters: list[PropertyFilterInput] | None = strawberry.field(
        default=None, description="PERSON_PROPERTY: person property filters (source PERSON), all must hold."
    )
    range_: TimeRangeInput | None = strawberry.field(
        default=None, name="range", description="FIRST_SEEN: the range the person was first seen in (a preset moves)."
    )
    person_ids: list[str] | None = strawberry.field(
        default=None, description="STATIC: person ids (u:<userId>, a:<anonymousId>, ...), up to 10,000."
    )


@strawberry.type(description="A named set of persons, computed from its definition by the scheduler (and at once when saved).")
class Cohort:
    id: strawberry.ID = strawberry.field(description="The cohort's id: the key of a COHORT filter in every insight.")
    name: str = strawberry.field(description="Its name.")
    kind: CohortKind = strawberry.field(description="Its kind.")
    definition: JSON = strawberry.field(description="Its definition, with the input's field names.")
    member_count: int | None = strawberry.field(description="Members at the last computation (null: never computed).")
    computed_at: datetime | None = strawberry.field(description="When its members were last computed.")
    created_by: str = strawberry.field(description="Who created it.")
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it last changed.")
    members_csv_url: str = strawberry.field(
        description="Path of its members' CSV download (GET with the same Authorization header)."
    )
