-- pulsegraph 0023: what admins did about failed payments.
-- A failed payment is a payment.failed event (its event id is the transaction id the API
-- shows); this table keeps its admin state once someone acted on it: 'retry_requested'
-- (the host platform was asked to retry it, through the organization's webhook channels) or
-- 'resolved' (nothing more to do). A failed payment without a row is open. Each act is also in
-- the audit log with the admin's reason; here are the latest of each.
CREATE TABLE failed_payment_states (
    organization_id    uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    event_id           text NOT NULL,
    status             text NOT NULL CHECK (status IN ('retry_requested', 'resolved')),
    actor              text NOT NULL,
    note               text NOT NULL CHECK (length(note) BETWEEN 1 AND 500),
    at                 timestamptz NOT NULL DEFAULT now(),
    retry_requested_by text,
    retry_requested_at timestamptz,
    resolved_by        text,
    resolved_at        timestamptz,
    PRIMARY KEY (organization_id, event_id)
);
CREATE INDEX failed_payment_states_status ON failed_payment_states (organization_id, status, at);
