-- System health: API timings per minute, written by every API process (app/services/system_health).
-- Each process overwrites its own running totals for a minute, so a flush is idempotent and
-- readers merge processes and minutes by adding counts and histogram buckets.
CREATE TABLE api_timings (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    minute timestamptz NOT NULL,
    process text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('graphql', 'http')),
    name text NOT NULL,
    organization_id uuid,
    count bigint NOT NULL,
    errors bigint NOT NULL,
    slow bigint NOT NULL,
    total_ms double precision NOT NULL,
    max_ms double precision NOT NULL,
    buckets bigint[] NOT NULL
);
CREATE UNIQUE INDEX api_timings_cell ON api_timings (minute, process, kind, name, organization_id) NULLS NOT DISTINCT;

-- The API processes alive recently, with their database pool as they last saw it.
CREATE TABLE api_processes (
    process text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at timestamptz NOT NULL,
    pool_min integer NOT NULL,
    pool_max integer NOT NULL,
    pool_size integer NOT NULL,
    pool_in_use integer NOT NULL,
    pool_idle integer NOT NULL,
    pool_waiting integer NOT NULL
);
