"""Tenants and the people and keys that act on them."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class Organization(Model):
    id = fields.UUIDField(primary_key=True)
    slug = fields.CharField(max_length=64, unique=True)
    name = fields.TextField()
    timezone = fields.TextField(default="UTC")
    currency = fields.CharField(max_length=3, default="USD")
    created_at = fields.DatetimeField(auto_now_add=True)
    ip_retention_days = fields.IntField(default=90)  # 0: raw IPs are never stored
    event_retention_days = fields.IntField(null=True, default=395)  # null: keep forever
    purged_before = fields.DatetimeField(null=True)
    gov_alert_threshold = fields.FloatField(default=0.7)  # gov alerts at or above this confidence

    class Meta:
        table = "organizations"


class Profile(Model):
    """A provider's or creator's public profile: the thing whose audience we measure."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="profiles"
    )
    organization_id: str
    slug = fields.CharField(max_length=128)
    name = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "profiles"


class User(Model):
    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyNullableRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="users", null=True
    )
    organization_id: str | None
    email = fields.CharField(max_length=320, unique=True)
    name = fields.TextField(default="")
    role = fields.CharField(max_length=16)
    profile: fields.ForeignKeyNullableRelation[Profile] = fields.ForeignKeyField(
        "models.Profile", related_name="users", null=True
    )
    profile_id: str | None
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "users"


class IngestionKey(Model):
    """A write-only credential for beacons and servers; only its SHA-256 is stored."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="ingestion_keys"
    )
    organization_id: str
    name = fields.TextField(default="")
    prefix = fields.CharField(max_length=32, unique=True)
    key_hash = fields.TextField()
    created_at = fields.DatetimeField(auto_now_add=True)
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)  # to within a minute: see app.auth

    class Meta:
        table = "ingestion_keys"


class VisitorSalt(Model):
    day = fields.DateField(primary_key=True)
    salt = fields.BinaryField()
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "visitor_salts"
