"""Experiments through the public API: definitions with an audited life, bad input naming its
field with nothing written, deterministic assignment (across processes, within 1% of the
weights, stable when allocation grows), exposures counted once per person (persons in two
variants excluded and listed), and results from the worker's sums equal to a plain-Python
computation over the same events, through the same statistics engine."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.database import connection
from app.services.experiments import assignment, stats
from app.services.experiments.definitions import Variant
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.product_events import ProductEvent, send

CREATE = """mutation($i: ExperimentInput!, $org: ID) { createExperiment(input: $i, organizationId: $org) {
  id key status variants { key weight } metrics { key kind role } startedAt } }"""
UPDATE = """mutation($id: ID!, $i: ExperimentUpdateInput!) { updateExperiment(id: $id, input: $i) {
  id name allocation variants { key } } }"""
STATUS = """mutation($id: ID!, $s: ExperimentStatus!) { setExperimentStatus(id: $id, status: $s) {
  status startedAt endedAt statusHistory { fromStatus toStatus actor actorRole at } } }"""
ASSIGN = """mutation($key: String!, $p: String!) { experimentAssignment(experimentKey: $key, personId: $p) {
  variant outcome firstExposure personId } }"""
RESULTS = """query($id: ID!) { experimentResults(experimentId: $id) {
  srmPValue srmFlagged exposures { key n } conflicts conflictedPersonIds minimumSampleSize daysRunning daysToMinimumSample
  metrics { key role analysis { winner confidence variants { key n mean variance
    absolute { estimate ciLow ciHigh standardError pValue adjustedPValue }
    relative { estimate pValue adjustedPValue } cuped { theta varianceReduction } } } } } }"""
LIST = """query($s: ExperimentStatus) { experiments(status: $s) { key status winner confidence
  variants { key views conversions conversionRate } } }"""

NOW = datetime.now(UTC).replace(microsecond=0)
WINDOW_HOURS = 48


def definition(key: str, **changes: Any) -> dict[str, Any]:
    """A checkout test: conversion to order.paid within 48 h (primary), page views, and the sum
    of purchases' amounts; Holm over everything, CUPED over the 7 days before exposure."""
    return {
        "key": key, "name": "Checkout button", "hypothesis": "A green button sells more",
        "variants": [{"key": "control", "name": "Grey", "weight": 1}, {"key": "green", "name": "Green", "weight": 1}],
        "metrics": [
            {"key": "paid", "name": "Paid", "kind": "CONVERSION", "role": "PRIMARY", "event": {"event": "checkout.completed"},
             "windowHours": WINDOW_HOURS},
            {"key": "views", "name": "Page views", "kind": "COUNT", "event": {"event": "page.viewed"}},
            {"key": "spent", "name": "Spent", "kind": "SUM", "role": "GUARDRAIL", "property": "amount",
             "event": {"event": "purchase", "filters": [{"key": "channel", "value": "web"}]}},
        ],
        "cupedDays": 7, "minimumSampleSize": 400, **changes,
    }  # fmt: skip


async def count_experiments(org: str) -> int:
    async with connection() as conn:
        return await conn.fetchval("SELECT count(*) FROM experiments WHERE organization_id = $1", uuid.UUID(org))


def field_of(body: dict[str, Any]) -> str | None:
    return (body.get("errors") or [{}])[0].get("extensions", {}).get("field")


# -- definitions -----------------------------------------------------------------------------


