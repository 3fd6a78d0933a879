"""The consumers of the outbox, in the order the worker runs them: one line per domain.

Consumers with `after_mark` run after the batch's processed mark, in this same order; the
live messages of a batch are sent in this order too (views before alerts, running totals
before revenue counters)."""

from __future__ import annotations

from app.consumers import Consumer
from app.services import (
    financial_reports,
    fraud,
    gov_alerts,
    marketplace,
    profile_analytics,
    revenue,
)
from app.services.experiments.exposures import ExperimentConsumer
from app.services.gov_detection import GovDetector
from app.services.notifications.spikes import PaymentFailureSpikes


def consumers(detector: GovDetector) -> tuple[Consumer, ...]:
    return (
        gov_alerts.ViewAssessment(detector),
        profile_analytics.ProfileConsumer(),
        gov_alerts.AlertRecorder(),
        fraud.FraudConsumer(),
        PaymentFailureSpikes(),
        revenue.LedgerConsumer(),
        financial_reports.InvoiceConsumer(),
        ExperimentConsumer(),
        marketplace.MarketplaceConsumer(),
    )
