"""Experiments, their status audit, exposures and the worker's statistics (migration 0014)."""

from __future__ import annotations

from tortoise import fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.fields.db_defaults import SqlDefault
from tortoise.models import Model

from models.fields import CLOCK, NOW, TextKeyField

EMPTY_OBJECT = SqlDefault("'{}'::jsonb")
EMPTY_LIST = SqlDefault("'[]'::jsonb")
EMPTY_TEXTS = SqlDefault("'{}'::text[]")


class Experiment(Model):
    """An A/B experiment as data; the partial index experiments_running (running ones per
    organization, what ingestion reads) has no Tortoise equivalent. Real key: (organization_id, id)."""

    organization_id = fields.UUIDField()
    id = fields.UUIDField(primary_key=True)
    key = fields.TextField()
    name = fields.TextField()
    hypothesis = fields.TextField(db_default=SqlDefault("''::text"))
    status = fields.TextField()  # draft | running | stopped | completed
    variants = fields.JSONField()  # [{key, name, weight}], control first
    allocation = fields.FloatField(db_default=SqlDefault("1"))
    targeting = fields.JSONField(db_default=EMPTY_OBJECT)  # {cohortId} | {filters: [...]} | {}
    metrics = fields.JSONField(db_default=EMPTY_LIST)  # [{key, name, role, kind, ...}]
    tracked_types = ArrayField("text", db_default=EMPTY_TEXTS)
    engine = fields.TextField(db_default=SqlDefault("'frequentist'::text"))
    correction = fields.TextField(db_default=SqlDefault("'holm'::text"))
    alpha = fields.FloatField(db_default=SqlDefault("0.05"))
    sequential_tuning = fields.FloatField(db_default=SqlDefault("5000"))
    cuped_days = fields.IntField(null=True)
    minimum_detectable_effect = fields.FloatField(null=True)
    minimum_sample_size = fields.IntField(null=True)
    started_at = fields.DatetimeField(null=True)
    ended_at = fields.DatetimeField(null=True)
    created_by = fields.TextField()
    created_at = fields.DatetimeField(db_default=NOW)
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "experiments"
        unique_together = (("organization_id", "id"), ("organization_id", "key"))


class ExperimentStatusAudit(Model):
    """Every status change of an experiment, who and when. Real key: (organization_id, id)."""

    organization_id = fields.UUIDField()
    id = fields.BigIntField(primary_key=True, generated=True)
    experiment_id = fields.UUIDField()
    from_status = fields.TextField(null=True)
    to_status = fields.TextField()
    actor = fields.TextField()
    actor_role = fields.TextField()
    at = fields.DatetimeField(db_default=CLOCK)

    class Meta:
        table = "experiment_status_audit"
        unique_together = (("organization_id", "id"),)


class ExperimentExposure(Model):
    """One exposed person of an experiment. Real key: (organization_id, experiment_id, person_id)."""

    organization_id = fields.UUIDField()
    experiment_id = fields.UUIDField()
    person_id = TextKeyField(primary_key=True)
    variant = fields.TextField()
    first_exposed_at = fields.DatetimeField()
    conflicted = fields.BooleanField(db_default=SqlDefault("false"))
    variants = ArrayField("text")

    class Meta:
        table = "experiment_exposures"
        unique_together = (("organization_id", "experiment_id", "person_id"),)


class ExperimentPersonValue(Model):
    """A person's value of one metric. Real key: (organization_id, experiment_id, metric, person_id)."""

    organization_id = fields.UUIDField()
    experiment_id = fields.UUIDField()
    metric = fields.TextField()
    person_id = TextKeyField(primary_key=True)
    value = fields.FloatField(db_default=SqlDefault("0"))
    pre_value = fields.FloatField(db_default=SqlDefault("0"))

    class Meta:
        table = "experiment_person_values"
        unique_together = (("organization_id", "experiment_id", "metric", "person_id"),)


class ExperimentStatistic(Model):
    """Sufficient statistics of one metric in one variant. Real key: (organization_id,
    experiment_id, metric, variant)."""

    organization_id = fields.UUIDField()
    experiment_id = fields.UUIDField()
    metric = fields.TextField()
    variant = TextKeyField(primary_key=True)
    n = fields.BigIntField(db_default=SqlDefault("0"))
    sum = fields.FloatField(db_default=SqlDefault("0"))
    sum_squares = fields.FloatField(db_default=SqlDefault("0"))
    pre_sum = fields.FloatField(db_default=SqlDefault("0"))
    pre_sum_squares = fields.FloatField(db_default=SqlDefault("0"))
    cross_product = fields.FloatField(db_default=SqlDefault("0"))
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "experiment_statistics"
        unique_together = (("organization_id", "experiment_id", "metric", "variant"),)
