"""Where each table lives in a distributed PostgreSQL (Citus), declared in one place.

Every table the migrations create is distributed by `organization_id` (its primary key and
every unique index include that column, and it is never NULL), except the reference tables
below: small, global, and copied whole to every node. `tests/test_catalog.py` checks the
migrated catalog against this rule, so a new table either carries its tenant or is named here.
"""

from __future__ import annotations

DISTRIBUTION_COLUMN = "organization_id"

REFERENCE_TABLES: frozenset[str] = frozenset({
    "organizations",  # the tenants themselves
    "users",  # people sign in before a tenant is known
    "auth_sessions",  # sign-ins, found by their token before the tenant is known
    "refresh_tokens",
    "password_resets",  # per user, not per tenant
    "audit_log",  # a failed sign-in may name no tenant; written rarely
    "ingestion_keys",  # found by prefix before the tenant is known
    "revoked_credentials",  # every API process reads every revocation
    "visitor_salts",  # one salt a day for every tenant
    "ip_hmac_keys",  # one key a period for every tenant
    "notification_channels",  # the platform's own channels have no tenant
    "notification_deliveries",  # one queue the worker claims across tenants; written per alert, not per event
    "notification_attempts",
    "schema_migrations",
    "api_timings",  # installation-wide API timings, per process and minute
    "api_processes",  # the API processes and their database pools
})  # fmt: skip
