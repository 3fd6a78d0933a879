"""Gov alerts in one process: views go in through `trackEvents`, the real outbox worker checks
every one of them with the gov detector, and the API lists, explains and tunes the alerts.
(The live pushes, across processes and over a real websocket, are in tests/test_live.py.)"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from mmdb_writer import MmdbU32

from app.services.gov_alerts import check_view
from app.services.gov_detection import GovDetector
from tests.support.graphql import error_codes, gql
from tests.support.mmdb import write_mmdb
from tests.support.tenants import Tenant
from workers.outbox import OutboxWorker

ARMY_IP = "6.1.2.3"  # 6.0.0.0/8 is on the shipped curated list (IANA: US Army)
DOD_IP = "21.9.8.7"  # 21.0.0.0/8, DDN-RVN (US Department of Defense)
PUBLIC_IP = "8.8.8.8"
PRIVATE_IP = "10.1.2.3"
DOCUMENTATION_V6 = "2001:db8::7"
POLICE_NETWORK = "63.80.0.0/16"
POLICE_IP = "63.80.1.2"

TRACK = """
mutation Track($events: [TrackEventInput!]!) {
  trackEvents(events: $events) { accepted duplicates rejected { index field reason } }
}"""
ALERTS = """
query Alerts($profileId: ID!, $limit: Int) {
  govAlerts(profileId: $profileId, range: {preset: LAST_24_HOURS}, limit: $limit) {
    profileId total range { timezone }
    alerts { eventId profileId occurredAt raisedAt confidence threshold networkName asn country
             deviceType browser os reasons signals }
  }
}"""
RECENT = """
query Recent($profileId: ID!) {
  recentProfileViews(profileId: $profileId) { eventId isGov govAlert { eventId confidence reasons } }
}"""
SETTINGS = "query($org: ID) { govAlertSettings(organizationId: $org) { organizationId threshold } }"
UPDATE = """
mutation($org: ID, $threshold: Float!) {
  updateGovAlertSettings(organizationId: $org, threshold: $threshold) { organizationId threshold }
}"""
DELETE_SUBJECT = """
mutation($anon: String) { deleteSubjectData(anonymousId: $anon) { profileEvents } }
"""
FIREFOX = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"


def view(profile_id: str, ip: str, *, visitor: str | None = None) -> dict[str, Any]:
    return {
        "type": "profile.viewed",
        "eventId": f"gov-{uuid.uuid4().hex}",
        "profileId": profile_id,
        "anonymousId": visitor or f"visitor-{uuid.uuid4().hex[:8]}",
        "context": {"ip": ip, "userAgent": FIREFOX},
    }


async def send(client: httpx.AsyncClient, tenant: Tenant, events: list[dict[str, Any]]) -> dict[str, Any]:
    body = await gql(client, TRACK, {"events": events}, token=tenant.ingestion_key)
    assert body["data"]["trackEvents"]["rejected"] == [], body
    return body["data"]["trackEvents"]


async def alerts(client: httpx.AsyncClient, tenant: Tenant, *, token: str | None = None, **variables: Any) -> dict[str, Any]:
    body = await gql(client, ALERTS, {"profileId": tenant.profile_id, **variables}, token=token or tenant.provider_token)
    assert not body.get("errors"), body
    return body["data"]["govAlerts"]


async def set_threshold(client: httpx.AsyncClient, tenant: Tenant, threshold: float) -> dict[str, Any]:
    return await gql(client, UPDATE, {"threshold": threshold}, token=tenant.org_admin_token)


# -- detection on every view ------------------------------------------------------------------


async def test_a_view_from_a_curated_government_network_raises_exactly_one_alert(client, tenant, worker) -> None:
    army, dod = view(tenant.profile_id, ARMY_IP), view(tenant.profile_id, DOD_IP)
    ordinary = [view(tenant.profile_id, ip) for ip in (PUBLIC_IP, PRIVATE_IP, DOCUMENTATION_V6)]
    await send(client, tenant, [army, *ordinary, dod])
    await worker.drain()

    listed = await alerts(client, tenant)
    assert listed["total"] == 2 and listed["range"]["timezone"] == "UTC"
    by_event = {alert["eventId"]: alert for alert in listed["alerts"]}
    assert set(by_event) == {army["eventId"], dod["eventId"]}
    alert = by_event[army["eventId"]]
    assert alert["profileId"] == tenant.profile_id
    assert (alert["confidence"], alert["threshold"]) == (0.95, 0.7)
    assert (alert["networkName"], alert["country"], alert["asn"]) == ("Army Information Systems Center", "US", None)
    assert (alert["deviceType"], alert["browser"], alert["os"]) == ("desktop", "Firefox", "Ubuntu")
    assert alert["reasons"][0].startswith("the address is in 6.0.0.0/8, on the curated government list")
    assert alert["signals"] == ["curated-list"]  # no GeoIP database configured in this app
    assert alert["raisedAt"] >= alert["occurredAt"]
    assert not any(ARMY_IP in reason for reason in alert["reasons"]), "alerts keep the network, never the address"

    recent = await gql(client, RECENT, {"profileId": tenant.profile_id}, token=tenant.provider_token)
    flags = {v["eventId"]: v for v in recent["data"]["recentProfileViews"]}
    assert flags[army["eventId"]]["isGov"] is True
    assert flags[army["eventId"]]["govAlert"] == {
        "eventId": army["eventId"], "confidence": 0.95, "reasons": alert["reasons"],
    }  # fmt: skip
    for event in ordinary:
        assert flags[event["eventId"]] == {"eventId": event["eventId"], "isGov": False, "govAlert": None}


async def test_a_view_sent_again_or_processed_again_alerts_once(client, tenant, worker) -> None:
    army = view(tenant.profile_id, ARMY_IP)
    await send(client, tenant, [army])
    await worker.drain()
    assert (await send(client, tenant, [army]))["duplicates"] == 1
    await worker.drain()
    assert (await alerts(client, tenant))["total"] == 1


async def test_the_organization_threshold_decides_and_changing_it_changes_the_outcome(
    app, client, tenant, settings, tmp_path: Path
) -> None:
    """A police network's name is evidence (keyword + weak keyword), not certainty: whether it
    alerts is the organization's call."""
    asn_db = write_mmdb(
        tmp_path / "asn.mmdb",
        "GeoLite2-ASN",
        {POLICE_NETWORK: {"autonomous_system_number": MmdbU32(64604), "autonomous_system_organization": "Example Police Department"}},
    )
    detector = GovDetector(asn_db=asn_db)
    confidence = detector.check_ip(POLICE_IP).confidence
    assert 0.7 < confidence < 0.9, confidence
    checking = OutboxWorker(bus=app.state.bus, settings=settings, name="gov-threshold", detector=detector)
    try:
        raised = await set_threshold(client, tenant, 0.9)
        assert raised["data"]["updateGovAlertSettings"] == {"organizationId": tenant.org_id, "threshold": 0.9}
        quiet = view(tenant.profile_id, POLICE_IP)
        await send(client, tenant, [quiet])
        await checking.drain()
        assert (await alerts(client, tenant))["total"] == 0

        await set_threshold(client, tenant, 0.8)
        loud = view(tenant.profile_id, POLICE_IP)
        await send(client, tenant, [loud])
        await checking.drain()
        listed = await alerts(client, tenant)
        assert [a["eventId"] for a in listed["alerts"]] == [loud["eventId"]]
        alert = listed["alerts"][0]
        assert (alert["confidence"], alert["threshold"], alert["asn"]) == (confidence, 0.8, 64604)
        assert alert["networkName"] == "Example Police Department"
        assert any("'police'" in reason for reason in alert["reasons"]), alert["reasons"]
        assert "asn-database" in alert["signals"]
    finally:
        detector.close()


