"""One audit log: every admin mutation of every domain writes an entry (who, role, action,
target, after, when), read back with filters and paging, and exported as CSV or XLSX.

The admin mutations are read from the schema (tests/support/schema_operations.py), so a new
one is tried without touching this file, and one that names no audit action fails here."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from openpyxl import load_workbook

from app.auth import Access
from app.database import connection
from schema import build_schema
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.schema_operations import operation, root_fields
from tests.support.tenants import Tenant, make_tenant
from tests.support.victim import SEEDED_KINDS, seed_victim

SCHEMA = build_schema()
ADMIN_ACCESS = (Access.ORG_ADMINS, Access.PLATFORM_ADMINS)
# Admin mutations whose service writes its own entries in its transaction (accounts, the support desk).
SELF_AUDITED = {"inviteMember", "revokeInvitation", "changeMemberRole", "removeMember", "createPasswordReset",
                "createServiceToken", "revokeServiceToken", "createIngestionKey", "revokeIngestionKey",
                "overrideTicket", "issueRefund", "addOrganizationNote", "deleteOrganizationNote",
                "createNotificationChannel", "updateNotificationChannel", "deleteNotificationChannel",
                "rotateChannelSecret", "sendTestNotification", "retryDelivery", "markInvoicePaid", "sendInvoiceReminder",
                "resolveFailedPayment", "requestPaymentRetry"}  # fmt: skip
# Not an act on the organization's settings: an experiment's assignment of one person (its exposure is the record).
NOT_ADMIN_ACTS = {"experimentAssignment"}
# Run last, in this order: a deletion removes what the others change; a suspension stops the rest.
LAST = ("deleteFraudRule", "deleteCost", "deleteCohort", "deleteExperiment", "suspendOrganization", "reinstateOrganization")

# Samples the schema cannot tell: a valid change for these objects in the state the seed leaves them.
OWN_SAMPLES = {
    "updateExperiment": ("mutation($id: ID!) { updateExperiment(id: $id, input: {name: \"Audited\"}) { id } }", "experiment"),
    "updateFraudAlert": ("mutation($id: ID!) { updateFraudAlert(id: $id, status: INVESTIGATING) { alert { id } } }", "fraud alert"),
    "updateFraudRule": ("mutation($id: ID!) { updateFraudRule(id: $id, name: \"Audited\") { id } }", "fraud rule"),
}

AUDIT = """query($org: ID, $action: String, $actor: String, $target: String, $from: DateTime, $to: DateTime,
  $before: ID, $limit: Int!) {
  auditLog(organizationId: $org, action: $action, actor: $actor, target: $target, from: $from, to: $to, before: $before,
           limit: $limit) {
    id at organizationId actor role action target details before after reason } }"""
EXPORT = """query($org: ID, $action: String, $format: ExportFormat!, $from: DateTime, $to: DateTime) {
  exportAuditLog(organizationId: $org, action: $action, format: $format, from: $from, to: $to) {
    filename contentType encoding content } }"""


def declared(name: str) -> tuple[Access | None, str | None]:
    for field in SCHEMA.mutation.__strawberry_definition__.fields:
        if SCHEMA.config.name_converter.get_graphql_name(field) == name:
            metadata = field.metadata or {}
            return metadata.get("access"), metadata.get("audited")
    raise KeyError(name)


ADMIN_MUTATIONS = sorted(name for name in root_fields("mutation") if declared(name)[0] in ADMIN_ACCESS)
AUDITED = [name for name in ADMIN_MUTATIONS if declared(name)[1] is not None]
ORDERED = sorted(AUDITED, key=lambda name: LAST.index(name) + 1 if name in LAST else 0)


def test_every_admin_mutation_is_audited() -> None:
    """Each mutation only admins may call names its audit action, or its service writes its own."""
    silent = [name for name in ADMIN_MUTATIONS
              if declared(name)[1] is None and name not in SELF_AUDITED | NOT_ADMIN_ACTS]  # fmt: skip
    assert not silent, f"admin mutations that write no audit entry: {silent} (guarded(..., audited=audit.X))"


@pytest_asyncio.fixture(scope="module")
async def seeded(client: Any, worker: Any, settings: Any) -> AsyncIterator[tuple[Tenant, dict[str, str]]]:
    """An organization with the tenancy tests' victim data; removed afterwards, so the victim's
    values (its order ids, amounts) stay the tenancy tests' own in platform-wide answers."""
    tenant = await make_tenant(settings, name=f"Audited {uuid.uuid4().hex[:8]}")
    side = {kind: str(uuid.uuid4()) for kind in SEEDED_KINDS} | await seed_victim(client, worker, tenant)
    yield tenant, side
    async with connection() as conn:
        await conn.execute("DELETE FROM organizations WHERE id = $1", uuid.UUID(tenant.org_id))


