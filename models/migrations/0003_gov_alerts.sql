-- pulsegraph 0003: gov alerts. The worker checks every processed profile view with the gov
-- detector; a view at or above its organization's threshold is flagged (profile_events.is_gov)
-- and recorded here, once per view (the primary key is the view's event id).
--
-- An alert describes the network, never the person: it keeps the network's organization,
-- AS number, country and the matched curated network, not the visitor's IP or visitor id.

ALTER TABLE organizations
    ADD COLUMN gov_alert_threshold real NOT NULL DEFAULT 0.7
        CHECK (gov_alert_threshold > 0 AND gov_alert_threshold <= 1);

CREATE TABLE gov_alerts (
    organization_id uuid NOT NULL,
    event_id        text NOT NULL,
    profile_id      uuid NOT NULL,
    occurred_at     timestamptz NOT NULL,          -- when the view happened
    raised_at       timestamptz NOT NULL DEFAULT now(),
    confidence      real NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    threshold       real NOT NULL,                 -- the organization's threshold at the time
    network_name    text,
    asn             bigint,
    country         char(2),
    city            text,
    device_type     text,
    browser         text,
    os              text,
    reasons         text[] NOT NULL,
    signals         text[] NOT NULL,
    PRIMARY KEY (organization_id, event_id)
);
CREATE INDEX gov_alerts_profile_time ON gov_alerts (organization_id, profile_id, occurred_at DESC);
