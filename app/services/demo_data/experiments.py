"""Two running experiments of the marketplace, as its SDK reports them over the last two weeks:

- "one-page-checkout": a one-page checkout against the current three steps, 50/50. The new
  checkout converts visibly better (about 12% of exposed persons request a booking within a
  week, against 8%): a clear winner.
- "onboarding-checklist": a checklist for new providers against none, planned 50/50, but a
  bug in the SDK drops a tenth of the checklist's exposures: 52.6/47.4 over thousands of
  persons, a sample ratio mismatch (p far below 0.001) that the results show before any effect.

Exposures are `experiment.exposed` events (properties experimentKey and variant); conversions
are the product's own `booking.requested` events, with their price.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from app.services.experiments import definitions as d
from app.services.experiments import stats
from app.services.insights.grammar import EventMatcher
from app.vocabulary import EXPERIMENT_EXPOSED

DAYS = 14
PERSONS = 3000  # per experiment
BOOKED = "booking.requested"


def checkout() -> d.Definition:
    return d.Definition(
        key="one-page-checkout", name="One-page checkout", hypothesis="One page instead of three makes more people book",
        variants=(d.Variant("control", "Three steps", 1.0), d.Variant("one-page", "One page", 1.0)), allocation=1.0,
        targeting=d.Targeting(),
        metrics=(
            d.Metric("booked", "Requested a booking within 7 days", d.MetricRole.PRIMARY, d.MetricKind.CONVERSION,
                     EventMatcher(BOOKED), window_hours=168.0),
            d.Metric("booking-value", "Booking value (minor units)", d.MetricRole.SECONDARY, d.MetricKind.SUM,
                     EventMatcher(BOOKED), property_name="price", window_hours=168.0),
        ),
        analysis=d.Analysis(), minimum_detectable_effect=0.2,
    )  # fmt: skip


def checklist() -> d.Definition:
    return d.Definition(
        key="onboarding-checklist", name="Onboarding checklist", hypothesis="A checklist gets new providers to book sooner",
        variants=(d.Variant("control", "No checklist", 1.0), d.Variant("checklist", "Checklist", 1.0)), allocation=1.0,
        targeting=d.Targeting(),
        metrics=(d.Metric("booked", "Requested a booking within 7 days", d.MetricRole.PRIMARY, d.MetricKind.CONVERSION,
                          EventMatcher(BOOKED), window_hours=168.0),),
        analysis=d.Analysis(engine=stats.Engine.SEQUENTIAL), minimum_sample_size=8000,
    )  # fmt: skip


DEFINITIONS = (checkout, checklist)
RATES = {("one-page-checkout", "control"): 0.08, ("one-page-checkout", "one-page"): 0.12,
         ("onboarding-checklist", "control"): 0.1, ("onboarding-checklist", "checklist"): 0.1}  # fmt: skip
LOST = {("onboarding-checklist", "checklist"): 0.1}  # the share of exposures the buggy SDK never sends


def generate_experiment_events(*, now: datetime, seed: int = 17) -> Iterator[dict[str, Any]]:
    """Each experiment's exposures over the last DAYS days and the bookings that followed."""
    from app.services.experiments.assignment import variant_for

    rng = random.Random(seed)
    for make in DEFINITIONS:
        definition = make()
        for n in range(PERSONS):
            user = f"{definition.key}-{n}"
            variant = variant_for(definition.key, definition.variants, definition.allocation, f"u:{user}")
            if variant is None or rng.random() < LOST.get((definition.key, variant), 0.0):
                continue
            exposed_at = now - timedelta(days=rng.uniform(0.5, DAYS))
            yield {"type": EXPERIMENT_EXPOSED, "event_id": f"{user}-exposed", "occurred_at": exposed_at, "user_id": user,
                   "properties": {"experimentKey": definition.key, "variant": variant}}  # fmt: skip
            if rng.random() < RATES[(definition.key, variant)]:
                booked_at = min(exposed_at + timedelta(hours=rng.uniform(0.2, 100)), now - timedelta(minutes=5))
                yield {"type": BOOKED, "event_id": f"{user}-booked", "occurred_at": booked_at, "user_id": user,
                       "properties": {"price": rng.choice([4000, 6500, 9000, 12000])}}  # fmt: skip
