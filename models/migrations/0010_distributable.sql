-- pulsegraph 0010: every tenant table ready to be distributed by organization_id.
--
-- A distributed PostgreSQL (Citus) shards a table by one column; each primary key and
-- unique index of such a table must include it. Every tenant table already did, except
-- profiles, whose key was its id alone: it becomes (organization_id, id), with a plain
-- index on id for the lookups by id that reports and subscriptions start with.
--
-- Global tables (organizations, users, ingestion keys found by prefix before the tenant is
-- known, the daily salts and IP keys, schema_migrations) stay whole on every node as
-- reference tables; models/tables.py lists them. A reference table cannot point into a
-- distributed one, so users loses its foreign key to profiles (users are not read yet; the
-- accounts work gives them memberships of their own).

ALTER TABLE users DROP CONSTRAINT users_profile_id_fkey;
ALTER TABLE profiles DROP CONSTRAINT profiles_pkey;
ALTER TABLE profiles ADD PRIMARY KEY (organization_id, id);
CREATE INDEX profiles_id ON profiles (id);
