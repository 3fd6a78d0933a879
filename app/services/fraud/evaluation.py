"""Fraud rule evaluation: the worker's side of the fraud rules.

Evaluation (`evaluate_batch`, inside the worker's claiming transaction, so alerts and the
outbox "processed" mark commit together): for each claimed event of a fraud type and each
enabled rule of its kind in its organization, one set-based statement per kind looks at
the stored `events` up to the triggering event's time:

- failed_payments: more than `threshold` payment.failed of one actor in `windowMinutes`.
- refund_rate: among the organization's last `orders` order.paid (at least `minOrders`),
  the share refunded (order.refunded with the same properties.orderId) is above
  `maxRatePercent`; triggered by refunds.
- accounts_per_ip: more than `threshold` account.created from one IP in `windowMinutes`.
- ticket_multi_device: one properties.ticketId scanned on more than `maxDevices` devices
  (properties.deviceId, else device type/browser/OS from the user agent).
- bulk_purchase: one actor's order.paid quantities (properties.quantity, default 1) in
  `windowMinutes` add up to more than `maxQuantity` (so does a single large order).

The actor is the event's visitor id: `u:<userId>`, else `a:<anonymousId>`, else the
cookie-less hash. Evidence is the ids of the events in the window that made the rule fire.
There is at most one active (open or investigating) alert per rule and subject: a new
trigger appends its evidence and refreshes details and last_triggered_at; once the alert is
dismissed or resolved, the next trigger raises a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from app.consumers import Batch, Consumer
from app.live_messages import FraudAlertMessage
from app.services.claimed_events import CLAIMED_EVENTS, keys_of
from app.services.fraud.alerts import alert_message
from app.services.fraud.rules import (
    ACCOUNTS_PER_IP,
    BULK_PURCHASE,
    FAILED_PAYMENTS,
    REFUND_RATE,
    TICKET_MULTI_DEVICE,
    TRIGGER_TYPE,
)
from app.services.notifications import enqueue_notifications
from app.services.notifications.kinds import FRAUD_ALERT
from app.vocabulary import (
    ACCOUNT_CREATED,
    FRAUD_EVENT_TYPES,
    ORDER_PAID,
    ORDER_REFUNDED,
    PAYMENT_FAILED,
    TICKET_SCANNED,
)

# An alert keeps the ids of the latest events that made it fire: an active alert (an
# organization's refund rate, say) can keep firing for weeks, and its row must not grow without end.
EVIDENCE_LIMIT = 1000
WORKER_ACTOR = ("worker", "system")  # (actor, role) recorded for alerts the worker raises


# Claimed events of one type, joined with the enabled rules of one kind in their organization.
_TRIGGERS = """
WITH rt AS (
    SELECT e.organization_id, e.occurred_at, e.event_id, e.visitor_id, e.user_id, e.properties,
           COALESCE(host(e.ip), e.ip_hash) AS ip_key, r.id AS rule_id, r.params
    FROM {claimed_events}
    JOIN fraud_rules r ON r.organization_id = e.organization_id AND r.kind = '{kind}' AND r.enabled
    WHERE e.type = '{type}'
)
"""
_WINDOW = "x.occurred_at > rt.occurred_at - make_interval(mins => (rt.params->>'windowMinutes')::int) AND x.occurred_at <= rt.occurred_at"
_EVIDENCE = "array_agg(x.event_id ORDER BY x.occurred_at, x.event_id) AS evidence"

_RULE_SQL: dict[str, str] = {
    FAILED_PAYMENTS: f"""
SELECT rt.organization_id, rt.rule_id, 'actor:' || rt.visitor_id AS subject, rt.occurred_at AS triggered_at, w.evidence,
       jsonb_build_object('actor', COALESCE(rt.user_id, rt.visitor_id), 'failedPayments', w.n,
                          'threshold', rt.params->'threshold', 'windowMinutes', rt.params->'windowMinutes') AS details
FROM rt CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(*) AS n FROM events x
    WHERE x.organization_id = rt.organization_id AND x.visitor_id = rt.visitor_id AND x.type = '{PAYMENT_FAILED}' AND {_WINDOW}
) w
WHERE rt.visitor_id IS NOT NULL AND w.n > (rt.params->>'threshold')::int
""",
    ACCOUNTS_PER_IP: f"""
SELECT rt.organization_id, rt.rule_id, 'ip:' || rt.ip_key AS subject, rt.occurred_at AS triggered_at, w.evidence,
       jsonb_build_object('ip', rt.ip_key, 'accounts', w.n,
                          'threshold', rt.params->'threshold', 'windowMinutes', rt.params->'windowMinutes') AS details
