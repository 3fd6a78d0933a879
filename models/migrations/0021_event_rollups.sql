-- Pre-aggregates of `events` that trends, retention, lifecycle and stickiness read instead of
-- the raw rows when a query asks nothing the aggregate lost (see app/services/insights/rollups.py).
-- Statement-level triggers keep them equal to `events` in the transaction that inserts or
-- deletes events, whatever the path (ingestion, COPY, retention purge, data-subject deletion).
-- Hours are UTC hours: every local period of a whole-hour time zone is a union of them.

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
    CONSTRAINT event_hour_counts_key UNIQUE NULLS NOT DISTINCT (organization_id, type, hour, dimension, value)
);

-- Who did what in which UTC hour (visitor ids, persons come through person_aliases).
-- Partitioned by type: an insight reads the partitions of the types it names, not the rows
-- of every other type.
CREATE TABLE event_actor_hours (
    organization_id uuid NOT NULL,
    type            text NOT NULL,
    hour            timestamptz NOT NULL,
    visitor_id      text NOT NULL,
    events          bigint NOT NULL,
    PRIMARY KEY (organization_id, type, hour, visitor_id)
) PARTITION BY HASH (type);

-- Each visitor's first hour of each type: "new" and "first time" without reading all history.
CREATE TABLE event_actor_first (
    organization_id uuid NOT NULL,
    type            text NOT NULL,
    visitor_id      text NOT NULL,
    first_hour      timestamptz NOT NULL,
    PRIMARY KEY (organization_id, type, visitor_id)
) PARTITION BY HASH (type);
CREATE INDEX event_actor_first_hour ON event_actor_first (organization_id, type, first_hour);

DO $$
BEGIN
    FOR i IN 0..7 LOOP
        EXECUTE format('CREATE TABLE event_actor_hours_%s PARTITION OF event_actor_hours'
                       ' FOR VALUES WITH (MODULUS 8, REMAINDER %s)', i, i);
        EXECUTE format('CREATE TABLE event_actor_first_%s PARTITION OF event_actor_first'
                       ' FOR VALUES WITH (MODULUS 8, REMAINDER %s)', i, i);
    END LOOP;
END
$$;

CREATE FUNCTION roll_up_inserted_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO event_hour_counts AS c (organization_id, type, hour, dimension, value, events)
    SELECT e.organization_id, e.type, date_trunc('hour', e.occurred_at, 'UTC'), d.dimension, d.value, count(*)
    FROM inserted_events e CROSS JOIN LATERAL (VALUES
        ('', NULL::text), ('country', e.country::text), ('device_type', e.device_type), ('browser', e.browser),
        ('os', e.os), ('referrer_domain', e.referrer_domain), ('utm_source', e.utm_source),
        ('utm_medium', e.utm_medium), ('utm_campaign', e.utm_campaign)
    ) AS d(dimension, value)
    GROUP BY 1, 2, 3, 4, 5
    ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT ON CONSTRAINT event_hour_counts_key DO UPDATE SET events = c.events + EXCLUDED.events;

    INSERT INTO event_actor_hours AS a (organization_id, type, hour, visitor_id, events)
    SELECT organization_id, type, date_trunc('hour', occurred_at, 'UTC'), visitor_id, count(*)
    FROM inserted_events WHERE visitor_id IS NOT NULL
    GROUP BY 1, 2, 3, 4
    ORDER BY 1, 2, 3, 4
    ON CONFLICT (organization_id, type, hour, visitor_id) DO UPDATE SET events = a.events + EXCLUDED.events;

    INSERT INTO event_actor_first AS f (organization_id, type, visitor_id, first_hour)
    SELECT organization_id, type, visitor_id, min(date_trunc('hour', occurred_at, 'UTC'))
    FROM inserted_events WHERE visitor_id IS NOT NULL
    GROUP BY 1, 2, 3
    ORDER BY 1, 2, 3
    ON CONFLICT (organization_id, type, visitor_id) DO UPDATE SET first_hour = EXCLUDED.first_hour
        WHERE EXCLUDED.first_hour < f.first_hour;
    RETURN NULL;
END
$$;

