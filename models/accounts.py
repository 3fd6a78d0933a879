"""People, their memberships and sign-ins, invitations, keys and the audit log (migration
0013). Tokens of every kind are stored as SHA-256 hashes, passwords as argon2id hashes."""

from __future__ import annotations

from tortoise import fields
from tortoise.fields.db_defaults import SqlDefault
from tortoise.models import Model

from models.fields import NOW, TextKeyField


class User(Model):
    """A person who signs in; global, since one person may belong to several organizations.
    Emails are stored lowercased."""

    id = fields.UUIDField(primary_key=True)
    email = TextKeyField(unique=True)
    name = fields.TextField(db_default="")
    created_at = fields.DatetimeField(db_default=NOW)
    password_hash = fields.TextField(null=True)  # null: invited or created, no password yet
    is_platform_admin = fields.BooleanField(db_default=False)
    password_changed_at = fields.DatetimeField(null=True)
    last_sign_in_at = fields.DatetimeField(null=True)

    class Meta:
        table = "users"


class Membership(Model):
    """A user's role in one organization. Real key: (organization_id, user_id)."""

    organization_id = fields.UUIDField()
    user_id = fields.UUIDField(primary_key=True)
    role = fields.TextField()  # org_admin | provider | viewer
    profile_id = fields.UUIDField(null=True)  # providers: the profile they own
    created_at = fields.DatetimeField(db_default=NOW)
    updated_at = fields.DatetimeField(db_default=NOW)

    class Meta:
        table = "memberships"
        unique_together = (("organization_id", "user_id"),)


class SignIn(Model):
    """A sign-in: a refresh-token family, or a browser's cookie session."""

    id = fields.UUIDField(primary_key=True)
    user_id = fields.UUIDField()
    organization_id = fields.UUIDField(null=True)  # null: a platform admin's sign-in
    kind = fields.TextField()  # token | cookie
    secret_hash = fields.TextField(null=True)
    address = fields.TextField(null=True)
    user_agent = fields.TextField(null=True)
    created_at = fields.DatetimeField(db_default=NOW)
    last_used_at = fields.DatetimeField(db_default=NOW)
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    revoked_reason = fields.TextField(null=True)

    class Meta:
        table = "auth_sessions"


class RefreshToken(Model):
    """One link of a session's rotation chain; used once, then replaced."""

    token_hash = TextKeyField(primary_key=True)
    session_id = fields.UUIDField()
    created_at = fields.DatetimeField(db_default=NOW)
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "refresh_tokens"


class Invitation(Model):
    """An invitation to join an organization with a role; its token works once, until it
    expires. Real key: (organization_id, id)."""

    organization_id = fields.UUIDField()
    id = fields.UUIDField(primary_key=True)
    email = fields.TextField()
    role = fields.TextField()
    profile_id = fields.UUIDField(null=True)
    token_hash = fields.TextField()
    invited_by = fields.TextField()
    created_at = fields.DatetimeField(db_default=NOW)
    expires_at = fields.DatetimeField()
    accepted_at = fields.DatetimeField(null=True)
    accepted_by = fields.UUIDField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "invitations"
        unique_together = (("organization_id", "id"),)


class PasswordReset(Model):
    """A single-use link to set a new password, made by an admin for a user."""

    id = fields.UUIDField(primary_key=True)
    user_id = fields.UUIDField()
    token_hash = fields.TextField()
    created_by = fields.TextField()
    created_at = fields.DatetimeField(db_default=NOW)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "password_resets"


class ApiKey(Model):
    """A personal API key (acts as its user, with their role or a narrower one) or a service
    token (publishes domain events). Real key: (organization_id, id)."""

    organization_id = fields.UUIDField()
    id = fields.UUIDField(primary_key=True)
    kind = fields.TextField()  # personal | service
    name = fields.TextField()
    key_hash = fields.TextField()
    user_id = fields.UUIDField(null=True)
    role = fields.TextField()
    profile_id = fields.UUIDField(null=True)
    created_by = fields.TextField()
    created_at = fields.DatetimeField(db_default=NOW)
    last_used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_keys"
        unique_together = (("organization_id", "id"),)


class AuditEntry(Model):
    """Who did what in which role, when, from where, to what, before and after, and why:
    sign-ins, invitations, role changes, keys, and every admin mutation."""

    id = fields.BigIntField(primary_key=True, generated=True)
    at = fields.DatetimeField(db_default=NOW)
    organization_id = fields.UUIDField(null=True)
    actor = fields.TextField()
    actor_user_id = fields.UUIDField(null=True)
    address = fields.TextField(null=True)
    action = fields.TextField()
    target = fields.TextField(null=True)
    details = fields.JSONField(db_default=SqlDefault("'{}'::jsonb"))
    role = fields.TextField(null=True)  # the actor's role when it acted (migration 0018)
    before = fields.JSONField(null=True)
    after = fields.JSONField(null=True)
    reason = fields.TextField(null=True)

    class Meta:
        table = "audit_log"