def test_a_view_whose_ip_was_not_kept_is_judged_by_the_network_ingestion_recorded() -> None:
    detector = GovDetector()
    recorded = {"ip": None, "asn": 5927, "as_org": "DNIC-ASBLK-05800-06055", "country": "US "}
    check = check_view(detector, recorded)
    assert check.confidence == 0.95 and check.ip is None and check.country == "US"
    assert check.reasons[0].startswith("AS5927 is on the curated government list")
    assert "the raw IP address was not retained: the curated networks were not checked" in check.reasons
    nothing = check_view(detector, {"ip": None, "asn": None, "as_org": None, "country": None})
    assert nothing.confidence == 0.0 and "no network was recorded for this view" in nothing.reasons
    detector.close()


# -- settings and access ------------------------------------------------------------------------


async def test_threshold_settings_are_validated_and_scoped(client, tenant, other_tenant, settings) -> None:
    default = await gql(client, SETTINGS, token=tenant.org_admin_token)
    assert default["data"]["govAlertSettings"] == {"organizationId": tenant.org_id, "threshold": 0.7}
    for bad in (0, 0.01, 1.5, -1):
        body = await set_threshold(client, tenant, bad)
        assert error_codes(body) == ["BAD_USER_INPUT"], body
        assert body["errors"][0]["extensions"]["field"] == "threshold" and "0.05 to 1" in body["errors"][0]["message"]
    not_a_number = await gql(client, UPDATE, {"threshold": "high"}, token=tenant.org_admin_token)
    assert error_codes(not_a_number) == ["BAD_USER_INPUT"] and "$threshold" in not_a_number["errors"][0]["message"]
    assert (await gql(client, SETTINGS, token=tenant.org_admin_token))["data"]["govAlertSettings"]["threshold"] == 0.7

    provider = await gql(client, UPDATE, {"threshold": 0.5}, token=tenant.provider_token)
    assert error_codes(provider) == ["FORBIDDEN"]
    foreign = await gql(client, UPDATE, {"org": tenant.org_id, "threshold": 0.5}, token=other_tenant.org_admin_token)
    assert error_codes(foreign) == ["NOT_FOUND"]
    unnamed = await gql(client, UPDATE, {"threshold": 0.5}, token=tenant.admin_token)
    assert error_codes(unnamed) == ["BAD_USER_INPUT"] and unnamed["errors"][0]["extensions"]["field"] == "organizationId"
    admin = await gql(client, UPDATE, {"org": tenant.org_id, "threshold": 0.5}, token=tenant.admin_token)
    assert admin["data"]["updateGovAlertSettings"] == {"organizationId": tenant.org_id, "threshold": 0.5}
    assert (await gql(client, SETTINGS, token=other_tenant.org_admin_token))["data"]["govAlertSettings"]["threshold"] == 0.7


