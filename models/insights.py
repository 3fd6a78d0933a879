"""Persons, identity links and cohorts (migration 0011), read by every insight."""

from __future__ import annotations

from tortoise import fields
from tortoise.fields.db_defaults import SqlDefault
from tortoise.models import Model

from models.fields import NOW, TextKeyField

EMPTY_OBJECT = SqlDefault("'{}'::jsonb")


class Person(Model):
    """What is known of a person beyond their events: properties and first / last seen.

    Real key: (organization_id, id); `id` is the person key ('u:<user id>', 'a:<anonymous id>'
    or the cookie-less visitor hash), as in events.visitor_id."""

    organization_id = fields.UUIDField()
    id = TextKeyField(primary_key=True)
    properties = fields.JSONField(db_default=EMPTY_OBJECT)
    property_stamps = fields.JSONField(db_default=EMPTY_OBJECT)  # per key: how and when it was set (0012)
    first_seen_at = fields.DatetimeField(null=True)
    last_seen_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(db_default=NOW)
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "persons"
        unique_together = (("organization_id", "id"),)


class PersonAlias(Model):
    """An anonymous key linked to a user key by an identify: the anonymous history is the
    user's in every insight. Real key: (organization_id, alias)."""

    organization_id = fields.UUIDField()
    alias = TextKeyField(primary_key=True)
    person_id = fields.TextField()
    linked_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "person_aliases"
        unique_together = (("organization_id", "alias"),)


class Cohort(Model):
    """A named set of persons: its definition (kind + JSON) and when the scheduler last
    computed its members. Real key: (organization_id, id)."""

    organization_id = fields.UUIDField()
    id = fields.UUIDField(primary_key=True)
    name = fields.TextField()
    kind = fields.TextField()  # behavioral | person_property | first_seen | static
    definition = fields.JSONField(db_default=EMPTY_OBJECT)
    member_count = fields.IntField(null=True)
    computed_at = fields.DatetimeField(null=True)
    created_by = fields.TextField()
    created_at = fields.DatetimeField(db_default=NOW)
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "cohorts"
        unique_together = (("organization_id", "id"),)


class CohortMember(Model):
    """One person of a cohort's last computation. Real key: (organization_id, cohort_id, person_id)."""

    organization_id = fields.UUIDField()
    cohort_id = fields.UUIDField()
    person_id = TextKeyField(primary_key=True)

    class Meta:
        table = "cohort_members"
        unique_together = (("organization_id", "cohort_id", "person_id"),)
