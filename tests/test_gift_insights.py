"""Gift analytics: where donors come from (country, device, new or returning) and the funnel
from a profile view to a gift, each checked against a plain-Python count over the stored
events."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.database import connection
from tests.support.graphql import error_codes, gql, gql_data
from tests.test_privacy import track

DESKTOP = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"
DONORS = """query($p: ID, $org: ID, $r: TimeRangeInput!) { giftDonors(profileId: $p, organizationId: $org, range: $r) {
  donors newDonors returningDonors byCountry { value donors newDonors gifts } byDevice { value donors newDonors gifts } } }"""
FUNNEL = """query($p: ID, $org: ID, $r: TimeRangeInput!, $w: Int) {
  giftFunnel(profileId: $p, organizationId: $org, range: $r, conversionWindowSeconds: $w) {
    steps { index event count conversionRate dropOff } } }"""
WINDOW = 3600


def event(kind: str, who: str, profile: str, at: datetime, rng: random.Random, **extra: Any) -> dict[str, Any]:
    context = {"userAgent": rng.choice([DESKTOP, PHONE])}
    return {"type": kind, "userId": who, "profileId": profile, "occurredAt": at.isoformat(), "context": context, **extra}


def generated(profiles: list[str], start: datetime, rng: random.Random) -> list[dict[str, Any]]:
    """Views and gifts of 40 people over the 10 days before `start` and the 5 days after."""
    events = []
    for n in range(40):
        who = f"fan-{n}"
        for _ in range(rng.randint(1, 4)):
            profile = rng.choice(profiles)
            at = start + timedelta(days=rng.uniform(-10, 5))
            events.append(event("profile.viewed", who, profile, at, rng))
            if rng.random() < 0.5:
                later = at + timedelta(seconds=rng.choice([60, 1800, 3599, 3601, 7200]))
                events.append(event("gift.purchased", who, profile, later, rng, amountMinor=rng.randint(100, 900),
                                    currency="EUR", properties={"category": "roses"}))  # fmt: skip
    return events


async def stored_rows(org: str) -> list[dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT type, user_id, profile_id::text AS profile, occurred_at, country::text AS country, device_type"
            " FROM events WHERE organization_id = $1 AND type IN ('profile.viewed', 'gift.purchased')",
            uuid.UUID(org),
        )
    return [dict(r) for r in rows]


def expected_donors(rows: list[dict[str, Any]], profile: str | None, start: datetime, end: datetime) -> dict[str, Any]:
    gifts = sorted((r for r in rows if r["type"] == "gift.purchased" and profile in (None, r["profile"])),
                   key=lambda r: r["occurred_at"])  # fmt: skip
    inside = [g for g in gifts if start <= g["occurred_at"] < end]
    donors: dict[str, dict[str, Any]] = {}
    for g in inside:
        donor = donors.setdefault(g["user_id"], {"first": g, "gifts": 0})
        donor["gifts"] += 1
    before = {g["user_id"] for g in gifts if g["occurred_at"] < start}

    def groups(key: str) -> dict[Any, tuple[int, int, int]]:
        out: dict[Any, list[int]] = {}
        for who, d in donors.items():
            group = out.setdefault(d["first"][key], [0, 0, 0])
            group[0] += 1
            group[1] += who not in before
            group[2] += d["gifts"]
        return {k: tuple(v) for k, v in out.items()}

    return {"donors": len(donors), "new": sum(1 for who in donors if who not in before),
            "country": groups("country"), "device": groups("device_type")}  # fmt: skip


def expected_funnel(rows: list[dict[str, Any]], profile: str | None, start: datetime, end: datetime) -> tuple[int, int]:
    """Persons with a view in the range; of them, those with a gift (of the same profile when
    one is named) at most WINDOW seconds after such a view."""
    entered, converted = set(), set()
    views = [r for r in rows if r["type"] == "profile.viewed" and profile in (None, r["profile"]) and start <= r["occurred_at"] < end]
    gifts = [r for r in rows if r["type"] == "gift.purchased" and profile in (None, r["profile"])]
    for v in views:
        entered.add(v["user_id"])
        if any(g["user_id"] == v["user_id"] and v["occurred_at"] < g["occurred_at"] <= v["occurred_at"] + timedelta(seconds=WINDOW)
               for g in gifts):  # fmt: skip
            converted.add(v["user_id"])
    return len(entered), len(converted)


def as_groups(found: list[dict[str, Any]]) -> dict[Any, tuple[int, int, int]]:
    return {g["value"]: (g["donors"], g["newDonors"], g["gifts"]) for g in found}


async def test_gift_donors_and_the_gift_funnel_match_a_count_of_the_events(client, tenant, worker):
    from app.services import organizations as orgs

    second = str((await orgs.create_profile(organization=tenant.organization, name="Second Stage")).id)
    profiles = [tenant.profile_id, second]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=6)
    events = generated(profiles, start, random.Random(7))
    for i in range(0, len(events), 50):
        await track(client, tenant, *events[i : i + 50])
    await worker.drain()
    async with connection() as conn:  # the country GeoIP would give (the tests run without a GeoIP file)
        await conn.execute(
            "UPDATE events SET country = (ARRAY['GB', 'US', 'SE', NULL])[1 + abs(hashtext(event_id)) % 4]"
            " WHERE organization_id = $1", uuid.UUID(tenant.org_id),
        )  # fmt: skip
    rows = await stored_rows(tenant.org_id)
    end = start + timedelta(days=5)
    window = {"from": start.isoformat(), "to": end.isoformat()}

    for profile, variables, token in ((None, {"org": tenant.org_id}, tenant.org_admin_token),
                                      (tenant.profile_id, {"p": tenant.profile_id}, tenant.provider_token)):  # fmt: skip
        found = (await gql_data(client, DONORS, {**variables, "r": window}, token))["giftDonors"]
        want = expected_donors(rows, profile, start, end)
        assert want["donors"] > 3 and 0 < want["new"] < want["donors"], want  # the data has both kinds
        assert (found["donors"], found["newDonors"], found["returningDonors"]) == (
            want["donors"], want["new"], want["donors"] - want["new"])
        assert as_groups(found["byCountry"]) == want["country"] and len(want["country"]) > 1
        assert as_groups(found["byDevice"]) == want["device"] and len(want["device"]) > 1

        funnel = (await gql_data(client, FUNNEL, {**variables, "r": window, "w": WINDOW}, token))["giftFunnel"]
        entered, converted = expected_funnel(rows, profile, start, end)
        assert [s["event"] for s in funnel["steps"]] == ["profile.viewed", "gift.purchased"]
        assert [s["count"] for s in funnel["steps"]] == [entered, converted] and 0 < converted < entered
        assert funnel["steps"][1]["conversionRate"] == converted / entered
        assert funnel["steps"][1]["dropOff"] == entered - converted


async def test_gift_insights_are_a_providers_for_their_profile_only(client, tenant, other_tenant):
    window = {"preset": "LAST_30_DAYS"}
    from app.services import organizations as orgs

    neighbour = str((await orgs.create_profile(organization=tenant.organization, name="Neighbour")).id)
    for query in (DONORS, FUNNEL):
        for variables in ({"p": neighbour}, {"p": other_tenant.profile_id}):
            refused = await gql(client, query, {**variables, "r": window}, token=tenant.provider_token)
            assert error_codes(refused) == ["NOT_FOUND"]
        refused = await gql(client, query, {"org": tenant.org_id, "r": window}, token=tenant.provider_token)
        assert error_codes(refused) == ["FORBIDDEN"]
    bad = await gql(client, FUNNEL, {"p": tenant.profile_id, "r": window, "w": 0}, token=tenant.provider_token)
    assert error_codes(bad) == ["BAD_USER_INPUT"] and bad["errors"][0]["extensions"]["field"] == "conversionWindowSeconds"
