"""Persons, identity links and cohorts (migration 0011), read by every insight; the hourly
pre-aggregates of events and their queue (migration 0021), written by triggers and the
worker's fold, never through these models."""

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


class EventHourCount(Model):
    """Events per (type, UTC hour), in total (dimension '') and per value of a stored
    dimension (value NULL: the events without one). Real key: (organization_id, id); unique
    per (organization_id, type, dimension, hour, value), nulls equal."""

    organization_id = fields.UUIDField()
    id = fields.BigIntField(primary_key=True, generated=True)
    type = fields.TextField()
    hour = fields.DatetimeField()
    dimension = fields.TextField()
    value = fields.TextField(null=True)
    events = fields.BigIntField()

    class Meta:
        table = "event_hour_counts"
        unique_together = (("organization_id", "id"), ("organization_id", "type", "dimension", "hour", "value"))


class EventActorHour(Model):
    """A visitor did a type of event in a UTC hour. Real key: (organization_id, type, hour,
    visitor_id); partitioned by type."""

    organization_id = fields.UUIDField()
    type = fields.TextField()
    hour = fields.DatetimeField(primary_key=True)
    visitor_id = fields.TextField()

    class Meta:
        table = "event_actor_hours"
        unique_together = (("organization_id", "type", "hour", "visitor_id"),)


class EventActorDay(Model):
    """A visitor did a type of event on a day of the organization's zone (`day`: the instant
    it starts). Real key: (organization_id, type, day, visitor_id); partitioned by type."""

    organization_id = fields.UUIDField()
    type = fields.TextField()
    day = fields.DatetimeField(primary_key=True)
    visitor_id = fields.TextField()

    class Meta:
        table = "event_actor_days"
        unique_together = (("organization_id", "type", "day", "visitor_id"),)


class EventActorFirst(Model):
    """A visitor's first UTC hour with a type of event. Real key: (organization_id, type,
    visitor_id); partitioned by type."""

    organization_id = fields.UUIDField()
    type = fields.TextField()
    visitor_id = TextKeyField(primary_key=True)
    first_hour = fields.DatetimeField()

    class Meta:
        table = "event_actor_first"
        unique_together = (("organization_id", "type", "visitor_id"),)


class EventRollupQueue(Model):
    """A stored event's rolled-up columns, until the worker folds them into the aggregates.
    Real key: (organization_id, occurred_at, event_id), as in events."""

    organization_id = fields.UUIDField()
    occurred_at = fields.DatetimeField()
    event_id = TextKeyField(primary_key=True)
    type = fields.TextField()
    visitor_id = fields.TextField(null=True)
    country = fields.TextField(null=True)
    device_type = fields.TextField(null=True)
    browser = fields.TextField(null=True)
    os = fields.TextField(null=True)
    referrer_domain = fields.TextField(null=True)
    utm_source = fields.TextField(null=True)
    utm_medium = fields.TextField(null=True)
    utm_campaign = fields.TextField(null=True)

    class Meta:
        table = "event_rollup_queue"
        unique_together = (("organization_id", "occurred_at", "event_id"),)