async def entries_of(org: str, action: str) -> list[dict[str, Any]]:
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT actor, role, target, after, details FROM audit_log WHERE organization_id = $1 AND action = $2 ORDER BY id",
            uuid.UUID(org), action,
        )  # fmt: skip
    return [dict(row) for row in rows]


async def test_each_admin_mutation_writes_who_what_and_after(client: Any, seeded: tuple[Tenant, dict[str, str]]) -> None:
    """Every audited admin mutation, called with its sample on the organization's own objects,
    leaves one more entry of its action in that organization, naming the admin and role."""
    tenant, side = seeded
    failures = []
    for name in ORDERED:
        access, action = declared(name)
        token = tenant.admin_token if access is Access.PLATFORM_ADMINS else tenant.org_admin_token
        field = root_fields("mutation")[name]
        op = operation("mutation", name, field, {arg: side for arg in field.args})
        document, variables = op.document, op.variables
        if name in OWN_SAMPLES:
            document, kind = OWN_SAMPLES[name]
            variables = {"id": side[kind]}
        before = len(await entries_of(tenant.org_id, action))
        body = await gql(client, document, variables, token=token)
        if body.get("errors"):
            failures.append(f"{name}: {error_codes(body)} {body['errors'][0]['message']}")
            continue
        found = await entries_of(tenant.org_id, action)
        if len(found) != before + 1:
            failures.append(f"{name}: {len(found) - before} entries of {action}")
            continue
        role = "admin" if access is Access.PLATFORM_ADMINS else "org_admin"
        assert found[-1]["role"] == role, (name, found[-1])
        assert found[-1]["after"] is not None, (name, found[-1])
    assert not failures, failures


async def test_an_update_records_its_target_and_the_object_after(client: Any, tenant: Tenant) -> None:
    rule = (await gql_data(client, """mutation { createFraudRule(kind: BULK_PURCHASE, name: "Audit bulk",
      params: {maxQuantity: 5, windowMinutes: 10}, risk: LOW) { id } }""", {}, tenant.org_admin_token))["createFraudRule"]
    await gql_data(client, """mutation($id: ID!) { updateFraudRule(id: $id, name: "Audit bulk, renamed") { id } }""",
                   {"id": rule["id"]}, tenant.org_admin_token)  # fmt: skip
    found = (await gql_data(client, AUDIT, {"target": rule["id"], "limit": 10}, tenant.org_admin_token))["auditLog"]
    assert [e["action"] for e in found] == ["fraud_rule.updated", "fraud_rule.created"]
    updated = found[0]
    assert updated["after"]["name"] == "Audit bulk, renamed"
    assert updated["details"]["arguments"]["name"] == "Audit bulk, renamed"
    assert updated["role"] == "org_admin" and updated["organizationId"] == tenant.org_id


async def test_changes_of_admin_only_objects_show_before_and_after(client: Any, tenant: Tenant) -> None:
    [cost] = await make_costs(client, tenant, 1)
    update = """mutation($id: ID!) { updateCost(id: $id, amountMinor: 999, description: "audit, corrected") { id } }"""
    await gql_data(client, update, {"id": cost}, tenant.org_admin_token)
    await gql_data(client, "mutation($id: ID!) { deleteCost(id: $id) }", {"id": cost}, tenant.org_admin_token)
    deleted, updated, created = (await gql_data(client, AUDIT, {"target": cost, "limit": 10}, tenant.org_admin_token))["auditLog"]
    assert created["before"] is None and created["after"]["description"] == "audit"
    assert updated["before"] == created["after"]
    assert updated["after"]["description"] == "audit, corrected"
    assert deleted["before"] == updated["after"] and deleted["after"] == {"deleted": True}
    settings = """mutation { updateGovAlertSettings(threshold: 0.8) { threshold } }"""
    await gql_data(client, settings, {}, tenant.org_admin_token)
    await gql_data(client, settings.replace("0.8", "0.6"), {}, tenant.org_admin_token)
    second, first = (await gql_data(client, AUDIT, {"action": "gov_alert_settings.updated", "limit": 10},
                                    tenant.org_admin_token))["auditLog"]  # fmt: skip
    assert second["before"] == first["after"] and second["after"]["threshold"] == 0.6


async def test_a_suspension_keeps_its_reason(client: Any, tenant: Tenant) -> None:
    suspend = """mutation($org: ID!) { suspendOrganization(organizationId: $org, reason: "Chargebacks under review") { status } }"""
    await gql_data(client, suspend, {"org": tenant.org_id}, tenant.admin_token)
    [entry] = (await gql_data(client, AUDIT, {"org": tenant.org_id, "action": "organization.suspended", "limit": 10},
                              tenant.admin_token))["auditLog"]  # fmt: skip
    assert (entry["reason"], entry["role"], entry["target"]) == ("Chargebacks under review", "admin", tenant.org_id)
    assert entry["after"]["status"] == "suspended"


