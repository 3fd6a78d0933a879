-- pulsegraph 0018: support tools and one audit log.
-- audit_log gains the acting role, the state before and after, and the reason an admin gave,
-- so every domain's admin actions share one log. organization_notes are platform admins'
-- internal notes on an organization. The global support search looks transactions up by
-- their id (the event id) or order id, and organizations by name (exact or prefix)
-- across tenants: indexes without the organization in front serve a platform admin's search.
ALTER TABLE audit_log
    ADD COLUMN role   text,
    ADD COLUMN before jsonb,
    ADD COLUMN after  jsonb,
    ADD COLUMN reason text;
CREATE INDEX audit_log_actor ON audit_log (actor, at DESC, id DESC);
CREATE INDEX audit_log_target ON audit_log (target, at DESC, id DESC) WHERE target IS NOT NULL;
CREATE INDEX audit_log_action ON audit_log (action, at DESC, id DESC);

CREATE TABLE organization_notes (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    author          text NOT NULL,
    author_user_id  uuid,
    body            text NOT NULL CHECK (length(body) BETWEEN 1 AND 5000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX organization_notes_id ON organization_notes (id);

CREATE INDEX transactions_event_id ON transactions (event_id);
CREATE INDEX transactions_order_id ON transactions (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX organizations_lower_name ON organizations (lower(name) text_pattern_ops);

-- A ticket is known from its scans (ticket.scanned events, found through events_ticket_scans
-- from 0004) and from what support did to it: each manual override (mark used, reactivate)
-- with the admin's reason. The latest of a ticket's scans and overrides sets its status; a
-- refund of its order makes it refunded.
CREATE TABLE ticket_overrides (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    ticket_id       text NOT NULL CHECK (length(ticket_id) BETWEEN 1 AND 200),
    status          text NOT NULL CHECK (status IN ('valid', 'used')),
    reason          text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    actor           text NOT NULL,
    at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX ticket_overrides_ticket ON ticket_overrides (organization_id, ticket_id, at);

-- A refund an admin issued: recorded in the ledger at once (a refund row in transactions, as
-- order.refunded records one) and kept here until the host platform executes it: the request
-- to the host platform goes out through the organization's notification channels.
CREATE TABLE admin_refunds (
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                uuid NOT NULL,
    sale_event_id     text NOT NULL,
    refund_event_id   text NOT NULL,
    order_id          text,
    amount_minor      bigint NOT NULL CHECK (amount_minor > 0),
    service_fee_minor bigint NOT NULL CHECK (service_fee_minor >= 0),
    currency          text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason            text NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    issued_by         text NOT NULL,
    status            text NOT NULL DEFAULT 'requested' CHECK (status IN ('requested', 'executed', 'failed')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX admin_refunds_requested ON admin_refunds (created_at) WHERE status = 'requested';
