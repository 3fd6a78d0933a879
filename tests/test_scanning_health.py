"""Scanning health: generated scans at the doors, successful and failed, published as domain
events and compared with a from-scratch count over what was sent; failed scans are checked
as they arrive, naming the bad property; organization admins see only their own."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.graphql import error_codes, gql, gql_data
from tests.support.tenants import Tenant

PUBLISH = """mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
HEALTH = """query($org: ID, $from: DateTime!, $to: DateTime, $n: Int) {
  scanningHealth(organizationId: $org, range: {from: $from, to: $to}, recentLimit: $n) {
    organizationId range { from to } scans failures failureRate byErrorType { errorType count }
    devices { organizationId deviceId scans failures failureRate lastErrorType lastErrorAt }
    recentErrors { organizationId eventId at errorType deviceId ticketId code orderId listingId message } } }"""
ERROR_TYPES = ("invalid_code", "already_used", "network")
DEVICES = ("gate-1", "gate-2", "gate-3")


@dataclass(frozen=True)
class Scan:
    event_id: str
    at: datetime
    device: str
    error: str | None  # None: it let the holder in

    def event(self) -> dict[str, Any]:
        properties: dict[str, Any] = {"deviceId": self.device, "listingId": "concert-1"}
        if self.error == "invalid_code":
            properties |= {"errorType": self.error, "code": f"QR-{self.event_id}", "message": "unknown code"}
        elif self.error is not None:
            properties |= {"errorType": self.error, "ticketId": f"T-{self.event_id}", "orderId": "ord-1"}
        else:
            properties |= {"ticketId": f"T-{self.event_id}", "orderId": "ord-1"}
        return {"eventId": self.event_id, "type": "TICKET_SCAN_FAILED" if self.error else "TICKET_SCANNED",
                "occurredAt": self.at.isoformat(), "properties": properties}  # fmt: skip


def generated_scans(seed: int, start: datetime, n: int) -> list[Scan]:
    """A door night: most scans pass, a fifth fail, one device far worse than the others."""
    rng = random.Random(seed)
    scans = []
    for i in range(n):
        device = rng.choice(DEVICES)
        failing = rng.random() < (0.5 if device == "gate-3" else 0.1)
        at = start + timedelta(seconds=rng.randrange(0, 3 * 3600), milliseconds=i)
        scans.append(Scan(f"s{seed}-{i}-{uuid.uuid4().hex[:6]}", at, device, rng.choice(ERROR_TYPES) if failing else None))
    return scans


async def publish(client: Any, tenant: Tenant, events: list[dict[str, Any]]) -> dict[str, Any]:
    return (await gql_data(client, PUBLISH, {"e": events}, tenant.service_token))["publishDomainEvents"]


async def health(client: Any, token: str, org: str | None, start: datetime, end: datetime, n: int = 20) -> dict[str, Any]:
    variables = {"org": org, "from": start.isoformat(), "to": end.isoformat(), "n": n}
    return (await gql_data(client, HEALTH, variables, token))["scanningHealth"]


def expected_error(scan: Scan) -> tuple[Any, ...]:
    """A recent error as sent: an invalid code names no ticket, only what was read."""
    assert scan.error is not None
    if scan.error == "invalid_code":
        return scan.event_id, "INVALID_CODE", scan.device, None, f"QR-{scan.event_id}", None, "concert-1", "unknown code"
    return scan.event_id, scan.error.upper(), scan.device, f"T-{scan.event_id}", None, "ord-1", "concert-1", None


def expected_devices(scans: list[Scan]) -> list[dict[str, Any]]:
    rows = []
    for device in DEVICES:
        mine = [s for s in scans if s.device == device]
        if not mine:
            continue
        failed = sorted((s for s in mine if s.error), key=lambda s: (s.at, s.event_id))
        rows.append({"deviceId": device, "scans": len(mine), "failures": len(failed),
                     "lastErrorType": failed[-1].error.upper() if failed else None,
                     "lastErrorAt": failed[-1].at if failed else None})  # fmt: skip
    return sorted(rows, key=lambda r: (-r["failures"], -r["scans"], r["deviceId"]))


