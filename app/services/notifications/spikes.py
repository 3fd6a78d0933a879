"""Failed-payment spikes: more payment.failed events of one organization than the
installation's threshold in one window raise one `payment.failed_spike` notification.

Windows are aligned to the epoch (`payment_failed_spike_window_minutes`), so every worker
and every batch agrees on them; the batch that pushes a window past the threshold raises the
notification, and `notification_windows` makes every later batch of that window raise
nothing. It runs in the worker's claiming transaction, so the notification commits with the
batch that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from app.consumers import Batch, Consumer
from app.services.notifications import enqueue_notifications
from app.services.notifications.kinds import PAYMENT_FAILED_SPIKE
from app.settings import get_settings
from app.vocabulary import PAYMENT_FAILED

# The windows the batch's payment.failed events fall in, counted over every stored event of
# the window, the ones past the threshold claimed once.
SPIKES = f"""
WITH windows AS (
    SELECT DISTINCT k.organization_id,
           to_timestamp(floor(extract(epoch FROM k.occurred_at) / $3) * $3) AS window_start
    FROM unnest($1::uuid[], $2::timestamptz[]) AS k(organization_id, occurred_at)
), counted AS (
    SELECT w.organization_id, w.window_start,
           (SELECT count(*) FROM events x
            WHERE x.organization_id = w.organization_id AND x.type = '{PAYMENT_FAILED}'
              AND x.occurred_at >= w.window_start AND x.occurred_at < w.window_start + make_interval(secs => $3)) AS n
    FROM windows w
)
INSERT INTO notification_windows (organization_id, kind, window_start, count)
SELECT organization_id, '{PAYMENT_FAILED_SPIKE}', window_start, n FROM counted WHERE n > $4
ON CONFLICT DO NOTHING
RETURNING organization_id, window_start, count
"""


class PaymentFailureSpikes(Consumer):
    """One payment.failed_spike notification per organization and window past the threshold."""

    name = "payment_failed_spikes"
    event_types = frozenset({PAYMENT_FAILED})

    async def apply(self, conn: asyncpg.Connection, rows: list[Mapping[str, Any]], batch: Batch) -> int:
        if not rows:
            return 0
        return await raise_spikes(conn, rows)


async def raise_spikes(conn: asyncpg.Connection, rows: list[Mapping[str, Any]]) -> int:
    """Enqueue the spikes these payment.failed rows complete; returns how many windows spiked."""
    settings = get_settings()
    seconds = max(60, settings.payment_failed_spike_window_minutes * 60)
    spiked = await conn.fetch(
        SPIKES, [r["organization_id"] for r in rows], [r["occurred_at"] for r in rows], float(seconds),
        settings.payment_failed_spike_threshold,
    )  # fmt: skip
    notifications = [
        (s["organization_id"], {"windowStart": s["window_start"].isoformat(), "windowMinutes": seconds // 60,
                                "failedPayments": s["count"], "threshold": settings.payment_failed_spike_threshold})
        for s in spiked
    ]  # fmt: skip
    await enqueue_notifications(conn, kind=PAYMENT_FAILED_SPIKE, notifications=notifications)
    return len(spiked)