async def make_costs(client: Any, tenant: Tenant, n: int) -> list[str]:
    made = []
    for i in range(n):
        cost = (await gql_data(client, """mutation($p: ID!, $d: Date!, $a: Int!) { createCost(category: TOOLS,
          amountMinor: $a, currency: "EUR", date: $d, profileId: $p, description: "audit") { id } }""",
          {"p": tenant.profile_id, "d": datetime.now(UTC).date().isoformat(), "a": 100 + i}, tenant.org_admin_token))  # fmt: skip
        made.append(cost["createCost"]["id"])
    return made


async def test_filters_and_paging_match_a_plain_reading(client: Any, tenant: Tenant, other_tenant: Tenant) -> None:
    made = await make_costs(client, tenant, 5)
    await make_costs(client, other_tenant, 2)
    token = tenant.org_admin_token
    first = (await gql_data(client, AUDIT, {"action": "cost.created", "limit": 3}, token))["auditLog"]
    rest = (await gql_data(client, AUDIT, {"action": "cost.created", "limit": 3, "before": first[-1]["id"]}, token))["auditLog"]
    assert [e["target"] for e in first + rest] == list(reversed(made)), "newest first, paged without gaps or repeats"
    actor = first[0]["actor"]
    by_actor = (await gql_data(client, AUDIT, {"actor": actor, "limit": 500}, token))["auditLog"]
    assert by_actor and {e["actor"] for e in by_actor} == {actor}
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    assert (await gql_data(client, AUDIT, {"from": future, "limit": 10}, token))["auditLog"] == []
    assert len((await gql_data(client, AUDIT, {"action": "cost.created", "from": past, "to": future, "limit": 10},
                                token))["auditLog"]) == 5  # fmt: skip
    platform = (await gql_data(client, AUDIT, {"org": tenant.org_id, "action": "cost.created", "limit": 500},
                               tenant.admin_token))["auditLog"]  # fmt: skip
    assert {e["organizationId"] for e in platform} == {tenant.org_id}


async def test_bad_filters_name_their_field(client: Any, tenant: Tenant) -> None:
    body = await gql(client, AUDIT, {"action": "no.such", "limit": 10}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "action"
    now = datetime.now(UTC).isoformat()
    body = await gql(client, AUDIT, {"from": now, "to": now, "limit": 10}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "range"
    for name in ("from", "to"):  # without an offset the instant is ambiguous
        body = await gql(client, AUDIT, {name: "2026-01-01T00:00:00", "limit": 10}, token=tenant.org_admin_token)
        assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == name
        body = await gql(client, EXPORT, {"format": "CSV", name: "2026-01-01T00:00:00"}, token=tenant.org_admin_token)
        assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == name
    for name in ("actor", "target"):  # PostgreSQL text cannot hold NUL: the client's error, not a 500
        body = await gql(client, AUDIT, {name: "a\x00b", "limit": 10}, token=tenant.org_admin_token)
        assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == name


async def test_another_organizations_admin_sees_none_of_its_entries(client: Any, tenant: Tenant, other_tenant: Tenant) -> None:
    await make_costs(client, tenant, 1)
    theirs = (await gql_data(client, AUDIT, {"limit": 500}, other_tenant.org_admin_token))["auditLog"]
    assert all(e["organizationId"] in (other_tenant.org_id, None) for e in theirs)
    body = await gql(client, AUDIT, {"org": tenant.org_id, "limit": 10}, token=other_tenant.org_admin_token)
    assert error_codes(body) == ["NOT_FOUND"]


@pytest.mark.parametrize("fmt", ["CSV", "XLSX"])
async def test_the_export_holds_the_entries_the_log_shows(client: Any, tenant: Tenant, fmt: str) -> None:
    made = await make_costs(client, tenant, 3)
    shown = (await gql_data(client, AUDIT, {"action": "cost.created", "limit": 500}, tenant.org_admin_token))["auditLog"]
    found = (await gql_data(client, EXPORT, {"action": "cost.created", "format": fmt}, tenant.org_admin_token))["exportAuditLog"]
    if fmt == "CSV":
        assert found["encoding"] == "utf-8" and found["filename"].endswith(".csv")
        rows = list(csv.reader(io.StringIO(found["content"])))
    else:
        assert found["encoding"] == "base64" and found["filename"].endswith(".xlsx")
        book = load_workbook(io.BytesIO(base64.b64decode(found["content"])))
        rows = [["" if v is None else str(v) for v in row] for row in book.active.iter_rows(values_only=True)]
    header, body = rows[0], rows[1:]
    assert [row[header.index("id")] for row in body] == [e["id"] for e in shown]
    assert [row[header.index("target")] for row in body] == list(reversed(made))
    assert {row[header.index("role")] for row in body} == {"org_admin"}
