"""The support desk: one search over transactions, orders and organizations, scoped
to what the admin administers; tickets with their scans and manual overrides; refunds an
admin issues, in the ledger; internal notes on an organization; all of it audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from tests.support.graphql import error_codes, gql, gql_data
from tests.support.tenants import Tenant

PUBLISH = """mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted rejected { index field reason } } }"""
SEARCH = """query($q: String!, $org: ID) { supportSearch(query: $q, organizationId: $org) {
  matched organizationId organizationName transactionId orderId type status amountMinor currency occurredAt } }"""
NOTES = "query($org: ID!) { organizationNotes(organizationId: $org) { id organizationId author body createdAt } }"
ADD_NOTE = "mutation($org: ID!, $b: String!) { addOrganizationNote(organizationId: $org, body: $b) { id body author } }"
DELETE_NOTE = "mutation($org: ID!, $id: ID!) { deleteOrganizationNote(organizationId: $org, id: $id) }"
AUDIT = """query($org: ID, $action: String) { auditLog(organizationId: $org, action: $action) {
  action target actor role before after } }"""


async def sell(client: Any, worker: Any, tenant: Tenant, *, order: str, buyer: str, amounts: list[int]) -> list[str]:
    """Orders paid through the domain-event API, recorded by the worker: their event ids."""
    now = datetime.now(UTC)
    events = [{"eventId": f"tx-{uuid.uuid4().hex[:12]}", "type": "ORDER_PAID", "amountMinor": amount, "currency": "EUR",
               "occurredAt": (now - timedelta(minutes=i + 1)).isoformat(), "userId": buyer, "properties": {"orderId": order}}
              for i, amount in enumerate(amounts)]  # fmt: skip
    done = (await gql_data(client, PUBLISH, {"e": events}, tenant.service_token))["publishDomainEvents"]
    assert done["rejected"] == [], done
    await worker.drain()
    return [e["eventId"] for e in events]


async def search(client: Any, token: str, query: str, org: str | None = None) -> list[dict[str, Any]]:
    return (await gql_data(client, SEARCH, {"q": query, "org": org}, token))["supportSearch"]


async def test_a_transaction_is_found_by_its_id_and_its_order(client, worker, tenant) -> None:
    order, buyer = f"ord-{uuid.uuid4().hex[:8]}", f"buyer-{uuid.uuid4().hex[:8]}"
    ids = await sell(client, worker, tenant, order=order, buyer=buyer, amounts=[1500, 2500])
    by_id = await search(client, tenant.org_admin_token, ids[1])
    assert [(h["matched"], h["transactionId"], h["amountMinor"], h["orderId"]) for h in by_id] == [
        ("TRANSACTION_ID", ids[1], 2500, order)
    ]
    by_order = await search(client, tenant.org_admin_token, order)
    assert [(h["matched"], h["transactionId"]) for h in by_order] == [("ORDER_ID", ids[0]), ("ORDER_ID", ids[1])], "newest first"
    assert await search(client, tenant.org_admin_token, order[:-1]) == [], "ids match exactly"


async def test_organizations_are_found_by_name_exactly_or_by_prefix(client, tenant, other_tenant) -> None:
    name = tenant.organization.name
    exact = await search(client, tenant.admin_token, name.upper())
    assert [(h["matched"], h["organizationId"]) for h in exact] == [("ORGANIZATION_NAME", tenant.org_id)]
    prefix = await search(client, tenant.admin_token, name[:-2])
    assert tenant.org_id in {h["organizationId"] for h in prefix}
    assert await search(client, tenant.admin_token, "%") == [] or all(
        h["organizationName"].startswith("%") for h in await search(client, tenant.admin_token, "%")
    ), "LIKE wildcards in the query are matched literally"


async def test_platform_admins_search_every_organization_org_admins_only_theirs(client, worker, tenant, other_tenant) -> None:
    order = f"shared-{uuid.uuid4().hex[:8]}"
    mine = await sell(client, worker, tenant, order=order, buyer="b1", amounts=[100])
    theirs = await sell(client, worker, other_tenant, order=order, buyer="b2", amounts=[200])
    everywhere = await search(client, tenant.admin_token, order)
    assert {h["transactionId"] for h in everywhere} == set(mine + theirs)
    one = await search(client, tenant.admin_token, order, other_tenant.org_id)
    assert {h["transactionId"] for h in one} == set(theirs)
    assert {h["transactionId"] for h in await search(client, tenant.org_admin_token, order)} == set(mine)
    assert await search(client, other_tenant.org_admin_token, mine[0]) == []
    assert await search(client, other_tenant.org_admin_token, tenant.organization.name) == []
    body = await gql(client, SEARCH, {"q": order, "org": tenant.org_id}, token=other_tenant.org_admin_token)
    assert error_codes(body) == ["NOT_FOUND"]


async def test_an_empty_query_is_refused_by_name(client, tenant) -> None:
    body = await gql(client, SEARCH, {"q": "  "}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "query"


async def test_notes_are_added_listed_and_deleted_with_an_audit_trail(client, tenant, other_tenant) -> None:
    admin = tenant.admin_token
    first = (await gql_data(client, ADD_NOTE, {"org": tenant.org_id, "b": "Asked about invoices"}, admin))["addOrganizationNote"]
    second = (await gql_data(client, ADD_NOTE, {"org": tenant.org_id, "b": "Called back"}, admin))["addOrganizationNote"]
    notes = (await gql_data(client, NOTES, {"org": tenant.org_id}, admin))["organizationNotes"]
    assert [n["body"] for n in notes] == ["Called back", "Asked about invoices"]
    assert (await gql_data(client, NOTES, {"org": other_tenant.org_id}, admin))["organizationNotes"] == []
    deleted = (await gql_data(client, DELETE_NOTE, {"org": tenant.org_id, "id": first["id"]}, admin))["deleteOrganizationNote"]
    assert deleted == first["id"]
    assert [n["id"] for n in (await gql_data(client, NOTES, {"org": tenant.org_id}, admin))["organizationNotes"]] == [second["id"]]
    body = await gql(client, DELETE_NOTE, {"org": other_tenant.org_id, "id": second["id"]}, token=admin)
    assert error_codes(body) == ["NOT_FOUND"], "a note is deleted only through its own organization"
    trail = (await gql_data(client, AUDIT, {"org": tenant.org_id, "action": "organization_note.deleted"}, admin))["auditLog"]
    assert [(e["target"], e["before"]["body"], e["role"]) for e in trail] == [(first["id"], "Asked about invoices", "admin")]
    added = (await gql_data(client, AUDIT, {"org": tenant.org_id, "action": "organization_note.added"}, admin))["auditLog"]
    assert [e["after"]["body"] for e in added] == ["Called back", "Asked about invoices"]
    body = await gql(client, ADD_NOTE, {"org": tenant.org_id, "b": " "}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "body"


TICKET = """query($org: ID!, $t: String!) { ticket(organizationId: $org, ticketId: $t) {
  ticketId status orderId scans { eventId at deviceId } overrides { status reason actor at } } }"""
OVERRIDE = """mutation($org: ID!, $t: String!, $s: TicketOverrideStatus!, $r: String!) {
  overrideTicket(organizationId: $org, ticketId: $t, status: $s, reason: $r) { status overrides { status reason } } }"""


async def scan(client: Any, worker: Any, tenant: Tenant, ticket: str, *, order: str | None, devices: list[str]) -> None:
    """Scans at the doors, one per device, the last one now."""
    now = datetime.now(UTC)
    events = [{"eventId": f"scan-{uuid.uuid4().hex[:12]}", "type": "TICKET_SCANNED",
               "occurredAt": (now - timedelta(milliseconds=10 * (len(devices) - 1 - i))).isoformat(),
               "properties": {"ticketId": ticket, "deviceId": device, **({"orderId": order} if order else {})}}
              for i, device in enumerate(devices)]  # fmt: skip
    done = (await gql_data(client, PUBLISH, {"e": events}, tenant.service_token))["publishDomainEvents"]
    assert done["rejected"] == [], done
    await worker.drain()


async def test_a_ticket_shows_its_scans_and_is_overridden_with_a_reason(client, worker, tenant, other_tenant) -> None:
    ticket, admin, org = f"TCK-{uuid.uuid4().hex[:6]}", tenant.org_admin_token, tenant.org_id
    body = await gql(client, TICKET, {"org": org, "t": ticket}, token=admin)
    assert error_codes(body) == ["NOT_FOUND"], "nothing is known of a ticket never scanned"
    await scan(client, worker, tenant, ticket, order="ord-t1", devices=["gate-1", "gate-2"])
    found = (await gql_data(client, TICKET, {"org": org, "t": ticket}, admin))["ticket"]
    assert (found["status"], found["orderId"]) == ("USED", "ord-t1")
    assert [s["deviceId"] for s in found["scans"]] == ["gate-1", "gate-2"]
    reactivated = (await gql_data(client, OVERRIDE, {"org": org, "t": ticket, "s": "VALID", "r": "Scanner misread"},
                                  admin))["overrideTicket"]  # fmt: skip
    assert reactivated["status"] == "VALID" and reactivated["overrides"] == [{"status": "VALID", "reason": "Scanner misread"}]
    await scan(client, worker, tenant, ticket, order="ord-t1", devices=["gate-3"])
    assert (await gql_data(client, TICKET, {"org": org, "t": ticket}, admin))["ticket"]["status"] == "USED", "a later scan uses it"
    [entry] = (await gql_data(client, AUDIT, {"org": org, "action": "ticket.overridden"}, admin))["auditLog"]
    assert (entry["target"], entry["before"], entry["after"], entry["role"]) == (
        ticket, {"status": "used"}, {"status": "valid"}, "org_admin")
    body = await gql(client, OVERRIDE, {"org": org, "t": ticket, "s": "USED", "r": " "}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "reason"
    body = await gql(client, TICKET, {"org": org, "t": ticket}, token=other_tenant.org_admin_token)
    assert error_codes(body) == ["NOT_FOUND"]
    body = await gql(client, OVERRIDE, {"org": org, "t": ticket, "s": "USED", "r": "x"}, token=other_tenant.org_admin_token)
    assert error_codes(body) == ["NOT_FOUND"]


async def test_a_ticket_of_a_refunded_order_is_refunded_and_stays_so(client, worker, tenant) -> None:
    ticket, order, admin, org = f"TCK-{uuid.uuid4().hex[:6]}", f"ord-{uuid.uuid4().hex[:6]}", tenant.org_admin_token, tenant.org_id
    await sell(client, worker, tenant, order=order, buyer="b", amounts=[3000])
    await scan(client, worker, tenant, ticket, order=order, devices=["gate-1"])
    refund = [{"eventId": f"rf-{uuid.uuid4().hex[:8]}", "type": "ORDER_REFUNDED", "amountMinor": 3000, "currency": "EUR",
               "occurredAt": datetime.now(UTC).isoformat(), "properties": {"orderId": order}}]  # fmt: skip
    assert (await gql_data(client, PUBLISH, {"e": refund}, tenant.service_token))["publishDomainEvents"]["rejected"] == []
    await worker.drain()
    assert (await gql_data(client, TICKET, {"org": org, "t": ticket}, admin))["ticket"]["status"] == "REFUNDED"
    body = await gql(client, OVERRIDE, {"org": org, "t": ticket, "s": "VALID", "r": "Asked nicely"}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "status"


FULL_TICKET = """query($org: ID!, $t: String!) { ticket(organizationId: $org, ticketId: $t) {
  ticketId status orderId listingId listingTitle scans { eventId deviceId errorType code message } } }"""
SEARCH_TICKETS = """query($q: String!, $org: ID) { supportSearch(query: $q, organizationId: $org) {
  matched organizationId organizationName ticketId transactionId orderId status occurredAt } }"""


async def publish_scans(client: Any, worker: Any, tenant: Tenant, scans: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """(type, properties) scans one millisecond apart, the last one now: their event ids."""
    now = datetime.now(UTC)
    events = [{"eventId": f"scan-{uuid.uuid4().hex[:12]}", "type": kind,
               "occurredAt": (now - timedelta(milliseconds=len(scans) - 1 - i)).isoformat(), "properties": properties}
              for i, (kind, properties) in enumerate(scans)]  # fmt: skip
    done = (await gql_data(client, PUBLISH, {"e": events}, tenant.service_token))["publishDomainEvents"]
    assert done["rejected"] == [], done
    await worker.drain()
    return [e["eventId"] for e in events]


async def test_a_ticket_shows_its_failed_scans_and_its_event_which_leave_its_status(client, worker, tenant) -> None:
    ticket, code, org, admin = f"TCK-{uuid.uuid4().hex[:6]}", f"QR-{uuid.uuid4().hex[:8]}", tenant.org_id, tenant.org_admin_token
    listing = [{"eventId": f"lp-{uuid.uuid4().hex[:8]}", "type": "LISTING_PUBLISHED", "properties": {
        "listingId": "gala-2026", "title": "Winter Gala", "startsAt": "2026-12-24T19:00:00Z", "endsAt": "2026-12-24T23:00:00Z"}}]
    assert (await gql_data(client, PUBLISH, {"e": listing}, tenant.service_token))["publishDomainEvents"]["rejected"] == []
    base = {"ticketId": ticket, "code": code, "orderId": "ord-g1", "listingId": "gala-2026"}
    ids = await publish_scans(client, worker, tenant, [
        ("TICKET_SCAN_FAILED", {**base, "deviceId": "gate-1", "errorType": "network", "message": "offline"}),
    ])  # fmt: skip
    found = (await gql_data(client, FULL_TICKET, {"org": org, "t": ticket}, admin))["ticket"]
    assert found["status"] == "VALID", "a failed scan let nobody in"
    assert (found["orderId"], found["listingId"], found["listingTitle"]) == ("ord-g1", "gala-2026", "Winter Gala")
    ids += await publish_scans(client, worker, tenant, [
        ("TICKET_SCANNED", {**base, "deviceId": "gate-2"}),
        ("TICKET_SCAN_FAILED", {**base, "deviceId": "gate-1", "errorType": "already_used"}),
    ])  # fmt: skip
    by_code = (await gql_data(client, FULL_TICKET, {"org": org, "t": code}, admin))["ticket"]
    assert by_code["status"] == "USED"
    assert [(s["eventId"], s["deviceId"], s["errorType"], s["code"], s["message"]) for s in by_code["scans"]] == [
        (ids[0], "gate-1", "NETWORK", code, "offline"), (ids[1], "gate-2", None, code, None),
        (ids[2], "gate-1", "ALREADY_USED", code, None)]


async def test_a_ticket_is_found_by_its_id_or_a_scanned_code(client, worker, tenant, other_tenant) -> None:
    ticket, code = f"TCK-{uuid.uuid4().hex[:6]}", f"QR-{uuid.uuid4().hex[:8]}"
    stray = f"QR-{uuid.uuid4().hex[:8]}"
    await publish_scans(client, worker, tenant, [
        ("TICKET_SCANNED", {"ticketId": ticket, "code": code, "orderId": "ord-s1", "deviceId": "gate-1"}),
        ("TICKET_SCAN_FAILED", {"code": stray, "deviceId": "gate-2", "errorType": "invalid_code"}),
    ])  # fmt: skip
    await publish_scans(client, worker, other_tenant, [("TICKET_SCANNED", {"ticketId": ticket, "deviceId": "door"})])

    def found(hits: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return sorted((h["matched"], h["organizationId"], h["ticketId"], h["orderId"], h["status"], h["transactionId"])
                      for h in hits)  # fmt: skip

    mine = (tenant.org_id, ticket, "ord-s1", "used", None)
    by_id = (await gql_data(client, SEARCH_TICKETS, {"q": ticket}, tenant.org_admin_token))["supportSearch"]
    assert found(by_id) == [("TICKET", *mine)]
    by_code = (await gql_data(client, SEARCH_TICKETS, {"q": code}, tenant.org_admin_token))["supportSearch"]
    assert found(by_code) == [("TICKET", *mine)], "a code finds the ticket its scans named"
    unresolved = (await gql_data(client, SEARCH_TICKETS, {"q": stray}, tenant.org_admin_token))["supportSearch"]
    assert found(unresolved) == [("TICKET", tenant.org_id, stray, None, "valid", None)]
    everywhere = (await gql_data(client, SEARCH_TICKETS, {"q": ticket}, tenant.admin_token))["supportSearch"]
    assert found(everywhere) == sorted([("TICKET", *mine), ("TICKET", other_tenant.org_id, ticket, None, "used", None)])
    assert (await gql_data(client, SEARCH_TICKETS, {"q": code}, other_tenant.org_admin_token))["supportSearch"] == []
    assert (await gql_data(client, SEARCH_TICKETS, {"q": ticket[:-1]}, tenant.org_admin_token))["supportSearch"] == [], (
        "ids match exactly")


REFUND = """mutation($org: ID!, $t: String!, $fee: Boolean!, $r: String!, $a: Int) {
  issueRefund(organizationId: $org, transactionId: $t, refundServiceFee: $fee, reason: $r, amountMinor: $a) {
    id transactionId refundTransactionId orderId amountMinor serviceFeeMinor currency reason issuedBy status } }"""


async def ledger_of(org: str, sale: str) -> list[tuple[str, int, int, str]]:
    from app.database import connection

    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT event_id, amount_minor, service_fee_minor, status FROM transactions WHERE organization_id = $1"
            " AND (event_id = $2 OR refund_of = $2) ORDER BY is_refund, recorded_at, event_id", uuid.UUID(org), sale,
        )  # fmt: skip
    return [tuple(row) for row in rows]


async def test_an_admin_refund_is_in_the_ledger_audited_and_requested(client, worker, tenant) -> None:
    order, admin, org = f"ord-{uuid.uuid4().hex[:6]}", tenant.admin_token, tenant.org_id
    now = datetime.now(UTC)
    sale = {"eventId": f"tx-{uuid.uuid4().hex[:12]}", "type": "ORDER_PAID", "amountMinor": 10_000, "currency": "EUR",
            "occurredAt": (now - timedelta(minutes=5)).isoformat(), "properties": {"orderId": order, "serviceFeeMinor": 450}}
    assert (await gql_data(client, PUBLISH, {"e": [sale]}, tenant.service_token))["publishDomainEvents"]["rejected"] == []
    await worker.drain()
    part = (await gql_data(client, REFUND, {"org": org, "t": sale["eventId"], "fee": False, "r": "Late start", "a": 2_500},
                           admin))["issueRefund"]  # fmt: skip
    assert (part["amountMinor"], part["serviceFeeMinor"], part["status"], part["orderId"]) == (2_500, 0, "REQUESTED", order)
    rest = (await gql_data(client, REFUND, {"org": org, "t": sale["eventId"], "fee": True, "r": "Event cancelled"},
                           admin))["issueRefund"]  # fmt: skip
    assert (rest["amountMinor"], rest["serviceFeeMinor"]) == (7_500, 450), "the rest, and the whole service fee"
    rows = await ledger_of(org, sale["eventId"])
    assert rows[0] == (sale["eventId"], 10_000, 450, "refunded")
    assert sorted(r[1:] for r in rows[1:]) == [(-7_500, 450, "refunded"), (-2_500, 0, "refunded")]
    assert sum(r[1] for r in rows) == 0, "sale and refunds net to nothing"
    body = await gql(client, REFUND, {"org": org, "t": sale["eventId"], "fee": False, "r": "Again"}, token=admin)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "transactionId"
    trail = (await gql_data(client, AUDIT, {"org": org, "action": "REFUND_ISSUED_BY_ADMIN"}, admin))["auditLog"]
    assert [(e["target"], e["after"]["refunded_minor"], e["role"]) for e in trail] == [
        (sale["eventId"], 10_000, "admin"), (sale["eventId"], 2_500, "admin")]
    assert [e["before"]["status"] for e in trail] == ["refunded", "completed"]


async def test_a_refund_is_checked_before_anything_is_written(client, worker, tenant, other_tenant) -> None:
    [sale] = await sell(client, worker, tenant, order=f"ord-{uuid.uuid4().hex[:6]}", buyer="b", amounts=[1_000])
    org, admin = tenant.org_id, tenant.admin_token
    too_much = await gql(client, REFUND, {"org": org, "t": sale, "fee": False, "r": "x", "a": 1_001}, token=admin)
    assert error_codes(too_much) == ["BAD_USER_INPUT"] and too_much["errors"][0]["extensions"]["field"] == "amountMinor"
    no_fee = await gql(client, REFUND, {"org": org, "t": sale, "fee": True, "r": "x"}, token=admin)
    assert error_codes(no_fee) == ["BAD_USER_INPUT"] and no_fee["errors"][0]["extensions"]["field"] == "refundServiceFee"
    no_reason = await gql(client, REFUND, {"org": org, "t": sale, "fee": False, "r": " "}, token=admin)
    assert error_codes(no_reason) == ["BAD_USER_INPUT"] and no_reason["errors"][0]["extensions"]["field"] == "reason"
    elsewhere = await gql(client, REFUND, {"org": other_tenant.org_id, "t": sale, "fee": False, "r": "x"}, token=admin)
    assert error_codes(elsewhere) == ["NOT_FOUND"], "a sale is refunded only through its own organization"
    org_admin = await gql(client, REFUND, {"org": org, "t": sale, "fee": False, "r": "x"}, token=tenant.org_admin_token)
    assert error_codes(org_admin) == ["FORBIDDEN"]
    assert await ledger_of(org, sale) == [(sale, 1_000, 0, "completed")]
