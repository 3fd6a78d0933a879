-- pulsegraph 0002: privacy and retention settings per organization, pseudonymized IPs,
-- and the rotating keys that pseudonymize them.
--
-- ip_retention_days: raw IPs older than this are replaced by a keyed HMAC (events.ip_hash)
--   and set to NULL; 0 = the raw IP is never stored (hashed at ingest). Default 90.
-- event_retention_days: raw events, profile events and sessions older than this are
--   purged once the worker has processed them (rollups stay). NULL = keep forever.
--   Default 395 (13 months: a year-over-year comparison plus the current month).
-- purged_before: the retention job's watermark; raw data before it is gone, so rollups of
--   older buckets cannot be rebuilt from raw data.

ALTER TABLE organizations
    ADD COLUMN ip_retention_days integer NOT NULL DEFAULT 90
        CHECK (ip_retention_days BETWEEN 0 AND 3650),
    ADD COLUMN event_retention_days integer DEFAULT 395
        CHECK (event_retention_days IS NULL OR event_retention_days BETWEEN 31 AND 36500),
    ADD COLUMN purged_before timestamptz;

-- HMAC-SHA256 of (organization, IP) under the key of the period in which it was computed,
-- as "<period>:<hex>"; equal IPs match within one key period only.
ALTER TABLE events ADD COLUMN ip_hash text;

-- One random key per period. A period's key is deleted once the period is over, so
-- hashes made with it can no longer be recomputed from candidate IPs, not even with a
-- copy of the whole database.
CREATE TABLE ip_hmac_keys (
    period_start date PRIMARY KEY,
    period_end   date NOT NULL,
    key          bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The pseudonymization job looks for raw IPs past retention, per organization, by time.
CREATE INDEX events_raw_ip ON events (organization_id, occurred_at) WHERE ip IS NOT NULL;