CREATE FUNCTION roll_up_deleted_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE event_hour_counts c SET events = c.events - g.events
    FROM (
        SELECT e.organization_id, e.type, date_trunc('hour', e.occurred_at, 'UTC') AS hour, d.dimension, d.value,
               count(*) AS events
        FROM deleted_events e CROSS JOIN LATERAL (VALUES
            ('', NULL::text), ('country', e.country::text), ('device_type', e.device_type), ('browser', e.browser),
            ('os', e.os), ('referrer_domain', e.referrer_domain), ('utm_source', e.utm_source),
            ('utm_medium', e.utm_medium), ('utm_campaign', e.utm_campaign)
        ) AS d(dimension, value)
        GROUP BY 1, 2, 3, 4, 5
    ) g
    WHERE c.organization_id = g.organization_id AND c.type = g.type AND c.hour = g.hour
      AND c.dimension = g.dimension AND c.value IS NOT DISTINCT FROM g.value;
    DELETE FROM event_hour_counts c USING (SELECT DISTINCT organization_id, type FROM deleted_events) t
    WHERE c.organization_id = t.organization_id AND c.type = t.type AND c.events <= 0;

    UPDATE event_actor_hours a SET events = a.events - g.events
    FROM (
        SELECT organization_id, type, date_trunc('hour', occurred_at, 'UTC') AS hour, visitor_id, count(*) AS events
        FROM deleted_events WHERE visitor_id IS NOT NULL GROUP BY 1, 2, 3, 4
    ) g
    WHERE a.organization_id = g.organization_id AND a.type = g.type AND a.hour = g.hour AND a.visitor_id = g.visitor_id;
    DELETE FROM event_actor_hours a
    USING (SELECT DISTINCT organization_id, type, date_trunc('hour', occurred_at, 'UTC') AS hour, visitor_id
           FROM deleted_events WHERE visitor_id IS NOT NULL) g
    WHERE a.organization_id = g.organization_id AND a.type = g.type AND a.hour = g.hour
      AND a.visitor_id = g.visitor_id AND a.events <= 0;

    -- A visitor's first hour moves to their next remaining one, or goes with their last event.
    WITH touched AS (
        SELECT DISTINCT organization_id, type, visitor_id FROM deleted_events WHERE visitor_id IS NOT NULL
    ), remaining AS (
        SELECT t.organization_id, t.type, t.visitor_id,
               (SELECT min(a.hour) FROM event_actor_hours a
                WHERE a.organization_id = t.organization_id AND a.type = t.type AND a.visitor_id = t.visitor_id) AS first_hour
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

CREATE TRIGGER events_rolled_up_on_insert AFTER INSERT ON events
    REFERENCING NEW TABLE AS inserted_events FOR EACH STATEMENT EXECUTE FUNCTION roll_up_inserted_events();
CREATE TRIGGER events_rolled_up_on_delete AFTER DELETE ON events
    REFERENCING OLD TABLE AS deleted_events FOR EACH STATEMENT EXECUTE FUNCTION roll_up_deleted_events();

-- Funnels read a person's step events in order (person, time, arrival, id): with those in the
-- type index, a funnel reads the index alone, not the events' wide rows.
DROP INDEX events_type_time;
CREATE INDEX events_type_time ON events (organization_id, type, occurred_at) INCLUDE (visitor_id, received_at, event_id);

-- What was stored before the triggers existed.
INSERT INTO event_hour_counts (organization_id, type, hour, dimension, value, events)
SELECT e.organization_id, e.type, date_trunc('hour', e.occurred_at, 'UTC'), d.dimension, d.value, count(*)
FROM events e CROSS JOIN LATERAL (VALUES
    ('', NULL::text), ('country', e.country::text), ('device_type', e.device_type), ('browser', e.browser),
    ('os', e.os), ('referrer_domain', e.referrer_domain), ('utm_source', e.utm_source),
    ('utm_medium', e.utm_medium), ('utm_campaign', e.utm_campaign)
) AS d(dimension, value)
GROUP BY 1, 2, 3, 4, 5;
INSERT INTO event_actor_hours (organization_id, type, hour, visitor_id, events)
SELECT organization_id, type, date_trunc('hour', occurred_at, 'UTC'), visitor_id, count(*)
FROM events WHERE visitor_id IS NOT NULL GROUP BY 1, 2, 3, 4;
INSERT INTO event_actor_first (organization_id, type, visitor_id, first_hour)
SELECT organization_id, type, visitor_id, min(hour) FROM event_actor_hours GROUP BY 1, 2, 3;
