-- pulsegraph 0004: the fraud rules engine.
--
-- fraud_rules: an organization's rules, as data. `kind` picks the evaluation, `params` its
--   thresholds (validated per kind by app/services/fraud/rules.py), `risk` the level of the
--   alerts it raises. Every organization gets the default set (trigger below; this
--   migration gives existing organizations theirs).
-- fraud_alerts: raised by the worker in the transaction that processes the triggering
--   event. At most one ACTIVE (open or investigating) alert per (rule, subject): a new
--   trigger extends it (evidence, details, last_triggered_at) instead of raising another.
--   `kind`, `rule_name` and `risk` are copied from the rule when raised, so an alert keeps
--   its meaning when its rule is changed or deleted.
-- fraud_alert_audit: every status change and note, with who acted, and the raise itself.

CREATE TABLE fraud_rules (
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id              uuid NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('failed_payments', 'refund_rate', 'accounts_per_ip',
                                                  'ticket_multi_device', 'bulk_purchase')),
    name            text NOT NULL,
    params          jsonb NOT NULL,
    risk            text NOT NULL CHECK (risk IN ('low', 'medium', 'high')),
    enabled         boolean NOT NULL DEFAULT true,
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (organization_id, id),
    UNIQUE (organization_id, name)
);

CREATE TABLE fraud_alerts (
    organization_id   uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    id                uuid NOT NULL,
    rule_id           uuid NOT NULL,
    kind              text NOT NULL,
    rule_name         text NOT NULL,
    risk              text NOT NULL CHECK (risk IN ('low', 'medium', 'high')),
    subject           text NOT NULL,
    status            text NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'investigating', 'dismissed', 'resolved')),
    details           jsonb NOT NULL,
    evidence          text[] NOT NULL,
    triggered_at      timestamptz NOT NULL,
    last_triggered_at timestamptz NOT NULL,
    raised_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, id)
);
CREATE UNIQUE INDEX fraud_alerts_active ON fraud_alerts (organization_id, rule_id, subject)
    WHERE status IN ('open', 'investigating');
CREATE INDEX fraud_alerts_org_recent ON fraud_alerts (organization_id, raised_at DESC, id DESC);
CREATE INDEX fraud_alerts_recent ON fraud_alerts (raised_at DESC, id DESC);
CREATE INDEX fraud_alerts_id ON fraud_alerts (id);

CREATE TABLE fraud_alert_audit (
    organization_id uuid NOT NULL,
    id              bigint GENERATED ALWAYS AS IDENTITY,
    alert_id        uuid NOT NULL,
    action          text NOT NULL CHECK (action IN ('raised', 'status', 'note')),
    actor           text NOT NULL,
    actor_role      text NOT NULL,
    from_status     text,
    to_status       text,
    note            text,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, id),
    FOREIGN KEY (organization_id, alert_id) REFERENCES fraud_alerts (organization_id, id) ON DELETE CASCADE
);
CREATE INDEX fraud_alert_audit_alert ON fraud_alert_audit (organization_id, alert_id, id);

-- ticket_multi_device looks up every scan of one ticket, whatever its age.
CREATE INDEX events_ticket_scans ON events (organization_id, (properties ->> 'ticketId'), occurred_at)
    WHERE type = 'ticket.scanned';
-- accounts_per_ip counts one address's sign-ups in a window (the raw IP, or its keyed hash).
CREATE INDEX events_signup_ip ON events (organization_id, (COALESCE(host(ip), ip_hash)), occurred_at)
    WHERE type = 'account.created';

-- The default rule set (app/services/fraud/rules.py DEFAULT_RULES mirrors it; a test keeps them equal).
CREATE FUNCTION pulsegraph_default_fraud_rules(org uuid) RETURNS void LANGUAGE sql AS $$
    INSERT INTO fraud_rules (organization_id, id, kind, name, params, risk, created_by, updated_by)
    SELECT org, gen_random_uuid(), d.kind, d.name, d.params::jsonb, d.risk, 'system', 'system'
    FROM (VALUES
        ('failed_payments', 'Repeated failed payments', '{"threshold": 3, "windowMinutes": 60}', 'medium'),
        ('refund_rate', 'High refund rate', '{"orders": 50, "maxRatePercent": 20, "minOrders": 10}', 'high'),
        ('accounts_per_ip', 'Many accounts from one IP', '{"threshold": 3, "windowMinutes": 60}', 'medium'),
        ('ticket_multi_device', 'Ticket scanned on several devices', '{"maxDevices": 1}', 'high'),
        ('bulk_purchase', 'Unusual bulk purchase', '{"maxQuantity": 20, "windowMinutes": 60}', 'low')
    ) AS d(kind, name, params, risk)
    ON CONFLICT DO NOTHING
$$;

CREATE FUNCTION pulsegraph_fraud_rules_for_new_organization() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pulsegraph_default_fraud_rules(NEW.id);
    RETURN NEW;
END
$$;

CREATE TRIGGER organizations_default_fraud_rules AFTER INSERT ON organizations
    FOR EACH ROW EXECUTE FUNCTION pulsegraph_fraud_rules_for_new_organization();

SELECT pulsegraph_default_fraud_rules(id) FROM organizations;
