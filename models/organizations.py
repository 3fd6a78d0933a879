"""Tenants, their profiles and ingestion keys (migrations 0001, 0002, 0003, 0006, 0007,
0010). The organizations service creates and finds them through these models; the platform
service changes an organization's status with SQL. People and their keys: models/accounts.py."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.fields import NOW, FixedCharField, RealField, TextKeyField


class Organization(Model):
    """A tenant. A reference table: read on every node before a tenant's own rows."""

    id = fields.UUIDField(primary_key=True)
    slug = TextKeyField(unique=True)
    name = fields.TextField()
    timezone = fields.TextField(db_default="UTC")  # IANA zone: days and months are bucketed in it
    currency = FixedCharField(max_length=3, db_default="USD")
    created_at = fields.DatetimeField(db_default=NOW)
    ip_retention_days = fields.IntField(db_default=90)  # 0: raw IPs are never stored
    event_retention_days = fields.IntField(null=True, db_default=395)  # null: keep forever
    purged_before = fields.DatetimeField(null=True)
    gov_alert_threshold = RealField(db_default=0.7)  # gov alerts at or above this confidence
    reporting_currency = fields.TextField(null=True)  # ISO 4217; null: no reporting currency
    duo_split_percent = fields.SmallIntField(db_default=50)
    status = fields.TextField(db_default="active")  # active | suspended, changed by platform admins
    status_changed_at = fields.DatetimeField(null=True)
    status_changed_by = fields.TextField(null=True)
    status_reason = fields.TextField(null=True)

    class Meta:
        table = "organizations"


class Profile(Model):
    """A provider's or creator's public profile: the thing whose audience we measure.

    Real key: (organization_id, id); Tortoise knows it by `id`, which is unique on its own
    too (a uuid), so saving or deleting one instance touches one row."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="profiles"
    )
    organization_id: str
    slug = fields.TextField()
    name = fields.TextField()
    created_at = fields.DatetimeField(db_default=NOW)
    kind = fields.TextField(db_default="provider")  # provider | creator | brand (migration 0020)

    class Meta:
        table = "profiles"
        unique_together = (("organization_id", "id"), ("organization_id", "slug"))


class IngestionKey(Model):
    """A write-only credential for beacons and servers; only its SHA-256 is stored."""

    id = fields.UUIDField(primary_key=True)
    organization: fields.ForeignKeyRelation[Organization] = fields.ForeignKeyField(
        "models.Organization", related_name="ingestion_keys"
    )
    organization_id: str
    name = fields.TextField(db_default="")
    prefix = TextKeyField(unique=True)
    key_hash = fields.TextField()
    created_at = fields.DatetimeField(db_default=NOW)
    revoked_at = fields.DatetimeField(null=True)
    last_used_at = fields.DatetimeField(null=True)  # to within a minute: see app.auth

    class Meta:
        table = "ingestion_keys"


class RevokedCredential(Model):
    """A token (by its jti) or an ingestion key taken back; every API process reads new rows
    by increasing id (app/revocation.py), so writers lock the table until commit."""

    id = fields.BigIntField(primary_key=True, generated=True)
    kind = fields.TextField()  # token | ingestion_key
    credential_id = fields.TextField()
    expires_at = fields.DatetimeField(null=True)  # after it the row can go
    revoked_at = fields.DatetimeField(db_default=NOW)
    revoked_by = fields.TextField()

    class Meta:
        table = "revoked_credentials"
        unique_together = (("kind", "credential_id"),)
