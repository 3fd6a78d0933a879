-- Who did what on which day, in the organization's time zone: the actors pre-aggregate of
-- 0021 per local day instead of per UTC hour. A person's visits of one day are often spread
-- over several hours; day, week and month insights (retention, lifecycle, stickiness, daily
-- and rolling active persons) read one row per visitor and day instead of one per hour.
--
-- `day` is the instant the local day starts (date_trunc('day', occurred_at, zone)). Readers
-- use these rows only when every instant they cut time at starts a local day of the same
-- zone (app/services/insights/rollups.py), so a row falls in the period of every event it
-- stands for. Kept like the hourly rows: the worker folds the queue into them, readers read
-- them with the queue (`event_actor_days_live`), deleting events takes their days out, and a
-- change of the organization's zone refolds its days in the new zone.
CREATE TABLE event_actor_days (
    organization_id uuid NOT NULL,
    type            text NOT NULL,
    day             timestamptz NOT NULL,
    visitor_id      text NOT NULL,
    PRIMARY KEY (organization_id, type, day, visitor_id)
) PARTITION BY HASH (type);
DO $$
BEGIN
    FOR i IN 0..7 LOOP
        EXECUTE format('CREATE TABLE event_actor_days_%s PARTITION OF event_actor_days'
                       ' FOR VALUES WITH (MODULUS 8, REMAINDER %s)', i, i);
    END LOOP;
END
$$;

-- A queued event stands for itself: its instant falls in the same period as its day's start
-- whenever every cut starts a day, which is when readers read this view.
CREATE VIEW event_actor_days_live AS
SELECT organization_id, type, day, visitor_id FROM event_actor_days
UNION ALL
SELECT organization_id, type, occurred_at, visitor_id FROM event_rollup_queue WHERE visitor_id IS NOT NULL;

-- The local days of some events: one row per (organization, type, day, visitor).
CREATE FUNCTION event_days_of(org uuid, since timestamptz, until timestamptz)
RETURNS TABLE (organization_id uuid, type text, day timestamptz, visitor_id text) LANGUAGE sql STABLE AS $$
    SELECT DISTINCT e.organization_id, e.type, date_trunc('day', e.occurred_at, o.timezone), e.visitor_id
    FROM events e JOIN organizations o ON o.id = e.organization_id
    WHERE (org IS NULL OR e.organization_id = org) AND e.visitor_id IS NOT NULL
      AND (since IS NULL OR e.occurred_at >= since) AND (until IS NULL OR e.occurred_at < until)
$$;

-- A visitor's day goes with its last event of that type on that day. Fires after
-- `events_unrolled_on_delete` (triggers fire in name order), which locks the deleted events'
-- queue rows first: a fold that took them has committed by then.
CREATE FUNCTION unroll_deleted_event_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM event_actor_days a
    USING (SELECT DISTINCT d.organization_id, d.type, date_trunc('day', d.occurred_at, o.timezone) AS day,
                  d.visitor_id, o.timezone
           FROM deleted_events d JOIN organizations o ON o.id = d.organization_id
           WHERE d.visitor_id IS NOT NULL) g
    WHERE a.organization_id = g.organization_id AND a.type = g.type AND a.day = g.day AND a.visitor_id = g.visitor_id
      AND NOT EXISTS (
          SELECT 1 FROM events e
          WHERE e.organization_id = g.organization_id AND e.visitor_id = g.visitor_id AND e.type = g.type
            AND e.occurred_at >= g.day - interval '3 hours' AND e.occurred_at < g.day + interval '27 hours'
            AND date_trunc('day', e.occurred_at, g.timezone) = g.day);
    RETURN NULL;
END
$$;
CREATE TRIGGER events_unrolled_on_delete_days AFTER DELETE ON events
    REFERENCING OLD TABLE AS deleted_events FOR EACH STATEMENT EXECUTE FUNCTION unroll_deleted_event_days();

-- A new zone cuts other days: the organization's days are folded again from its events.
-- The queue is locked first, so no fold or deletion is half-way through with the old zone,
-- and events stored meanwhile wait to be queued and are folded in the new zone.
CREATE FUNCTION refold_event_days() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    LOCK TABLE event_rollup_queue IN EXCLUSIVE MODE;
    DELETE FROM event_actor_days WHERE organization_id = NEW.id;
    INSERT INTO event_actor_days SELECT * FROM event_days_of(NEW.id, NULL, NULL);
    RETURN NULL;
END
$$;
CREATE TRIGGER organization_days_refolded AFTER UPDATE OF timezone ON organizations
    FOR EACH ROW WHEN (OLD.timezone IS DISTINCT FROM NEW.timezone) EXECUTE FUNCTION refold_event_days();

-- 0021's fold, with the days folded beside the hours.
CREATE OR REPLACE FUNCTION fold_event_rollups(batch integer) RETURNS integer LANGUAGE plpgsql AS $$
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

    INSERT INTO event_actor_days (organization_id, type, day, visitor_id)
    SELECT DISTINCT f.organization_id, f.type, date_trunc('day', f.occurred_at, o.timezone), f.visitor_id
    FROM folding f JOIN organizations o ON o.id = f.organization_id
    WHERE f.visitor_id IS NOT NULL
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

-- "First time" and "new" read the first hours of one type before an instant: by index, not by
-- a scan of every type's.
CREATE INDEX event_actor_first_by_hour ON event_actor_first (organization_id, type, first_hour) INCLUDE (visitor_id);

-- The days of what is stored already (queued events too: the fold skips a day it finds), and
-- their statistics, which the first insights plan with.
INSERT INTO event_actor_days SELECT * FROM event_days_of(NULL, NULL, NULL);
ANALYZE event_actor_days, event_actor_first;
