-- pulsegraph 0006: money. The ledger the worker writes from domain events, payouts,
-- exchange rates for a reporting currency, and cost entries with their audit trail.
--
-- transactions: one row per money event, keyed by (organization, event id), so a re-run
--   batch inserts nothing twice. Amounts are integer minor units with an ISO 4217 code;
--   a refund is its own row with a NEGATIVE amount at the refund's time (is_refund, and
--   refund_of = the event id of the refunded row when it is known); the refunded row keeps
--   its amount and its time and gets status 'refunded'. payment.failed rows have status
--   'failed' and are never revenue. Fees are what the event's properties carried.
-- payouts: payout.settled events, kept for reconciliation against the ledger.
-- exchange_rates: per organization, 1 unit of `currency` = `rate` units of the
--   organization's reporting_currency (organizations.reporting_currency; NULL: none).
-- costs / cost_audit: cost entries people enter, and who created, changed or deleted
--   which, with the entry before and after.

ALTER TABLE organizations
    ADD COLUMN reporting_currency text CHECK (reporting_currency ~ '^[A-Z]{3}$'),
    ADD COLUMN duo_split_percent smallint NOT NULL DEFAULT 50 CHECK (duo_split_percent BETWEEN 1 AND 99);

CREATE TABLE transactions (
    organization_id     uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    event_id            text NOT NULL,
    type                text NOT NULL CHECK (type IN ('booking', 'gift', 'subscription', 'affiliate', 'order')),
    status              text NOT NULL CHECK (status IN ('pending', 'completed', 'refunded', 'failed')),
    is_refund           boolean NOT NULL DEFAULT false,
    refund_of           text,
    profile_id          uuid,
    partner_profile_id  uuid,
    split_percent       smallint CHECK (split_percent BETWEEN 1 AND 99),
    customer_id         text,
    amount_minor        bigint NOT NULL,
    currency            text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    platform_fee_minor  bigint NOT NULL DEFAULT 0,
    service_fee_minor   bigint NOT NULL DEFAULT 0,
    processor_fee_minor bigint NOT NULL DEFAULT 0,
    category            text,
    order_id            text,
    occurred_at         timestamptz NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    metadata            jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (organization_id, event_id),
    CHECK (is_refund = (amount_minor < 0))
);
CREATE INDEX transactions_time ON transactions (organization_id, occurred_at);
CREATE INDEX transactions_profile_time ON transactions (organization_id, profile_id, occurred_at);
CREATE INDEX transactions_partner ON transactions (organization_id, partner_profile_id, occurred_at)
    WHERE partner_profile_id IS NOT NULL;
CREATE INDEX transactions_order ON transactions (organization_id, order_id) WHERE order_id IS NOT NULL;
CREATE INDEX transactions_recent ON transactions (occurred_at);

CREATE TABLE payouts (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    event_id        text NOT NULL,
    payout_id       text,
    profile_id      uuid,
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (organization_id, event_id)
);
CREATE INDEX payouts_time ON payouts (organization_id, occurred_at);

CREATE TABLE exchange_rates (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    rate            numeric(24, 12) NOT NULL CHECK (rate > 0),
    updated_by      text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, currency)
);

CREATE TABLE costs (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL,
    profile_id      uuid,
    category        text NOT NULL CHECK (category IN ('marketing', 'subscriptions', 'tools', 'platform_fees', 'other')),
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    currency        text NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    incurred_on     date NOT NULL,
    description     text NOT NULL DEFAULT '',
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX costs_date ON costs (organization_id, incurred_on);
CREATE INDEX costs_id ON costs (id);

CREATE TABLE cost_audit (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    cost_id         uuid NOT NULL,
    action          text NOT NULL CHECK (action IN ('created', 'updated', 'deleted')),
    actor           text NOT NULL,
    actor_role      text NOT NULL,
    before          jsonb,
    after           jsonb,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, id)
);
CREATE INDEX cost_audit_cost ON cost_audit (organization_id, cost_id, id);
