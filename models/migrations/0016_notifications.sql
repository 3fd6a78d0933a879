-- pulsegraph 0016: notification channels and their durable deliveries.
--
-- notification_channels: where an organization (organization_id) or the platform
--   (organization_id NULL) is told about what happens: a 'webhook' (an https URL and its
--   Standard Webhooks signing secret 'whsec_<base64>') or an 'email' (recipients, sent through
--   the installation's SMTP server). kinds: the notification kinds it receives
--   (app/services/notifications/kinds.py lists them).
-- notification_deliveries: one row per (notification, channel), written in the transaction of
--   what caused it; its id is the webhook-id of every attempt. status 'pending' until sent,
--   'delivered', or 'dead' after max_attempts (the configured number when written; a manual
--   retry of a dead delivery allows one more); next_attempt_at is when a
--   worker may claim it next (a claim moves it past the send timeout, so a worker that dies
--   mid-send leaves it due again).
-- notification_windows: the windows that already raised a once-per-window notification (a
--   payment.failed spike), so a second batch of the same window raises nothing.
-- notification_attempts: every attempt, with the receiver's status code, the error, the
--   duration and the start of the response body.
--
-- Reference tables (models/tables.py): platform channels and their deliveries have no tenant,
-- and the worker claims one queue across every tenant; rows are written once per alert,
-- invitation or test, never per event.

CREATE TABLE notification_channels (
    id              uuid PRIMARY KEY,
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,  -- null: the platform's
    kind            text NOT NULL CHECK (kind IN ('webhook', 'email')),
    name            text NOT NULL,
    url             text,
    secret          text,
    recipients      text[] NOT NULL DEFAULT '{}'::text[],
    kinds           text[] NOT NULL,
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'webhook' AND url IS NOT NULL AND secret IS NOT NULL)
        OR (kind = 'email' AND url IS NULL AND secret IS NULL AND cardinality(recipients) > 0))
);
CREATE INDEX notification_channels_organization ON notification_channels (organization_id, created_at);

CREATE TABLE notification_deliveries (
    id              uuid PRIMARY KEY,
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,  -- null: a platform channel's
    channel_id      uuid NOT NULL REFERENCES notification_channels (id) ON DELETE CASCADE,
    kind            text NOT NULL,
    payload         jsonb NOT NULL,
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX notification_deliveries_organization ON notification_deliveries (organization_id, created_at DESC, id);
CREATE INDEX notification_deliveries_channel ON notification_deliveries (channel_id, created_at DESC, id);

CREATE TABLE notification_attempts (
    delivery_id      uuid NOT NULL REFERENCES notification_deliveries (id) ON DELETE CASCADE,
    number           integer NOT NULL,
    organization_id  uuid REFERENCES organizations (id) ON DELETE CASCADE,
    attempted_at     timestamptz NOT NULL,
    status_code      integer,
    error            text,
    duration_ms      integer NOT NULL,
    response_excerpt text,
    PRIMARY KEY (delivery_id, number)
);

CREATE TABLE notification_windows (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    kind            text NOT NULL,
    window_start    timestamptz NOT NULL,
    count           integer NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, kind, window_start)
);
