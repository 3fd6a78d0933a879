-- Pre-aggregates of `events` that trends, retention, lifecycle and stickiness read instead of
-- the raw rows when a query asks nothing the aggregate lost (see app/services/insights/rollups.py).
-- Hours are UTC hours: every local period of a whole-hour time zone is a union of them.
--
-- Ingestion only appends each stored event's few rolled-up columns to `event_rollup_queue`
-- (a statement trigger, whatever the path: API, COPY); the worker folds the queue into the
-- aggregates in large batches (`fold_event_rollups`). Readers read the aggregates and the
-- queue together (the `*_live` views), so an answer is exact whether or not the worker has
-- folded yet. Deleting events (retention, data-subject deletion) takes them out of the queue
-- or the aggregates in the same transaction.

-- Events per (type, UTC hour), in total (dimension '') and per value of each stored dimension
-- a breakdown may name. A missing value is its own row (value NULL).
CREATE TABLE event_hour_counts (
    organization_id uuid NOT NULL,
    id              bigint GENERATED ALWAYS AS IDENTITY,  -- a key: `value` may be NULL
    type            text NOT NULL,
    hour            timestamptz NOT NULL,
    dimension       text NOT NULL,
    value           text,
    events          bigint NOT NULL,
    PRIMARY KEY (organization_id, id),
    CONSTRAINT event_hour_counts_key UNIQUE NULLS NOT DISTINCT (organization_id, type, dimension, hour, value)
);

-- Who did what in which UTC hour (visitor ids, persons come through person_aliases).
-- Partitioned by type: an insight reads the partitions of the types it names, not the rows
-- of every other type.
CREATE TABLE event_actor_hours (
    organization_id uuid NOT NULL,
    type            text NOT NULL,
    hour            timestamptz NOT NULL,
    visitor_id      text NOT NULL,
    PRIMARY KEY (organization_id, type, hour, visitor_id)
) PARTITION BY HASH (type);
DO $$
BEGIN
    FOR i IN 0..7 LOOP
        EXECUTE format('CREATE TABLE event_actor_hours_%s PARTITION OF event_actor_hours'
                       ' FOR VALUES WITH (MODULUS 8, REMAINDER %s)', i, i);
    END LOOP;
END
$$;

-- Each visitor's first hour of each type: "new" and "first time" without reading all history.
-- The key carries the hour, so a type's first hours are read from the index alone.
CREATE TABLE event_actor_first (
    organization_id uuid NOT NULL,
    type            text NOT NULL,
    visitor_id      text NOT NULL,
    first_hour      timestamptz NOT NULL,
    PRIMARY KEY (organization_id, type, visitor_id) INCLUDE (first_hour)
);

-- Stored events not folded into the aggregates yet.
CREATE TABLE event_rollup_queue (
    organization_id uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,
    event_id        text NOT NULL,
    type            text NOT NULL,
    visitor_id      text,
    country         text,
    device_type     text,
    browser         text,
    os              text,
    referrer_domain text,
    utm_source      text,
    utm_medium      text,
    utm_campaign    text,
    PRIMARY KEY (organization_id, occurred_at, event_id)
);

-- The rolled-up dimensions of queued events, one row per (event, dimension).
CREATE VIEW event_rollup_queue_dimensions AS
SELECT q.organization_id, q.type, date_trunc('hour', q.occurred_at, 'UTC') AS hour, q.visitor_id, d.dimension, d.value
FROM event_rollup_queue q CROSS JOIN LATERAL (VALUES
    ('', NULL::text), ('country', q.country), ('device_type', q.device_type), ('browser', q.browser),
    ('os', q.os), ('referrer_domain', q.referrer_domain), ('utm_source', q.utm_source),
    ('utm_medium', q.utm_medium), ('utm_campaign', q.utm_campaign)
) AS d(dimension, value);

-- What readers read: the aggregates and the queue. Rows of one key may repeat; readers sum
-- counts and take the actor rows as "was active" (any number of rows).
CREATE VIEW event_hour_counts_live AS
SELECT organization_id, type, hour, dimension, value, events FROM event_hour_counts
UNION ALL
SELECT organization_id, type, hour, dimension, value, 1 FROM event_rollup_queue_dimensions;