FROM rt CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(*) AS n FROM events x
    WHERE x.organization_id = rt.organization_id AND x.type = '{ACCOUNT_CREATED}' AND {_WINDOW}
      AND COALESCE(host(x.ip), x.ip_hash) = rt.ip_key
) w
WHERE rt.ip_key IS NOT NULL AND w.n > (rt.params->>'threshold')::int
""",
    BULK_PURCHASE: f"""
SELECT rt.organization_id, rt.rule_id, 'actor:' || rt.visitor_id AS subject, rt.occurred_at AS triggered_at, w.evidence,
       jsonb_build_object('actor', COALESCE(rt.user_id, rt.visitor_id), 'quantity', w.quantity, 'orders', w.n,
                          'maxQuantity', rt.params->'maxQuantity', 'windowMinutes', rt.params->'windowMinutes') AS details
FROM rt CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(*) AS n,
           sum(CASE WHEN jsonb_typeof(x.properties->'quantity') = 'number'
                    THEN (x.properties->>'quantity')::numeric ELSE 1 END) AS quantity
    FROM events x
    WHERE x.organization_id = rt.organization_id AND x.visitor_id = rt.visitor_id AND x.type = '{ORDER_PAID}' AND {_WINDOW}
) w
WHERE rt.visitor_id IS NOT NULL AND w.quantity > (rt.params->>'maxQuantity')::int
""",
    TICKET_MULTI_DEVICE: f"""
SELECT rt.organization_id, rt.rule_id, 'ticket:' || (rt.properties->>'ticketId') AS subject,
       rt.occurred_at AS triggered_at, w.evidence,
       jsonb_build_object('ticketId', rt.properties->>'ticketId', 'devices', to_jsonb(w.devices), 'scans', w.n,
                          'maxDevices', rt.params->'maxDevices') AS details
FROM rt CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(*) AS n,
           array_agg(DISTINCT d.device ORDER BY d.device) FILTER (WHERE d.device IS NOT NULL) AS devices
    FROM events x CROSS JOIN LATERAL (
        SELECT NULLIF(COALESCE(NULLIF(x.properties->>'deviceId', ''), concat_ws('/', x.device_type, x.browser, x.os)), '')
               AS device
    ) d
    WHERE x.organization_id = rt.organization_id AND x.type = '{TICKET_SCANNED}'
      AND (x.properties->>'ticketId') = (rt.properties->>'ticketId') AND x.occurred_at <= rt.occurred_at
) w
WHERE rt.properties->>'ticketId' IS NOT NULL AND cardinality(w.devices) > (rt.params->>'maxDevices')::int
""",
    REFUND_RATE: f"""
SELECT rt.organization_id, rt.rule_id, 'organization' AS subject, rt.occurred_at AS triggered_at, f.evidence,
       jsonb_build_object('orders', s.n, 'refunds', f.refunded, 'ratePercent', round(100.0 * f.refunded / s.n, 1),
                          'maxRatePercent', rt.params->'maxRatePercent', 'sampleOrders', rt.params->'orders') AS details
FROM rt
CROSS JOIN LATERAL (
    SELECT array_agg(p.order_id) AS orders, count(*) AS n, min(p.occurred_at) AS since
    FROM (
        SELECT x.properties->>'orderId' AS order_id, x.occurred_at FROM events x
        WHERE x.organization_id = rt.organization_id AND x.type = '{ORDER_PAID}' AND x.occurred_at <= rt.occurred_at
        ORDER BY x.occurred_at DESC LIMIT (rt.params->>'orders')::int
    ) p
) s
CROSS JOIN LATERAL (
    SELECT {_EVIDENCE}, count(DISTINCT x.properties->>'orderId') AS refunded FROM events x
    WHERE x.organization_id = rt.organization_id AND x.type = '{ORDER_REFUNDED}'
      AND x.occurred_at >= s.since AND x.occurred_at <= rt.occurred_at AND (x.properties->>'orderId') = ANY(s.orders)
) f
WHERE s.n >= (rt.params->>'minOrders')::int AND f.refunded * 100 > (rt.params->>'maxRatePercent')::int * s.n
""",
}

# One active alert per (rule, subject): a conflict extends it. Rows arrive grouped (one per
# key) and sorted, so concurrent workers lock in one order.
_UPSERT_ALERTS = f"""
INSERT INTO fraud_alerts AS a (organization_id, id, rule_id, kind, rule_name, risk, subject, details, evidence,
                               triggered_at, last_triggered_at)
SELECT u.organization_id, gen_random_uuid(), u.rule_id, r.kind, r.name, r.risk, u.subject, u.details,
       ARRAY(SELECT jsonb_array_elements_text(u.evidence)), u.triggered_at, u.last_triggered_at
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::jsonb[], $7::jsonb[])
     AS u(organization_id, rule_id, subject, triggered_at, last_triggered_at, evidence, details)
