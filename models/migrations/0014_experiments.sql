-- pulsegraph 0014: A/B experiments, their exposures and the worker's sufficient statistics.
--
-- experiments: one experiment as data. `variants` is [{key, name, weight}] (control first),
--   `targeting` {cohortId} or {filters: [...]} (person properties), `metrics` [{key, name,
--   role, kind, ...}] (app/services/experiments/definitions.py reads and checks them).
--   `tracked_types` are the event types its metrics read: while it runs, ingestion leaves
--   events of those types pending so the worker's experiment consumer sees them.
-- experiment_status_audit: every status change, who and when.
-- experiment_exposures: one row per exposed person (the first exposure wins the variant);
--   a person later exposed to another variant is `conflicted` (every variant seen in
--   `variants`) and taken out of every statistic.
-- experiment_person_values: each exposed person's value of each metric (and CUPED's
--   pre-exposure value), the state the worker updates incrementally.
-- experiment_statistics: per experiment, metric and variant the sufficient statistics
--   every result is computed from (n, sum, sum of squares, pre sums, cross-product).

CREATE TABLE experiments (
    organization_id            uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                         uuid NOT NULL,
    key                        text NOT NULL,
    name                       text NOT NULL,
    hypothesis                 text NOT NULL DEFAULT '',
    status                     text NOT NULL CHECK (status IN ('draft', 'running', 'stopped', 'completed')),
    variants                   jsonb NOT NULL,
    allocation                 double precision NOT NULL DEFAULT 1 CHECK (allocation > 0 AND allocation <= 1),
    targeting                  jsonb NOT NULL DEFAULT '{}'::jsonb,
    metrics                    jsonb NOT NULL DEFAULT '[]'::jsonb,
    tracked_types              text[] NOT NULL DEFAULT '{}',
    engine                     text NOT NULL DEFAULT 'frequentist',
    correction                 text NOT NULL DEFAULT 'holm',
    alpha                      double precision NOT NULL DEFAULT 0.05,
    sequential_tuning          double precision NOT NULL DEFAULT 5000,
    cuped_days                 integer,
    minimum_detectable_effect  double precision,
    minimum_sample_size        integer,
    started_at                 timestamptz,
    ended_at                   timestamptz,
    created_by                 text NOT NULL,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id),
    UNIQUE (organization_id, key)
);
CREATE INDEX experiments_running ON experiments (organization_id) WHERE status = 'running';

CREATE TABLE experiment_status_audit (
    organization_id uuid NOT NULL,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    experiment_id   uuid NOT NULL,
    from_status     text,
    to_status       text NOT NULL,
    actor           text NOT NULL,
    actor_role      text NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, experiment_id) REFERENCES experiments (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX experiment_status_audit_experiment ON experiment_status_audit (organization_id, experiment_id, id);

CREATE TABLE experiment_exposures (
    organization_id  uuid NOT NULL,
    experiment_id    uuid NOT NULL,
    person_id        text NOT NULL,
    variant          text NOT NULL,
    first_exposed_at timestamptz NOT NULL,
    conflicted       boolean NOT NULL DEFAULT false,
    variants         text[] NOT NULL,
    PRIMARY KEY (organization_id, experiment_id, person_id),
    FOREIGN KEY (organization_id, experiment_id) REFERENCES experiments (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX experiment_exposures_conflicted ON experiment_exposures (organization_id, experiment_id, person_id)
    WHERE conflicted;

CREATE TABLE experiment_person_values (
    organization_id uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    metric          text NOT NULL,
    person_id       text NOT NULL,
    value           double precision NOT NULL DEFAULT 0,
    pre_value       double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (organization_id, experiment_id, metric, person_id),
    FOREIGN KEY (organization_id, experiment_id) REFERENCES experiments (organization_id, id) ON DELETE CASCADE
);

CREATE TABLE experiment_statistics (
    organization_id uuid NOT NULL,
    experiment_id   uuid NOT NULL,
    metric          text NOT NULL,
    variant         text NOT NULL,
    n               bigint NOT NULL DEFAULT 0,
    sum             double precision NOT NULL DEFAULT 0,
    sum_squares     double precision NOT NULL DEFAULT 0,
    pre_sum         double precision NOT NULL DEFAULT 0,
    pre_sum_squares double precision NOT NULL DEFAULT 0,
    cross_product   double precision NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, experiment_id, metric, variant),
    FOREIGN KEY (organization_id, experiment_id) REFERENCES experiments (organization_id, id) ON DELETE CASCADE
);
