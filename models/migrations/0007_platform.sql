-- pulsegraph 0007: the platform. Organization lifecycle (status with an audit trail),
-- a cheap "last event received" lookup for churn, invoices the worker records from
-- invoice.issued / invoice.paid, and indexes for payout reconciliation.
--
-- organizations.status: active | suspended, changed only by platform admins
--   (suspendOrganization / reinstateOrganization); every change is in organization_status_audit
--   with who, when and why.
-- outbox_org_received: every accepted event has an outbox row (kept after processing), so
--   the latest received_at of an organization is one backward index probe; churn reads it.
-- invoices: one row per (organization, invoiceId). invoice.issued fills the issue columns
--   (the first issue wins), invoice.paid the paid columns (the first payment wins); a
--   payment that arrives before its issue waits in the row with the issue columns NULL.
--   Outstanding = issued and not paid.

ALTER TABLE organizations
    ADD COLUMN status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
    ADD COLUMN status_changed_at timestamptz,
    ADD COLUMN status_changed_by text,
    ADD COLUMN status_reason text;
CREATE INDEX organizations_created ON organizations (created_at);

CREATE TABLE organization_status_audit (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    action          text NOT NULL CHECK (action IN ('suspended', 'reinstated')),
    actor           text NOT NULL,
    reason          text NOT NULL,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, id)
);

CREATE INDEX outbox_org_received ON outbox (organization_id, received_at);

CREATE TABLE invoices (
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    invoice_id        text NOT NULL,
    amount_minor      bigint CHECK (amount_minor > 0),
    currency          text CHECK (currency ~ '^[A-Z]{3}$'),
    due_date          date,
    issued_at         timestamptz,
    issued_event_id   text,
    paid_at           timestamptz,
    paid_event_id     text,
    paid_amount_minor bigint,
    paid_currency     text,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, invoice_id)
);
CREATE INDEX invoices_outstanding ON invoices (organization_id, due_date)
    WHERE paid_at IS NULL AND issued_event_id IS NOT NULL;

CREATE INDEX transactions_payout ON transactions (organization_id, (metadata ->> 'payoutId'))
    WHERE metadata ? 'payoutId';
CREATE INDEX payouts_payout ON payouts (organization_id, payout_id);