JOIN fraud_rules r ON r.organization_id = u.organization_id AND r.id = u.rule_id
ORDER BY u.organization_id, u.rule_id, u.subject
ON CONFLICT (organization_id, rule_id, subject) WHERE status IN ('open', 'investigating') DO UPDATE SET
    evidence = ARRAY(SELECT t.id FROM (
                         SELECT v.id, min(v.n) AS n FROM unnest(a.evidence || EXCLUDED.evidence) WITH ORDINALITY AS v(id, n)
                         GROUP BY v.id ORDER BY min(v.n) DESC LIMIT {EVIDENCE_LIMIT}) t
                     ORDER BY t.n),
    details = CASE WHEN EXCLUDED.last_triggered_at >= a.last_triggered_at THEN EXCLUDED.details ELSE a.details END,
    last_triggered_at = GREATEST(a.last_triggered_at, EXCLUDED.last_triggered_at),
    updated_at = clock_timestamp()
RETURNING a.*, (a.xmax = 0) AS inserted
"""

_AUDIT_RAISED = """
INSERT INTO fraud_alert_audit (organization_id, alert_id, action, actor, actor_role, to_status)
SELECT o, a, 'raised', $3, $4, 'open' FROM unnest($1::uuid[], $2::uuid[]) AS k(o, a)
"""


@dataclass(slots=True)
class _Hit:
    """What the rules found for one (organization, rule, subject) in a batch."""

    triggered_at: datetime
    last_triggered_at: datetime
    evidence: dict[str, None]  # ordered set
    details: str


async def evaluate_batch(conn: asyncpg.Connection, rows: Sequence[Mapping[str, Any]]) -> list[FraudAlertMessage]:
    """Raise or extend alerts for a claimed batch, in the caller's transaction; returns them for publishing."""
    triggers = [r for r in rows if r["type"] in FRAUD_EVENT_TYPES]
    if not triggers:
        return []
    keys = keys_of(triggers)
    present = {r["type"] for r in triggers}
    hits: dict[tuple[uuid.UUID, uuid.UUID, str], _Hit] = {}
    for kind, sql in _RULE_SQL.items():
        if TRIGGER_TYPE[kind] in present:
            query = _TRIGGERS.format(claimed_events=CLAIMED_EVENTS, kind=kind, type=TRIGGER_TYPE[kind]) + sql
            for found in await conn.fetch(query, *keys):
                _add_hit(hits, found)
    if not hits:
        return []
    return await _store_hits(conn, hits)


def _add_hit(hits: dict[tuple[uuid.UUID, uuid.UUID, str], _Hit], found: Mapping[str, Any]) -> None:
    key = (found["organization_id"], found["rule_id"], found["subject"])
    at = found["triggered_at"]
    hit = hits.get(key)
    if hit is None:
        hits[key] = _Hit(at, at, dict.fromkeys(found["evidence"]), found["details"])
        return
    hit.evidence.update(dict.fromkeys(found["evidence"]))
    hit.triggered_at = min(hit.triggered_at, at)
    if at >= hit.last_triggered_at:
        hit.last_triggered_at, hit.details = at, found["details"]


async def _store_hits(
    conn: asyncpg.Connection, hits: dict[tuple[uuid.UUID, uuid.UUID, str], _Hit]
) -> list[FraudAlertMessage]:
    ordered = sorted(hits.items(), key=lambda item: (str(item[0][0]), str(item[0][1]), item[0][2]))
    records = await conn.fetch(
        _UPSERT_ALERTS,
        [k[0] for k, _ in ordered],
        [k[1] for k, _ in ordered],
        [k[2] for k, _ in ordered],
        [h.triggered_at for _, h in ordered],
        [h.last_triggered_at for _, h in ordered],
        [orjson.dumps(list(h.evidence)[-EVIDENCE_LIMIT:]).decode() for _, h in ordered],
        [h.details for _, h in ordered],
    )
    raised = [r for r in records if r["inserted"]]
    if raised:
        await conn.execute(
            _AUDIT_RAISED, [r["organization_id"] for r in raised], [r["id"] for r in raised], *WORKER_ACTOR
        )
    messages = [alert_message(r) for r in records]
    new = [m for m, r in zip(messages, records, strict=True) if r["inserted"]]
    await enqueue_notifications(conn, kind=FRAUD_ALERT, notifications=[(m.organization_id, m.to_json()) for m in new])
    return messages


class FraudConsumer(Consumer):
    """The fraud rules over a batch's commerce events; alerts to their organization and the platform."""

    name = "fraud"
    event_types = FRAUD_EVENT_TYPES

    async def apply(
        self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch
    ) -> list[FraudAlertMessage]:
        return await evaluate_batch(conn, rows)

    def channels(self, batch: Batch) -> set[str]:
        return {channel for alert in batch.effects[self.name] for channel in alert.channels}

    def feed(self, batch: Batch, followed: Collection[str]) -> list[FraudAlertMessage]:
        return batch.effects[self.name]