async def test_alerts_are_listed_for_the_profile_s_readers_only(client, tenant, other_tenant, worker) -> None:
    await send(client, tenant, [view(tenant.profile_id, ARMY_IP)])
    await worker.drain()
    assert (await alerts(client, tenant, token=tenant.org_admin_token))["total"] == 1
    assert (await alerts(client, tenant, token=tenant.admin_token))["total"] == 1
    for token in (other_tenant.org_admin_token, other_tenant.provider_token):
        body = await gql(client, ALERTS, {"profileId": tenant.profile_id}, token=token)
        assert error_codes(body) == ["NOT_FOUND"] and body["data"] is None
    sibling = await gql(client, ALERTS, {"profileId": str(tenant.other_profile.id)}, token=tenant.provider_token)
    assert error_codes(sibling) == ["NOT_FOUND"]
    for limit in (0, 501):
        body = await gql(client, ALERTS, {"profileId": tenant.profile_id, "limit": limit}, token=tenant.provider_token)
        assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "limit"


async def test_limit_cuts_the_list_but_not_the_total(client, tenant, worker) -> None:
    await send(client, tenant, [view(tenant.profile_id, ARMY_IP) for _ in range(3)])
    await worker.drain()
    listed = await alerts(client, tenant, limit=2)
    assert listed["total"] == 3 and len(listed["alerts"]) == 2
    assert listed["alerts"][0]["occurredAt"] >= listed["alerts"][1]["occurredAt"]


async def test_deleting_a_data_subject_deletes_the_alerts_of_its_views(client, tenant, worker) -> None:
    await send(client, tenant, [view(tenant.profile_id, ARMY_IP, visitor="subject-7"), view(tenant.profile_id, DOD_IP)])
    await worker.drain()
    assert (await alerts(client, tenant))["total"] == 2
    deleted = await gql(client, DELETE_SUBJECT, {"anon": "subject-7"}, token=tenant.org_admin_token)
    assert deleted["data"]["deleteSubjectData"]["profileEvents"] == 1, deleted
    remaining = await alerts(client, tenant)
    assert remaining["total"] == 1 and remaining["alerts"][0]["networkName"].startswith("DDN-RVN")

