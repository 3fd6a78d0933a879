"""Buyer emails: sent with sales as properties.buyerEmail, never stored, found by support by
their exact address (any case), erased by a data-subject deletion.

Everything goes through the public API and the real worker; "never stored" is checked by
reading every table of the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app.database import connection
from tests.support.graphql import error_codes, gql, gql_data
from tests.support.tenants import Tenant

PUBLISH = """mutation($e: [DomainEventInput!]!) {
  publishDomainEvents(events: $e) { accepted eventIds rejected { index field reason } } }"""
TRACK = "mutation($e: [TrackEventInput!]!) { trackEvents(events: $e) { accepted rejected { index field reason } } }"
SEARCH = """query($q: String!, $org: ID) { supportSearch(query: $q, organizationId: $org) {
  matched organizationId transactionId orderId amountMinor } }"""
DELETE = """mutation($user: String, $email: String, $org: ID) {
  deleteSubjectData(userId: $user, buyerEmail: $email, organizationId: $org) { events buyerEmails } }"""
AUDIT = """query($org: ID) { auditLog(organizationId: $org, action: "subject_data.deleted") { details } }"""


def unique_email() -> tuple[str, str]:
    """An address nobody else uses, as a buyer would type it, and its local part (what a scan looks for)."""
    local = f"Ada.Lovelace+{uuid.uuid4().hex[:10]}"
    return f"{local}@Example.ORG", local.lower()


def sale(order: str, amount: int, email: str | None, *, user: str = "buyer-1", minutes_ago: int = 5, **props: Any) -> dict[str, Any]:
    properties = {"orderId": order, **({"buyerEmail": email} if email is not None else {}), **props}
    return {"eventId": f"tx-{uuid.uuid4().hex[:12]}", "type": "ORDER_PAID", "amountMinor": amount, "currency": "EUR",
            "occurredAt": (datetime.now(UTC) - timedelta(minutes=minutes_ago)).isoformat(), "userId": user,
            "properties": properties}  # fmt: skip


async def publish(client: Any, worker: Any, tenant: Tenant, events: list[dict[str, Any]]) -> dict[str, Any]:
    done = (await gql_data(client, PUBLISH, {"e": events}, tenant.service_token))["publishDomainEvents"]
    await worker.drain()
    return done


async def search(client: Any, token: str, query: str, org: str | None = None) -> list[dict[str, Any]]:
    hits = (await gql_data(client, SEARCH, {"q": query, "org": org}, token))["supportSearch"]
    return [h for h in hits if h["matched"] == "BUYER_EMAIL"]


async def tables_containing(text: str) -> list[str]:
    """Every table of the database (partitions through their parent) with a row whose text holds `text`."""
    async with connection() as conn:
        tables = await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY 1"
        )
        return [table for (table,) in tables
                if await conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table} t WHERE t::text ILIKE '%' || $1 || '%')", text)]  # fmt: skip


async def ledger_hash(event_id: str) -> str:
    async with connection() as conn:
        return await conn.fetchval("SELECT buyer_email_hash FROM transactions WHERE event_id = $1", event_id)


async def test_a_malformed_buyer_email_is_refused_naming_the_field(client, worker, tenant) -> None:
    events = [sale("ord-bad-1", 100, "not an email"), sale("ord-bad-2", 100, "ada@"), sale("ord-ok", 100, " ada@example.org "),
              {**sale("ord-bad-3", 100, None), "properties": {"orderId": "ord-bad-3", "buyerEmailHash": "0" * 64}},
              sale("ord-bad-4", 100, 42)]  # fmt: skip
    done = await publish(client, worker, tenant, events)
    assert done["accepted"] == 1
    assert [(r["index"], r["field"]) for r in done["rejected"]] == [
        (0, "properties.buyerEmail"), (1, "properties.buyerEmail"), (3, "properties.buyerEmailHash"), (4, "properties.buyerEmail")]
    assert "email address" in done["rejected"][0]["reason"] and "computed by the server" in done["rejected"][2]["reason"]


async def test_a_buyer_email_is_stored_nowhere_only_its_hash(client, worker, tenant) -> None:
    email, local = unique_email()
    done = await publish(client, worker, tenant, [sale(f"ord-{uuid.uuid4().hex[:6]}", 4_200, email)])
    assert done["rejected"] == []
    tracked = await gql_data(client, TRACK, {"e": [{"type": "checkout.started", "properties": {"buyerEmail": email}}]},
                             tenant.ingestion_key)  # fmt: skip
    assert tracked["trackEvents"]["accepted"] == 1, "any event may carry one: it is hashed the same way"
    await worker.drain()
    assert await tables_containing(local) == []
    async with connection() as conn:
        stored = await conn.fetch(
            "SELECT properties ->> 'buyerEmailHash' FROM events WHERE organization_id = $1 AND properties ? 'buyerEmailHash'",
            uuid.UUID(tenant.org_id),
        )
        [ledger] = await conn.fetch("SELECT buyer_email_hash FROM transactions WHERE event_id = $1", done["eventIds"][0])
    hashes = {row[0] for row in stored}
    assert len(stored) == 2 and len(hashes) == 1, "the same address, hashed the same way on both paths"
    [digest] = hashes
    assert len(digest) == 64 and set(digest) <= set("0123456789abcdef") and ledger[0] == digest


async def test_support_finds_orders_by_the_exact_email_in_any_case(client, worker, tenant, other_tenant) -> None:
    email, _ = unique_email()
    mine = await publish(client, worker, tenant, [sale("ord-e1", 1_500, email, minutes_ago=9),
                                                  sale("ord-e2", 2_500, email.upper(), minutes_ago=7)])  # fmt: skip
    theirs = await publish(client, worker, other_tenant, [sale("ord-e3", 3_500, email.lower(), minutes_ago=8)])
    await publish(client, worker, tenant, [sale("ord-e4", 900, f"other-{email}"), sale("ord-e5", 800, None)])
    refund = {"eventId": f"rf-{uuid.uuid4().hex[:12]}", "type": "ORDER_REFUNDED", "amountMinor": 500, "currency": "EUR",
              "occurredAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(), "properties": {"orderId": "ord-e1"}}
    await publish(client, worker, tenant, [refund])

    typed = f"  {email.swapcase()} "
    everywhere = await search(client, tenant.admin_token, typed)
    assert [(h["transactionId"], h["orderId"], h["amountMinor"]) for h in everywhere] == [
        (refund["eventId"], "ord-e1", -500), (mine["eventIds"][1], "ord-e2", 2_500), (theirs["eventIds"][0], "ord-e3", 3_500),
        (mine["eventIds"][0], "ord-e1", 1_500)], "newest first, across organizations; the refund is its buyer's too"
    assert {h["transactionId"] for h in await search(client, tenant.admin_token, typed, other_tenant.org_id)} == set(theirs["eventIds"])
    assert {h["transactionId"] for h in await search(client, tenant.org_admin_token, typed)} == {refund["eventId"], *mine["eventIds"]}
    assert {h["transactionId"] for h in await search(client, other_tenant.org_admin_token, email)} == set(theirs["eventIds"])
    assert await search(client, tenant.admin_token, email[:-1]) == [], "the exact address only"
    assert await search(client, tenant.admin_token, email.split("@")[0]) == []
    body = await gql(client, SEARCH, {"q": email, "org": tenant.org_id}, token=other_tenant.org_admin_token)
    assert error_codes(body) == ["NOT_FOUND"]


async def test_a_data_subject_deletion_makes_the_email_unfindable(client, worker, tenant, other_tenant) -> None:
    email, _ = unique_email()
    mine = await publish(client, worker, tenant, [sale("ord-d1", 1_000, email), sale("ord-d2", 2_000, email, user="guest-7")])
    await publish(client, worker, other_tenant, [sale("ord-d3", 3_000, email)])
    digest = await ledger_hash(mine["eventIds"][0])
    body = await gql(client, DELETE, {"email": "ada@"}, token=tenant.org_admin_token)
    assert error_codes(body) == ["BAD_USER_INPUT"] and body["errors"][0]["extensions"]["field"] == "buyerEmail"

    deleted = (await gql_data(client, DELETE, {"email": f" {email.upper()}"}, tenant.org_admin_token))["deleteSubjectData"]
    assert deleted == {"events": 0, "buyerEmails": 2}, "the orders stay in the books, unfindable by email"
    assert await search(client, tenant.admin_token, email, tenant.org_id) == []
    assert len(await search(client, tenant.admin_token, email)) == 1, "another organization's buyer is theirs to erase"
    assert await tables_containing(digest) == ["audit_log", "events", "transactions"], "the audit entry, the other organization's"
    async with connection() as conn:
        left = await conn.fetchval(
            "SELECT count(*) FROM transactions WHERE organization_id = $1 AND (buyer_email_hash = $2 OR metadata::text LIKE '%' || $2 || '%')",
            uuid.UUID(tenant.org_id), digest,
        )  # fmt: skip
        events_left = await conn.fetchval(
            "SELECT count(*) FROM events WHERE organization_id = $1 AND properties::text LIKE '%' || $2 || '%'",
            uuid.UUID(tenant.org_id), digest,
        )  # fmt: skip
        kept = await conn.fetchval("SELECT count(*) FROM transactions WHERE event_id = ANY($1::text[])", mine["eventIds"])
    assert (left, events_left, kept) == (0, 0, 2)
    [entry] = (await gql_data(client, AUDIT, {"org": tenant.org_id}, tenant.org_admin_token))["auditLog"]
    assert entry["details"]["arguments"]["buyer_email_hash"] == digest and "buyer_email" not in entry["details"]["arguments"]


async def test_deleting_a_user_erases_the_emails_of_their_orders(client, worker, tenant) -> None:
    email, _ = unique_email()
    user = f"buyer-{uuid.uuid4().hex[:8]}"
    await publish(client, worker, tenant, [sale("ord-u1", 1_000, email, user=user), sale("ord-u2", 700, email, user="box-office")])
    assert len(await search(client, tenant.org_admin_token, email)) == 2
    deleted = (await gql_data(client, DELETE, {"user": user}, tenant.org_admin_token))["deleteSubjectData"]
    assert deleted == {"events": 1, "buyerEmails": 2}, "their address, wherever the organization has it"
    assert await search(client, tenant.org_admin_token, email) == []


REFUND = """mutation($org: ID!, $t: String!) { issueRefund(organizationId: $org, transactionId: $t, amountMinor: 300,
  refundServiceFee: false, reason: "Seat broken") { refundTransactionId } }"""


async def test_an_admin_refund_is_found_by_its_buyers_email(client, worker, tenant) -> None:
    email, _ = unique_email()
    sold = await publish(client, worker, tenant, [sale("ord-r1", 1_200, email)])
    refund = (await gql_data(client, REFUND, {"org": tenant.org_id, "t": sold["eventIds"][0]}, tenant.admin_token))["issueRefund"]
    found = await search(client, tenant.org_admin_token, email)
    assert [(h["transactionId"], h["amountMinor"]) for h in found] == [(refund["refundTransactionId"], -300),
                                                                       (sold["eventIds"][0], 1_200)]  # fmt: skip
