-- pulsegraph 0001: tenants, credentials, raw events, sessions, the outbox, profile events
-- and rollups. Every table carries organization_id; high-volume tables keep it first in
-- their primary key so they can later be distributed by tenant.

CREATE TABLE organizations (
    id          uuid PRIMARY KEY,
    slug        text NOT NULL UNIQUE,
    name        text NOT NULL,
    timezone    text NOT NULL DEFAULT 'UTC',
    currency    char(3) NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE profiles (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL,
    slug            text NOT NULL,
    name            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id),
    UNIQUE (organization_id, slug)
);
CREATE INDEX profiles_org ON profiles (organization_id, created_at);

CREATE TABLE users (
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid PRIMARY KEY,
    email           text NOT NULL UNIQUE,
    name            text NOT NULL DEFAULT '',
    role            text NOT NULL CHECK (role IN ('admin', 'org_admin', 'provider', 'service')),
    profile_id      uuid REFERENCES profiles (id) ON DELETE CASCADE,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ingestion_keys (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid PRIMARY KEY,
    name            text NOT NULL DEFAULT '',
    prefix          text NOT NULL UNIQUE,
    key_hash        text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz
);

-- Rotating salts for cookie-less visitor ids; a day's salt is deleted after it ends so
-- yesterday's hashes can no longer be recomputed from an IP and a user agent.
CREATE TABLE visitor_salts (
    day        date PRIMARY KEY,
    salt       bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Raw events, one row per accepted event, range-partitioned by month on occurred_at.
-- Attribution (UTM, referrer, landing page, device, browser, OS, geo) is stored on the
-- event itself: a second table would double the write cost of every event.
CREATE TABLE events (
    organization_id uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    event_id        text NOT NULL,
    type            text NOT NULL,
    profile_id      uuid,
    visitor_id      text,
    user_id         text,
    anonymous_id    text,
    session_id      text,
    properties      jsonb NOT NULL DEFAULT '{}'::jsonb,
    amount_minor    bigint,
    currency        char(3),
    engagement_ms   integer,
    ip              inet,
    country         char(2),
    region          text,
    city            text,
    asn             bigint,
    as_org          text,
    user_agent      text,
    device_type     text,
    browser         text,
    os              text,
    url             text,
    referrer        text,
    referrer_domain text,
    utm_source      text,
    utm_medium      text,
    utm_campaign    text,
    utm_term        text,
    utm_content     text,
    dnt             boolean NOT NULL DEFAULT false,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, occurred_at, event_id)
) PARTITION BY RANGE (occurred_at);
CREATE INDEX events_time ON events USING brin (occurred_at);
CREATE INDEX events_type_time ON events (organization_id, type, occurred_at);
CREATE INDEX events_actor_time ON events (organization_id, visitor_id, occurred_at);
CREATE INDEX events_profile_time ON events (organization_id, profile_id, occurred_at) WHERE profile_id IS NOT NULL;
CREATE INDEX events_session ON events (organization_id, session_id) WHERE session_id IS NOT NULL;

CREATE TABLE sessions (
    organization_id uuid NOT NULL,
    id              text NOT NULL,
    visitor_id      text,
    started_at      timestamptz NOT NULL,
    last_seen_at    timestamptz NOT NULL,
    event_count     integer NOT NULL DEFAULT 0,
    landing_page    text,
    referrer_domain text,
    utm_source      text,
    utm_medium      text,
    utm_campaign    text,
    device_type     text,
    browser         text,
    os              text,
    country         char(2),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX sessions_visitor ON sessions (organization_id, visitor_id, last_seen_at DESC);

-- The outbox is both the queue the worker drains and the idempotency ledger: its primary
-- key refuses a second event with the same id, and rows are kept once processed.
CREATE TABLE outbox (
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    organization_id uuid NOT NULL,
    event_id        text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    type            text NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    processed_at    timestamptz,
    PRIMARY KEY (organization_id, event_id)
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE processed_at IS NULL;

-- What happened on a profile, as its provider sees it; written by the worker.
CREATE TABLE profile_events (
    organization_id uuid NOT NULL,
    profile_id      uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    event_id        text NOT NULL,
    kind            text NOT NULL,
    visitor_id      text,
    session_id      text,
    country         char(2),
    city            text,
    device_type     text,
    browser         text,
    os              text,
    referrer_domain text,
    utm_source      text,
    is_gov          boolean NOT NULL DEFAULT false,
    amount_minor    bigint,
    currency        char(3),
    engagement_ms   integer,
    PRIMARY KEY (organization_id, profile_id, occurred_at, event_id)
) PARTITION BY RANGE (occurred_at);

-- Rollups: grain 'hour' and 'day', bucket_start is the start of the bucket in the
-- organization's time zone. Unique visitors are HyperLogLog sketches so any range can be
-- answered by a union, never by summing daily uniques.
CREATE TABLE profile_rollups (
    organization_id uuid NOT NULL,
    profile_id      uuid NOT NULL,
    grain           text NOT NULL CHECK (grain IN ('hour', 'day')),
    bucket_start    timestamptz NOT NULL,
    views           bigint NOT NULL DEFAULT 0,
    inquiries       bigint NOT NULL DEFAULT 0,
    conversions     bigint NOT NULL DEFAULT 0,
    engagement_ms   bigint NOT NULL DEFAULT 0,
    visitors_hll    bytea,
    inquirers_hll   bytea,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, profile_id, grain, bucket_start)
);

CREATE TABLE profile_revenue_rollups (
    organization_id uuid NOT NULL,
    profile_id      uuid NOT NULL,
    grain           text NOT NULL CHECK (grain IN ('hour', 'day')),
    bucket_start    timestamptz NOT NULL,
    source          text NOT NULL,
    currency        char(3) NOT NULL,
    amount_minor    bigint NOT NULL DEFAULT 0,
    transactions    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, profile_id, grain, bucket_start, source, currency)
);

CREATE TABLE profile_referrer_rollups (
    organization_id uuid NOT NULL,
    profile_id      uuid NOT NULL,
    grain           text NOT NULL CHECK (grain IN ('hour', 'day')),
    bucket_start    timestamptz NOT NULL,
    referrer        text NOT NULL,
    views           bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, profile_id, grain, bucket_start, referrer)
);

-- Monthly partitions are created ahead of time by the migration and on demand by
-- ingestion (for back-filled or late events); this function is the one place that
-- knows their names.
CREATE FUNCTION pulsegraph_ensure_month_partition(parent text, month_start timestamptz)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    lower_bound timestamptz := date_trunc('month', month_start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    upper_bound timestamptz := lower_bound + interval '1 month';
    child text := format('%s_%s', parent, to_char(lower_bound AT TIME ZONE 'UTC', 'YYYY_MM'));
BEGIN
    EXECUTE format(
        'CREATE TABLE IF NOT EXISTS %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
        child, parent, lower_bound, upper_bound);
EXCEPTION WHEN duplicate_table OR unique_violation THEN
    NULL;  -- another session created it first
END $$;

SELECT pulsegraph_ensure_month_partition(p.parent, m)
FROM (VALUES ('events'), ('profile_events')) AS p(parent),
     generate_series(date_trunc('month', now()) - interval '13 months',
                     date_trunc('month', now()) + interval '2 months',
                     interval '1 month') AS m;