async def test_an_experiment_lives_draft_running_stopped_completed_audited(client: Any, tenant: Any) -> None:
    admin = tenant.org_admin_token
    created = (await gql_data(client, CREATE, {"i": definition("life")}, admin))["createExperiment"]
    assert created["status"] == "DRAFT" and created["startedAt"] is None
    assert [m["role"] for m in created["metrics"]] == ["PRIMARY", "SECONDARY", "GUARDRAIL"]
    renamed = await gql_data(client, UPDATE, {"id": created["id"], "i": {"name": "Checkout", "variants": [
        {"key": "control", "name": "Grey"}, {"key": "green", "name": "Green"}, {"key": "blue", "name": "Blue"}]}}, admin)  # fmt: skip
    assert [v["key"] for v in renamed["updateExperiment"]["variants"]] == ["control", "green", "blue"]
    started = (await gql_data(client, STATUS, {"id": created["id"], "s": "RUNNING"}, admin))["setExperimentStatus"]
    assert started["status"] == "RUNNING" and started["startedAt"] is not None
    stopped = (await gql_data(client, STATUS, {"id": created["id"], "s": "STOPPED"}, admin))["setExperimentStatus"]
    done = (await gql_data(client, STATUS, {"id": created["id"], "s": "COMPLETED"}, admin))["setExperimentStatus"]
    assert stopped["endedAt"] is not None and done["endedAt"] == stopped["endedAt"]
    history = done["statusHistory"]
    assert [(h["fromStatus"], h["toStatus"]) for h in history] == [("DRAFT", "RUNNING"), ("RUNNING", "STOPPED"), ("STOPPED", "COMPLETED")]
    assert {h["actorRole"] for h in history} == {"org_admin"} and all(h["actor"] for h in history)
    assert history[0]["at"] <= history[1]["at"] <= history[2]["at"]
    body = await gql(client, STATUS, {"id": created["id"], "s": "RUNNING"}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and field_of(body) == "status"


async def test_bad_input_names_its_field_and_writes_nothing(client: Any, tenant: Any) -> None:
    admin = tenant.org_admin_token
    cases = [
        (definition("w", variants=[{"key": "a", "name": "A", "weight": 0}, {"key": "b", "name": "B", "weight": 0}]), "variants"),
        (definition("d", variants=[{"key": "a", "name": "A"}, {"key": "a", "name": "A again"}]), "variants[1].key"),
        (definition("m", metrics=[{"key": "paid", "name": "Paid", "kind": "CONVERSION", "role": "PRIMARY"}]), "metrics[0].event"),
        (definition("s", metrics=[{"key": "s", "name": "S", "kind": "SUM", "event": {"event": "purchase"}}]), "metrics[0].property"),
        (definition("r", metrics=[{"key": "r", "name": "R", "kind": "REVENUE", "currency": "euro"}]), "metrics[0].currency"),
        (definition("t", targeting={"cohortId": str(uuid.uuid4())}), "targeting.cohortId"),
        (definition("x", metrics=[{"key": "p", "name": "P", "kind": "CONVERSION", "event": {"event": "a", "filters": [
            {"key": "k", "operator": "REGEX", "value": "(?P<n>x)"}]}}]), "metrics[0].event.filters[0].value"),
    ]  # fmt: skip
    before = await count_experiments(tenant.org_id)
    for given, field in cases:
        body = await gql(client, CREATE, {"i": given}, token=admin)
        assert error_codes(body) == ["BAD_USER_INPUT"] and field_of(body) == field, (field, body)
    assert await count_experiments(tenant.org_id) == before
    # starting without a primary metric, then changing the variants of a running experiment
    secondary_only = definition("no-primary", metrics=[{"key": "v", "name": "Views", "kind": "COUNT", "event": {"event": "page.viewed"}}])
    draft = (await gql_data(client, CREATE, {"i": secondary_only}, admin))["createExperiment"]
    body = await gql(client, STATUS, {"id": draft["id"], "s": "RUNNING"}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and field_of(body) == "metrics"
    running = (await gql_data(client, CREATE, {"i": definition("frozen")}, admin))["createExperiment"]
    await gql_data(client, STATUS, {"id": running["id"], "s": "RUNNING"}, admin)
    body = await gql(client, UPDATE, {"id": running["id"], "i": {"variants": [{"key": "a", "name": "A"}, {"key": "b", "name": "B"}]}}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and field_of(body) == "variants"
    # assigning a stopped experiment
    await gql_data(client, STATUS, {"id": running["id"], "s": "STOPPED"}, admin)
    body = await gql(client, ASSIGN, {"key": "frozen", "p": "u:late"}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and field_of(body) == "experimentKey"
    async with connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM experiment_exposures WHERE organization_id = $1", uuid.UUID(tenant.org_id)) == 0


# -- assignment ------------------------------------------------------------------------------

VARIANTS = (Variant("control", "A", 1.0), Variant("b", "B", 2.0), Variant("c", "C", 1.0))


def test_assignment_is_the_same_in_another_process() -> None:
    ids = [f"u:person-{n}" for n in range(300)]
    here = [assignment.variant_for("pricing-2026", VARIANTS, 0.7, p) for p in ids]
    script = (
        "import json, sys\n"
        "from app.services.experiments import assignment\n"
        "from app.services.experiments.definitions import Variant\n"
        "vs = (Variant('control', 'A', 1.0), Variant('b', 'B', 2.0), Variant('c', 'C', 1.0))\n"
        "ids = json.load(sys.stdin)\n"
        "print(json.dumps([assignment.variant_for('pricing-2026', vs, 0.7, p) for p in ids]))\n"
    )
    env_hash = {"PYTHONHASHSEED": "12345"}  # another hash seed: nothing may depend on Python's hash()
    import os

    out = subprocess.run([sys.executable, "-c", script], input=json.dumps(ids), capture_output=True, text=True, check=True,
                         env={**os.environ, **env_hash})  # fmt: skip
    assert json.loads(out.stdout) == here
    assert None in here and {"control", "b", "c"} <= set(here)


def test_each_variant_s_share_is_within_one_percent_of_its_weight() -> None:
    ids = [f"u:{uuid.UUID(int=n)}" for n in range(100_000)]
    counts: dict[str | None, int] = defaultdict(int)
    for p in ids:
        counts[assignment.variant_for("share-check", VARIANTS, 1.0, p)] += 1
    for v in VARIANTS:
        assert abs(counts[v.key] / len(ids) - v.weight / 4) < 0.01, counts
    inside = sum(assignment.variant_for("share-check", VARIANTS, 0.3, p) is not None for p in ids)
    assert abs(inside / len(ids) - 0.3) < 0.01


def test_raising_allocation_adds_persons_without_moving_anyone() -> None:
    ids = [f"a:device-{n}" for n in range(20_000)]
    before = {p: assignment.variant_for("grow", VARIANTS, 0.2, p) for p in ids}
    after = {p: assignment.variant_for("grow", VARIANTS, 0.6, p) for p in ids}
    assert all(after[p] == v for p, v in before.items() if v is not None)
    assert sum(v is not None for v in after.values()) > 2.5 * sum(v is not None for v in before.values())


async def test_assignment_records_one_exposure_per_person(client: Any, tenant: Any) -> None:
    admin = tenant.org_admin_token
    created = (await gql_data(client, CREATE, {"i": definition("once")}, admin))["createExperiment"]
    await gql_data(client, STATUS, {"id": created["id"], "s": "RUNNING"}, admin)
    first = (await gql_data(client, ASSIGN, {"key": "once", "p": "u:ada"}, admin))["experimentAssignment"]
    again = (await gql_data(client, ASSIGN, {"key": "once", "p": "u:ada"}, admin))["experimentAssignment"]
    assert first["outcome"] == "ASSIGNED" and first["firstExposure"] is True and again["firstExposure"] is False
    assert first["variant"] == again["variant"] == assignment.variant_for("once", (Variant("control", "", 1), Variant("green", "", 1)), 1.0, "u:ada")
    results = (await gql_data(client, RESULTS, {"id": created["id"]}, admin))["experimentResults"]
    assert sum(e["n"] for e in results["exposures"]) == 1


async def test_an_exposure_event_names_its_experiment_and_variant(client: Any, tenant: Any) -> None:
    from tests.support.tracking import TRACK_EVENTS

    body = await gql(client, TRACK_EVENTS, {"events": [{"type": "experiment.exposed", "userId": "u1", "properties": {"experimentKey": "k"}}]},
                     token=tenant.ingestion_key)  # fmt: skip
    assert body["data"]["trackEvents"]["rejected"] == [{"index": 0, "field": "properties.variant", "reason": body["data"]["trackEvents"]["rejected"][0]["reason"]}]


# -- results ---------------------------------------------------------------------------------


@dataclass
class Person:
    """A person of the reference world: their exposures and metric events."""

    user: str
    exposures: list[tuple[datetime, str]]


def exposed(key: str, user: str, variant: str, at: datetime, n: int, batch: int) -> ProductEvent:
    return ProductEvent(f"{key}-x-{n}", "experiment.exposed", at, user_id=user,
                        properties={"experimentKey": key, "variant": variant}, batch=batch)  # fmt: skip


def world(key: str, persons: int = 60) -> list[ProductEvent]:
    """SDK exposures (one person in both variants), then conversions, views and purchases around
    them: some before exposure (CUPED's pre-period, or not counted), some past the 48 h
    window, one conversion arriving before its person's exposure."""
    events: list[ProductEvent] = []
    n = 0
    for i in range(persons):
        user = f"{key}-p{i}"
        variant = "green" if i % 2 else "control"
        t0 = NOW - timedelta(hours=72 - i % 5)
        late = i % 13 == 0  # its exposure arrives after its conversion was processed
        events.append(exposed(key, user, variant, t0, n, batch=2 if late else 0))
        n += 1
        if i == 7:
            events.append(exposed(key, user, "control", t0 + timedelta(minutes=5), n, batch=0))  # a second variant
            n += 1
        converts = (i * 7919) % 10 < (6 if variant == "green" else 3)
        if converts:
            events.append(ProductEvent(f"{key}-o-{i}", "checkout.completed", t0 + timedelta(hours=1 + i % 3), user_id=user, batch=1))
        if i % 4 == 0:  # past the window: not a conversion
            events.append(ProductEvent(f"{key}-ol-{i}", "checkout.completed", t0 + timedelta(hours=WINDOW_HOURS + 2), user_id=user, batch=1))
        for v in range(i % 4):
            events.append(ProductEvent(f"{key}-v-{i}-{v}", "page.viewed", t0 + timedelta(minutes=10 + v), user_id=user, batch=1))
        for d in range(1 + i % 3):  # the week before exposure: CUPED's covariate
            events.append(ProductEvent(f"{key}-pv-{i}-{d}", "page.viewed", t0 - timedelta(days=d + 1), user_id=user, batch=0))
        events.append(ProductEvent(f"{key}-b-{i}", "purchase", t0 + timedelta(minutes=30), user_id=user, batch=1,
                                   properties={"amount": 10 + i % 7, "channel": "web" if i % 3 else "app"}))
        events.append(ProductEvent(f"{key}-bp-{i}", "purchase", t0 - timedelta(days=2), user_id=user, batch=0,
                                   properties={"amount": 5 + i % 4, "channel": "web"}))  # fmt: skip
    return events


def reference_stats(events: list[ProductEvent], variants: list[str]) -> tuple[dict[str, list[stats.VariantStats]], list[str]]:
    """Each metric's sums per variant, from the events in plain Python; and the conflicted persons."""
    first: dict[str, tuple[datetime, str]] = {}
    seen: dict[str, set[str]] = defaultdict(set)
    for e in sorted((e for e in events if e.type == "experiment.exposed"), key=lambda e: e.occurred_at):
        person = f"u:{e.user_id}"
        first.setdefault(person, (e.occurred_at, e.properties["variant"]))
        seen[person].add(e.properties["variant"])
    conflicted = sorted(p for p, vs in seen.items() if len(vs) > 1)
    values: dict[str, dict[str, tuple[float, float]]] = defaultdict(dict)  # metric -> person -> (value, pre)
    for person, (t0, _) in first.items():
        mine = [e for e in events if f"u:{e.user_id}" == person]
        after = lambda e, end=None: t0 <= e.occurred_at and (end is None or e.occurred_at < t0 + end)  # noqa: E731
        before = lambda e: t0 - timedelta(days=7) <= e.occurred_at < t0  # noqa: E731
        paid = [e for e in mine if e.type == "checkout.completed"]
        views = [e for e in mine if e.type == "page.viewed"]
        web = [e for e in mine if e.type == "purchase" and e.properties.get("channel") == "web"]
        values["paid"][person] = (float(any(after(e, timedelta(hours=WINDOW_HOURS)) for e in paid)), float(any(before(e) for e in paid)))
        values["views"][person] = (float(sum(after(e) for e in views)), float(sum(before(e) for e in views)))
        values["spent"][person] = (float(sum(e.properties["amount"] for e in web if after(e))),
                                   float(sum(e.properties["amount"] for e in web if before(e))))  # fmt: skip
    out = {}
    for metric, per in values.items():
        rows = []
        for v in variants:
            xs = [per[p] for p, (_, variant) in first.items() if variant == v and p not in conflicted]
            binomial = metric == "paid"
            s = sum(x for x, _ in xs)
            rows.append(stats.VariantStats(v, len(xs), s, s if binomial else sum(x * x for x, _ in xs), sum(p for _, p in xs),
                                           sum(p * p for _, p in xs), sum(x * p for x, p in xs)))  # fmt: skip
        out[metric] = rows
    return out, conflicted


async def test_results_equal_a_plain_computation_over_the_same_events(client: Any, tenant: Any, worker: Any) -> None:
    admin = tenant.org_admin_token
    key = f"checkout-{uuid.uuid4().hex[:6]}"
    created = (await gql_data(client, CREATE, {"i": definition(key)}, admin))["createExperiment"]
    await gql_data(client, STATUS, {"id": created["id"], "s": "RUNNING"}, admin)
    events = world(key)
    for batch in (0, 1, 2):  # exposures and pre-period; then conversions; then the late exposures
        await send(client, tenant.ingestion_key, [e for e in events if e.batch == batch])
        await worker.drain()
    results = (await gql_data(client, RESULTS, {"id": created["id"]}, admin))["experimentResults"]

    expected, conflicted = reference_stats(events, ["control", "green"])
    assert results["conflicts"] == 1 and results["conflictedPersonIds"] == conflicted
    assert results["exposures"] == [{"key": v.key, "n": v.n} for v in expected["paid"]]
    assert results["srmPValue"] == pytest.approx(stats.srm_p_value([v.n for v in expected["paid"]], [1, 1]), abs=1e-12)
    metrics = {"paid": stats.MetricType.BINOMIAL, "views": stats.MetricType.MEAN, "spent": stats.MetricType.MEAN}
    reference = stats.corrected(
        [stats.analyze(variants=expected[m], options=stats.Options(metric_type=t, cuped=True)) for m, t in metrics.items()],
        stats.Correction.HOLM,
    )
    for got, want in zip(results["metrics"], reference, strict=True):
        for g, w in zip(got["analysis"]["variants"], want.variants, strict=True):
            assert g["n"] == w.n and g["mean"] == pytest.approx(w.mean, rel=1e-9, abs=1e-12), (got["key"], g, w)
            if w.absolute is None:
                assert g["absolute"] is None
                continue
            for name in ("estimate", "ci_low", "ci_high", "standard_error", "p_value", "adjusted_p_value"):
                camel = {"ci_low": "ciLow", "ci_high": "ciHigh", "standard_error": "standardError", "p_value": "pValue",
                         "adjusted_p_value": "adjustedPValue"}.get(name, name)  # fmt: skip
                assert g["absolute"][camel] == pytest.approx(getattr(w.absolute, name), rel=1e-6, abs=1e-9), (got["key"], name)
            assert g["cuped"]["theta"] == pytest.approx(w.cuped.theta, rel=1e-6, abs=1e-9)  # type: ignore[union-attr]
        assert got["analysis"]["winner"] == want.winner
    assert results["minimumSampleSize"] == 400 and results["daysToMinimumSample"] > 0


# -- the seed's list and live results --------------------------------------------------------

LIVE = """subscription($id: ID!) { experimentResults(experimentId: $id) { exposures { key n } computedAt } }"""


async def start(client: Any, admin: str, key: str, **changes: Any) -> str:
    created = (await gql_data(client, CREATE, {"i": definition(key, **changes)}, admin))["createExperiment"]
    await gql_data(client, STATUS, {"id": created["id"], "s": "RUNNING"}, admin)
    return created["id"]


async def test_the_list_shows_views_conversions_rate_winner_and_confidence(client: Any, tenant: Any, worker: Any) -> None:
    admin = tenant.org_admin_token
    await start(client, admin, "clear-winner", cupedDays=None)
    events = []
    for i in range(400):
        variant = "green" if i % 2 else "control"
        t0 = NOW - timedelta(hours=5)
        events.append(exposed("clear-winner", f"w{i}", variant, t0, i, batch=0))
        if i % 10 < (5 if variant == "green" else 1):
            events.append(ProductEvent(f"clear-winner-o-{i}", "checkout.completed", t0 + timedelta(hours=1), user_id=f"w{i}"))
    await send(client, tenant.ingestion_key, events)
    await worker.drain()
    listed = (await gql_data(client, LIST, {"s": "RUNNING"}, admin))["experiments"]
    [found] = [e for e in listed if e["key"] == "clear-winner"]
    assert found["variants"] == [
        {"key": "control", "views": 200, "conversions": 40.0, "conversionRate": 0.2},
        {"key": "green", "views": 200, "conversions": 80.0, "conversionRate": 0.4},
    ]
    arms = [stats.VariantStats("control", 200, 40, 40), stats.VariantStats("green", 200, 80, 80)]
    reference = stats.analyze(variants=arms, options=stats.Options(metric_type=stats.MetricType.BINOMIAL, correction=stats.Correction.HOLM))
    assert found["winner"] == "green" and found["confidence"] == pytest.approx(reference.confidence, rel=1e-12)
    assert (await gql_data(client, LIST, {"s": "DRAFT"}, admin))["experiments"] == []


async def test_live_results_follow_the_worker_at_most_once_a_second(app: Any, settings: Any, client: Any, tenant: Any,
                                                                    worker: Any) -> None:  # fmt: skip
    import asyncio
    import time
    from types import SimpleNamespace

    from app.auth import viewer_from_token
    from app.graphql import Context, schema_extensions
    from schema import build_schema

    admin = tenant.org_admin_token
    experiment_id = await start(client, admin, "live")
    schema = build_schema(schema_extensions(settings))
    context = Context(request=SimpleNamespace(app=app), response=None, viewer=viewer_from_token(admin))
    stream = await schema.subscribe(LIVE, variable_values={"id": experiment_id}, context_value=context)
    try:
        first = await asyncio.wait_for(stream.__anext__(), 10)  # type: ignore[union-attr]
        assert [e["n"] for e in first.data["experimentResults"]["exposures"]] == [0, 0]
        batches, pushes = [], []
        for round_ in range(3):
            await send(client, tenant.ingestion_key, [exposed("live", f"l{round_}-{i}", "green", NOW, 10 * round_ + i, 0) for i in range(3)])
            await worker.drain()
            batches.append(time.monotonic())
        while sum(e["n"] for e in (pushes[-1] if pushes else first.data["experimentResults"])["exposures"]) < 9:
            result = await asyncio.wait_for(stream.__anext__(), 10)  # type: ignore[union-attr]
            assert result.errors is None, result.errors
            pushes.append(result.data["experimentResults"])
            pushes[-1]["at"] = time.monotonic()
        assert pushes[-1]["exposures"] == [{"key": "control", "n": 0}, {"key": "green", "n": 9}]
        assert all(b["at"] - a["at"] >= 0.99 for a, b in zip(pushes, pushes[1:], strict=False))
        assert len(pushes) <= 3
    finally:
        await stream.aclose()  # type: ignore[union-attr]


PUBLISH = """mutation($e: [DomainEventInput!]!) { publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
SUMS = """query($id: ID!) { experimentResults(experimentId: $id) { metrics { key analysis { variants { key n mean } } } } }"""


async def test_revenue_and_retention_metrics(client: Any, tenant: Any, worker: Any) -> None:
    """REVENUE adds the ledger's money in its currency (refunds subtract, other currencies and
    events before exposure do not count); RETENTION is an event between day 1 and day 3."""
    admin = tenant.org_admin_token
    metrics = [
        {"key": "revenue", "name": "Revenue", "kind": "REVENUE", "role": "PRIMARY", "currency": "EUR"},
        {"key": "returned", "name": "Returned", "kind": "RETENTION", "fromDay": 1, "toDay": 3},
    ]
    experiment_id = await start(client, admin, "money", metrics=metrics, cupedDays=None)
    t0 = NOW - timedelta(days=4)
    users = [f"m{i}" for i in range(6)]
    variant = {u: "green" if i % 2 else "control" for i, u in enumerate(users)}
    await send(client, tenant.ingestion_key, [exposed("money", u, variant[u], t0, i, 0) for i, u in enumerate(users)] + [
        ProductEvent("money-r0", "page.viewed", t0 + timedelta(days=2), user_id="m0"),
        ProductEvent("money-r1", "page.viewed", t0 + timedelta(hours=3), user_id="m1"),  # day 0: not a return
        ProductEvent("money-r3", "page.viewed", t0 + timedelta(days=1, hours=1), user_id="m3"),
    ])  # fmt: skip

    def money(n: int, kind: str, user: str, amount: int, currency: str = "EUR", at: datetime = t0 + timedelta(hours=1)) -> dict[str, Any]:
        return {"eventId": f"money-{n}", "type": kind, "userId": user, "amountMinor": amount, "currency": currency,
                "occurredAt": at.isoformat(), "properties": {"orderId": f"money-order-{n}"}}  # fmt: skip

    published = [money(1, "ORDER_PAID", "m0", 1200), money(2, "ORDER_REFUNDED", "m0", 200), money(3, "ORDER_PAID", "m1", 5000),
                 money(4, "ORDER_PAID", "m2", 700, "USD"), money(5, "ORDER_PAID", "m3", 900, at=t0 - timedelta(hours=1)),
                 money(6, "ORDER_PAID", "m5", 3000)]  # fmt: skip
    body = await gql_data(client, PUBLISH, {"e": published}, tenant.service_token)
    assert body["publishDomainEvents"]["rejected"] == [], body
    await worker.drain()
    found = (await gql_data(client, SUMS, {"id": experiment_id}, admin))["experimentResults"]["metrics"]
    means = {m["key"]: {v["key"]: (v["n"], v["mean"]) for v in m["analysis"]["variants"]} for m in found}
    # control: m0 (1200 - 200), m2 (USD: 0), m4 (0); green: m1 (5000), m3 (before exposure: 0), m5 (3000)
    assert means["revenue"] == {"control": (3, 1000 / 3), "green": (3, 8000 / 3)}
    # returned between day 1 and 3: m0 (control), m3 (green)
    assert means["returned"] == {"control": (3, 1 / 3), "green": (3, 1 / 3)}


COHORT = """mutation($d: CohortDefinitionInput!) { createCohort(name: "Testers", definition: $d) { id } }"""
IDENTIFY = """mutation { identify(userId: "linked-user", anonymousId: "linked-device", properties: {plan: "pro"}) { personId } }"""


async def test_targeting_allocation_and_linked_ids(client: Any, tenant: Any) -> None:
    """A cohort or person properties decide who may be assigned; outside the allocation nobody
    is; an anonymous id linked to a user is assigned as the user."""
    admin = tenant.org_admin_token
    cohort = (await gql_data(client, COHORT, {"d": {"kind": "STATIC", "personIds": ["u:member"]}}, admin))["createCohort"]
    await start(client, admin, "cohort-only", targeting={"cohortId": cohort["id"]})
    member = (await gql_data(client, ASSIGN, {"key": "cohort-only", "p": "u:member"}, admin))["experimentAssignment"]
    stranger = (await gql_data(client, ASSIGN, {"key": "cohort-only", "p": "u:stranger"}, admin))["experimentAssignment"]
    assert member["outcome"] == "ASSIGNED" and member["variant"] in ("control", "green")
    assert stranger == {"variant": None, "outcome": "NOT_TARGETED", "firstExposure": False, "personId": "u:stranger"}

    await gql_data(client, IDENTIFY, {}, tenant.ingestion_key)
    pro = {"filters": [{"source": "PERSON", "key": "plan", "value": "pro"}]}
    await start(client, admin, "pro-only", targeting=pro)
    linked = (await gql_data(client, ASSIGN, {"key": "pro-only", "p": "a:linked-device"}, admin))["experimentAssignment"]
    assert linked["personId"] == "u:linked-user" and linked["outcome"] == "ASSIGNED"
    free = (await gql_data(client, ASSIGN, {"key": "pro-only", "p": "u:member"}, admin))["experimentAssignment"]
    assert free["outcome"] == "NOT_TARGETED"

    variants = (Variant("control", "", 1.0), Variant("green", "", 1.0))
    outside = next(f"u:o{n}" for n in range(1000) if assignment.variant_for("tiny", variants, 0.05, f"u:o{n}") is None)
    await start(client, admin, "tiny", allocation=0.05)
    refused = (await gql_data(client, ASSIGN, {"key": "tiny", "p": outside}, admin))["experimentAssignment"]
    assert refused["outcome"] == "NOT_ALLOCATED" and refused["variant"] is None
    body = await gql(client, CREATE, {"i": definition("all", allocation=0)}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and field_of(body) == "allocation"