CREATE VIEW event_actor_hours_live AS
SELECT organization_id, type, hour, visitor_id FROM event_actor_hours
UNION ALL
SELECT organization_id, type, date_trunc('hour', occurred_at, 'UTC'), visitor_id
FROM event_rollup_queue WHERE visitor_id IS NOT NULL;

CREATE VIEW event_actor_first_live AS
SELECT organization_id, type, visitor_id, first_hour FROM event_actor_first
UNION ALL
SELECT organization_id, type, visitor_id, date_trunc('hour', occurred_at, 'UTC')
FROM event_rollup_queue WHERE visitor_id IS NOT NULL;

CREATE FUNCTION queue_inserted_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_rollup_queue
    SELECT organization_id, occurred_at, event_id, type, visitor_id, country::text, device_type, browser, os,
           referrer_domain, utm_source, utm_medium, utm_campaign
    FROM inserted_events;
    RETURN NULL;
END
$$;

-- Deleted events leave the queue, or the aggregates when already folded. The queue rows are
-- locked first, so a concurrent fold either folded them before (and they are taken out of
-- the aggregates here) or waits and finds them gone.
CREATE FUNCTION unroll_deleted_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM event_rollup_queue q JOIN deleted_events d
        ON q.organization_id = d.organization_id AND q.occurred_at = d.occurred_at AND q.event_id = d.event_id
    ORDER BY q.organization_id, q.occurred_at, q.event_id
    FOR UPDATE OF q;

    UPDATE event_hour_counts c SET events = c.events - g.events
    FROM (
        SELECT e.organization_id, e.type, date_trunc('hour', e.occurred_at, 'UTC') AS hour, d.dimension, d.value,
               count(*) AS events
        FROM deleted_events e CROSS JOIN LATERAL (VALUES
            ('', NULL::text), ('country', e.country::text), ('device_type', e.device_type), ('browser', e.browser),
            ('os', e.os), ('referrer_domain', e.referrer_domain), ('utm_source', e.utm_source),
            ('utm_medium', e.utm_medium), ('utm_campaign', e.utm_campaign)
        ) AS d(dimension, value)
        WHERE NOT EXISTS (
            SELECT 1 FROM event_rollup_queue q
            WHERE q.organization_id = e.organization_id AND q.occurred_at = e.occurred_at AND q.event_id = e.event_id)
        GROUP BY 1, 2, 3, 4, 5
    ) g
    WHERE c.organization_id = g.organization_id AND c.type = g.type AND c.dimension = g.dimension
      AND c.hour = g.hour AND c.value IS NOT DISTINCT FROM g.value;
    DELETE FROM event_hour_counts c USING (SELECT DISTINCT organization_id, type FROM deleted_events) t
    WHERE c.organization_id = t.organization_id AND c.type = t.type AND c.events <= 0;

    DELETE FROM event_rollup_queue q USING deleted_events d
    WHERE q.organization_id = d.organization_id AND q.occurred_at = d.occurred_at AND q.event_id = d.event_id;

    -- A visitor's hour goes with its last event; their first hour moves to the next one.
    DELETE FROM event_actor_hours a
    USING (SELECT DISTINCT organization_id, type, date_trunc('hour', occurred_at, 'UTC') AS hour, visitor_id
           FROM deleted_events WHERE visitor_id IS NOT NULL) g
    WHERE a.organization_id = g.organization_id AND a.type = g.type AND a.hour = g.hour AND a.visitor_id = g.visitor_id
      AND NOT EXISTS (
          SELECT 1 FROM events e
          WHERE e.organization_id = g.organization_id AND e.visitor_id = g.visitor_id AND e.type = g.type
            AND e.occurred_at >= g.hour AND e.occurred_at < g.hour + interval '1 hour');

    WITH touched AS (
        SELECT DISTINCT organization_id, type, visitor_id FROM deleted_events WHERE visitor_id IS NOT NULL
    ), remaining AS (
        SELECT t.organization_id, t.type, t.visitor_id,
               (SELECT min(date_trunc('hour', e.occurred_at, 'UTC')) FROM events e
                WHERE e.organization_id = t.organization_id AND e.visitor_id = t.visitor_id AND e.type = t.type) AS first_hour
        FROM touched t
    ), moved AS (
        UPDATE event_actor_first f SET first_hour = r.first_hour FROM remaining r
        WHERE f.organization_id = r.organization_id AND f.type = r.type AND f.visitor_id = r.visitor_id
          AND r.first_hour IS NOT NULL AND f.first_hour <> r.first_hour
    )
    DELETE FROM event_actor_first f USING remaining r
    WHERE f.organization_id = r.organization_id AND f.type = r.type AND f.visitor_id = r.visitor_id
      AND r.first_hour IS NULL;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_queued_for_rollups AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted_events FOR EACH STATEMENT EXECUTE FUNCTION queue_inserted_events();