async def test_scanning_health_counts_scans_failures_and_devices_as_sent(client, worker, tenant) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    scans = generated_scans(7, start, 300)
    before = Scan(f"early-{uuid.uuid4().hex[:6]}", start - timedelta(minutes=5), "gate-1", "network")
    done = await publish(client, tenant, [s.event() for s in [*scans, before]])
    assert done["rejected"] == [] and done["accepted"] == len(scans) + 1
    await worker.drain()
    found = await health(client, tenant.org_admin_token, None, start, start + timedelta(hours=4), n=10)

    failed = [s for s in scans if s.error]
    assert (found["organizationId"], found["scans"], found["failures"]) == (tenant.org_id, len(scans), len(failed))
    assert abs(found["failureRate"] - len(failed) / len(scans)) < 1e-9
    assert {c["errorType"]: c["count"] for c in found["byErrorType"]} == {
        kind.upper(): sum(s.error == kind for s in scans) for kind in ERROR_TYPES}
    devices = [{**{k: d[k] for k in ("deviceId", "scans", "failures", "lastErrorType")},
                "lastErrorAt": datetime.fromisoformat(d["lastErrorAt"]) if d["lastErrorAt"] else None} for d in found["devices"]]
    assert devices == expected_devices(scans)
    assert found["devices"][0]["deviceId"] == "gate-3", "the failing device comes first"
    for device in found["devices"]:
        assert abs(device["failureRate"] - device["failures"] / device["scans"]) < 1e-9
    newest = sorted(failed, key=lambda s: (s.at, s.event_id), reverse=True)[:10]
    assert [(e["eventId"], e["errorType"], e["deviceId"], e["ticketId"], e["code"], e["orderId"], e["listingId"], e["message"])
            for e in found["recentErrors"]] == [expected_error(s) for s in newest]


async def test_no_scans_is_a_zero_failure_rate(client, tenant) -> None:
    now = datetime.now(UTC)
    found = await health(client, tenant.org_admin_token, tenant.org_id, now - timedelta(days=1), now)
    assert (found["scans"], found["failures"], found["failureRate"], found["devices"], found["recentErrors"]) == (0, 0, 0.0, [], [])
    assert [c["count"] for c in found["byErrorType"]] == [0, 0, 0]


async def test_a_failed_scan_names_the_property_it_lacks(client, tenant) -> None:
    def failed(**properties: Any) -> dict[str, Any]:
        return {"eventId": f"bad-{uuid.uuid4().hex[:8]}", "type": "TICKET_SCAN_FAILED", "properties": properties}

    done = await publish(client, tenant, [
        failed(errorType="timeout", deviceId="gate-1", ticketId="T1"),
        failed(errorType="network", ticketId="T1"),
        failed(errorType="network", deviceId="gate-1"),
        failed(errorType="invalid_code", deviceId="gate-1", code=""),
        failed(errorType="network", deviceId="gate-1", ticketId="T1", message="x" * 501),
        failed(errorType="invalid_code", deviceId="gate-1", code="QR-1"),
    ])  # fmt: skip
    assert [(r["index"], r["field"]) for r in done["rejected"]] == [
        (0, "properties.errorType"), (1, "properties.deviceId"), (2, "properties.ticketId"), (3, "properties.code"),
        (4, "properties.message"),
    ]
    assert done["accepted"] == 1, "an invalid code needs no ticket"


async def test_org_admins_see_only_their_own_platform_admins_any_or_every_one(client, worker, tenant, other_tenant) -> None:
    start = datetime.now(UTC) - timedelta(hours=4)
    assert (await publish(client, tenant, [s.event() for s in generated_scans(3, start, 20)]))["rejected"] == []
    await worker.drain()
    end = start + timedelta(hours=4)
    assert (await health(client, tenant.admin_token, tenant.org_id, start, end))["scans"] == 20
    assert (await health(client, other_tenant.org_admin_token, None, start, end))["scans"] == 0
    variables = {"org": tenant.org_id, "from": start.isoformat(), "to": end.isoformat()}
    assert error_codes(await gql(client, HEALTH, variables, token=other_tenant.org_admin_token)) == ["NOT_FOUND"]
    assert error_codes(await gql(client, HEALTH, variables, token=tenant.viewer_token)) == ["FORBIDDEN"]
    body = await gql(client, HEALTH, {**variables, "n": 101}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "recentLimit"


async def test_a_platform_admin_who_names_none_sees_every_organization(client, worker, tenant, other_tenant) -> None:
    """Devices and errors say whose they are: two organizations' gate-1 stay two devices."""
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=400)  # a range no other test scans in
    mine, theirs = generated_scans(5, start, 40), generated_scans(6, start, 30)
    for owner, scans in ((tenant, mine), (other_tenant, theirs)):
        assert (await publish(client, owner, [s.event() for s in scans]))["rejected"] == []
    await worker.drain()
    found = await health(client, tenant.admin_token, None, start, start + timedelta(hours=4), n=100)
    everyone = [s for s in mine + theirs]
    assert found["organizationId"] is None
    assert (found["scans"], found["failures"]) == (len(everyone), sum(1 for s in everyone if s.error))
    by_owner = {(d["organizationId"], d["deviceId"]): d["scans"] for d in found["devices"]}
    for owner, scans in ((tenant, mine), (other_tenant, theirs)):
        for device in DEVICES:
            assert by_owner.get((owner.org_id, device), 0) == sum(s.device == device for s in scans)
    errors = {(e["organizationId"], e["eventId"]) for e in found["recentErrors"]}
    assert errors == {(owner.org_id, s.event_id) for owner, scans in ((tenant, mine), (other_tenant, theirs))
                      for s in scans if s.error}  # fmt: skip
