-- pulsegraph 0015: a services marketplace. Service executions roll up per service into
-- latency sketches, searches, views and conversions into counters; marketplace sales name
-- the creator who earns them.
--
-- transactions.creator_id: who earns a sale (properties.creatorId, else the profile id as
--   text; a refund copies its sale's). Creator earnings = amount - platform fee.
-- service_rollups: service.executed per (grain, local bucket start, service, category):
--   executions, errors, the latency sum (for the average), a KLL sketch of the latencies
--   (Apache DataSketches kll_doubles_sketch, k = 200, serialized; merges across buckets for
--   any range's percentiles), and the error codes counted ({"code": n}). category is ''
--   for executions without one. Grains: hour, day, month in the organization's zone.

ALTER TABLE transactions ADD COLUMN creator_id text;

CREATE TABLE service_rollups (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    grain           text NOT NULL CHECK (grain IN ('hour', 'day', 'month')),
    bucket_start    timestamptz NOT NULL,
    service_id      text NOT NULL,
    category        text NOT NULL DEFAULT '',
    executions      bigint NOT NULL DEFAULT 0,
    errors          bigint NOT NULL DEFAULT 0,
    latency_sum_ms  double precision NOT NULL DEFAULT 0,
    latency_kll     bytea,
    error_codes     jsonb NOT NULL DEFAULT '{}'::jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, grain, bucket_start, service_id, category)
);

-- marketplace_rollups: marketplace.searched / viewed / converted per (grain, local bucket
--   start, kind, key, category, currency): kind 'search' (key: the query trimmed, lowercased,
--   blanks folded), 'view' or 'conversion' (key: the service id); category '' for events
--   without one, currency '' but for conversions. events counts them, zero_results the
--   searches that found nothing, amount_minor the conversions' amounts.
CREATE TABLE marketplace_rollups (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    grain           text NOT NULL CHECK (grain IN ('hour', 'day', 'month')),
    bucket_start    timestamptz NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('search', 'view', 'conversion')),
    key             text NOT NULL,
    category        text NOT NULL DEFAULT '',
    currency        text NOT NULL DEFAULT '',
    events          bigint NOT NULL DEFAULT 0,
    zero_results    bigint NOT NULL DEFAULT 0,
    amount_minor    bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, grain, bucket_start, kind, key, category, currency)
);