CREATE TRIGGER events_unrolled_on_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS deleted_events FOR EACH STATEMENT EXECUTE FUNCTION unroll_deleted_events();

-- Fold up to `batch` queued events into the aggregates; returns how many. One folder at a
-- time (the caller holds an advisory lock); queue rows a deletion holds are left for later.
CREATE FUNCTION fold_event_rollups(batch integer) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    folded integer;
BEGIN
    CREATE TEMPORARY TABLE IF NOT EXISTS folding (LIKE event_rollup_queue) ON COMMIT DELETE ROWS;
    WITH taken AS (
        DELETE FROM event_rollup_queue q WHERE (q.organization_id, q.occurred_at, q.event_id) IN (
            SELECT organization_id, occurred_at, event_id FROM event_rollup_queue LIMIT batch FOR UPDATE SKIP LOCKED)
        RETURNING q.*
    )
    INSERT INTO folding SELECT * FROM taken;
    GET DIAGNOSTICS folded = ROW_COUNT;

    INSERT INTO event_hour_counts AS c (organization_id, type, hour, dimension, value, events)
    SELECT f.organization_id, f.type, date_trunc('hour', f.occurred_at, 'UTC'), d.dimension, d.value, count(*)
    FROM folding f CROSS JOIN LATERAL (VALUES
        ('', NULL::text), ('country', f.country), ('device_type', f.device_type), ('browser', f.browser),
        ('os', f.os), ('referrer_domain', f.referrer_domain), ('utm_source', f.utm_source),
        ('utm_medium', f.utm_medium), ('utm_campaign', f.utm_campaign)
    ) AS d(dimension, value)
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 4, 3, 5
    ON CONFLICT ON CONSTRAINT event_hour_counts_key DO UPDATE SET events = c.events + EXCLUDED.events;

    INSERT INTO event_actor_hours (organization_id, type, hour, visitor_id)
    SELECT DISTINCT organization_id, type, date_trunc('hour', occurred_at, 'UTC'), visitor_id
    FROM folding WHERE visitor_id IS NOT NULL
    ORDER BY 1, 2, 3, 4
    ON CONFLICT DO NOTHING;

    INSERT INTO event_actor_first AS a (organization_id, type, visitor_id, first_hour)
    SELECT organization_id, type, visitor_id, min(date_trunc('hour', occurred_at, 'UTC'))
    FROM folding WHERE visitor_id IS NOT NULL
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (organization_id, type, visitor_id) DO UPDATE SET first_hour = EXCLUDED.first_hour
        WHERE EXCLUDED.first_hour < a.first_hour;

    TRUNCATE folding;
    RETURN folded;
END
$$;

-- Funnels read a person's step events in order (person, time, arrival, id): with those in the
-- type index, a funnel reads the index alone, not the events' wide rows.
DROP INDEX events_type_time;
CREATE INDEX events_type_time ON events (organization_id, type, occurred_at) INCLUDE (visitor_id, received_at, event_id);

-- What was stored before the triggers existed: folded by the worker like new events.
INSERT INTO event_rollup_queue
SELECT organization_id, occurred_at, event_id, type, visitor_id, country::text, device_type, browser, os,
       referrer_domain, utm_source, utm_medium, utm_campaign
FROM events;
