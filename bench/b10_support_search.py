"""B10: the support search.

* supportSearch (GraphQL, one API process) over `--b10-orders` stored order transactions in
  200 organizations, as a platform admin searching every organization: a random transaction
  id, a random order id (each order has one or two transactions), a random buyer's email
  (typed in mixed case with blanks around it; each buyer paid three transactions, in three
  organizations), an organization name prefix, and a ticket id or a scanned code, in turn;
  p50/p95 ms against the same statement run directly (the raw SQL lower bound), overall and
  for the email and the ticket searches alone. The promise: p95 <= 50 ms.
* The tickets: `--b10-scans` ticket scans (ticket.scanned, one in twenty followed by a
  ticket.scan_failed) stored as events over the same 365 days; half the ticket searches name
  a ticket id, half a scanned code.

The transactions and scans are bench setup: COPY'd into `transactions` with their buyer's
email hash (keyed as the API keys it, `EMAIL_HASH_SECRET`) and into `events` (the scans'
rollup queue rows dropped: no worker folds them here); they stay for `--reuse`.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx

from bench.common import Result, Stack, percentile

ORGANIZATIONS = 200
TRANSACTIONS_PER_BUYER = 3
SEARCH = """query($q: String!) { supportSearch(query: $q) { matched organizationId transactionId orderId amountMinor ticketId status } }"""
TARGET_MS = 50.0
KINDS = ("transaction_id", "order_id", "buyer_email", "organization_name", "ticket")


def org_id(n: int) -> uuid.UUID:
    return uuid.UUID(f"00000000-0000-4000-8000-{0xB10000 + n:012x}")


def buyer_email(n: int) -> str:
    return f"b10-buyer-{n}@example.org"


async def loaded(conn: asyncpg.Connection) -> int:
    """Transactions loaded with their buyer's email hash (a load from before emails is redone)."""
    return int(await conn.fetchval("SELECT count(*) FROM transactions WHERE event_id LIKE 'b10-%' AND buyer_email_hash IS NOT NULL"))


async def load(conn: asyncpg.Connection, count: int, *, seed: int, end: datetime, hash_email: object) -> None:
    """Organizations named like real ones, then `count` order transactions over 365 days,
    each with its buyer's email hash."""
    await conn.executemany(
        "INSERT INTO organizations (id, slug, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        [(org_id(n), f"b10-org-{n}", f"B10 Venue {n:03d}") for n in range(ORGANIZATIONS)],
    )
    rng = random.Random(seed)
    buyers = max(1, count // TRANSACTIONS_PER_BUYER)
    rows = []
    for n in range(count):
        order = n - (n % 2 if rng.random() < 0.3 else 0)  # some orders paid in two parts
        rows.append((org_id(order % ORGANIZATIONS), f"b10-{n}", "order", "completed", False, rng.randrange(500, 50_000),
                     "EUR", f"b10-order-{order}", end - timedelta(seconds=rng.random() * 365 * 86400),
                     hash_email(buyer_email(n % buyers))))  # type: ignore[operator]  # fmt: skip
    await conn.copy_records_to_table(
        "transactions", records=rows,
        columns=["organization_id", "event_id", "type", "status", "is_refund", "amount_minor", "currency", "order_id",
                 "occurred_at", "buyer_email_hash"],
    )  # fmt: skip
    await conn.execute("ANALYZE transactions")


def queries(count: int, tickets: int, repeats: int, seed: int) -> list[tuple[str, str]]:
    """(kind, text) in turn over the five kinds of search."""
    rng = random.Random(seed)
    buyers = max(1, count // TRANSACTIONS_PER_BUYER)

    def typed_email() -> str:
        email = buyer_email(rng.randrange(buyers))
        return f" {email.upper() if rng.random() < 0.5 else email.capitalize()} "

    makers = (lambda: f"b10-{rng.randrange(count)}", lambda: f"b10-order-{rng.randrange(count)}", typed_email,
              lambda: f"b10 venue {rng.randrange(ORGANIZATIONS):03d}"[:12],
              lambda: f"b10-{rng.choice(('ticket', 'code'))}-{rng.randrange(tickets)}")  # fmt: skip
    return [(KINDS[i % len(KINDS)], makers[i % len(KINDS)]()) for i in range(repeats)]


async def loaded_scans(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval(
        "SELECT count(*) FROM events WHERE type IN ('ticket.scanned', 'ticket.scan_failed') AND event_id LIKE 'b10-scan-%'"
    ))  # fmt: skip


def scan_rows(count: int, orders: int, *, seed: int, end: datetime) -> list[tuple[object, ...]]:
    """Ticket n of order n % orders (in that order's organization), scanned once at a gate;
    one in twenty scanned again and refused (already used, a misread code or the network)."""
    rng = random.Random(seed + 10)
    rows: list[tuple[object, ...]] = []
    errors = ("already_used", "invalid_code", "network")
    for n in range(count):
        order = n % orders
        at = end - timedelta(seconds=rng.random() * 365 * 86400)
        ticket = {"ticketId": f"b10-ticket-{n}", "code": f"b10-code-{n}", "orderId": f"b10-order-{order}",
                  "deviceId": f"gate-{n % 8}"}  # fmt: skip
        org = org_id(order % ORGANIZATIONS)
        rows.append((org, at, f"b10-scan-{n}", "ticket.scanned", json.dumps(ticket)))
        if n % 20 == 0:
            failed = {**ticket, "errorType": errors[n % 3]}
            rows.append((org, at + timedelta(seconds=5), f"b10-scan-{n}-failed", "ticket.scan_failed", json.dumps(failed)))
    return rows


async def load_scans(conn: asyncpg.Connection, count: int, orders: int, *, seed: int, end: datetime) -> None:
    from bench.b7_insights import ensure_partitions

    await ensure_partitions(conn, end - timedelta(days=366), end)
    rows = scan_rows(count, orders, seed=seed, end=end)
    for at in range(0, len(rows), 100_000):
        await conn.copy_records_to_table(
            "events", records=rows[at : at + 100_000], columns=["organization_id", "occurred_at", "event_id", "type", "properties"]
        )
    await conn.execute("DELETE FROM event_rollup_queue WHERE event_id LIKE 'b10-scan-%'")
    await conn.execute("ANALYZE events")


async def run(
    database_url: str, broadcast_url: str, work_dir: Path, *, orders: int, scans: int, repeats: int, seed: int
) -> list[Result]:
    from app.auth import Role, issue_token
    from app.services import buyer_emails
    from app.services.support import SEARCH as RAW
    from app.services.support import _like_prefix
    from app.settings import Settings
    from bench.common import EMAIL_HASH_SECRET, JWT_SECRET, migrate

    settings = Settings(database_url=None, broadcast_url="memory://", data_dir=Path("/tmp"), jwt_secret=JWT_SECRET,
                        email_hash_secret=EMAIL_HASH_SECRET)  # fmt: skip
    await migrate(database_url, work_dir / "data")  # a reused database may predate the email hash column
    conn = await asyncpg.connect(database_url)
    stored = await loaded(conn)
    if stored < orders:
        print(f"B10: loading {orders:,} order transactions with their buyers' email hashes, with COPY ...", flush=True)
        await conn.execute("DELETE FROM transactions WHERE event_id LIKE 'b10-%'")
        await load(conn, orders, seed=seed, end=datetime.now(UTC),
                   hash_email=lambda email: buyer_emails.email_hash(email, settings))  # fmt: skip
        stored = orders
    scanned = await loaded_scans(conn)
    if scanned < scans:
        print(f"B10: loading {scans:,} ticket scans with COPY ...", flush=True)
        await conn.execute("DELETE FROM events WHERE type IN ('ticket.scanned', 'ticket.scan_failed') AND event_id LIKE 'b10-scan-%'")
        await load_scans(conn, scans, stored, seed=seed, end=datetime.now(UTC))
        scanned = await loaded_scans(conn)
    admin = issue_token(role=Role.ADMIN, organization_id=None, settings=settings)
    asked = queries(stored, max(scans, 1), repeats, seed)
    raw: dict[str, list[float]] = {kind: [] for kind in KINDS}
    for kind, text in asked:
        began = time.perf_counter()
        await conn.fetch(RAW, text.strip(), None, 20, _like_prefix(text.strip()), buyer_emails.hash_of_query(text, settings))
        raw[kind].append((time.perf_counter() - began) * 1000)
    api: dict[str, list[float]] = {kind: [] for kind in KINDS}
    found = {kind: 0 for kind in KINDS}
    with Stack(database_url, broadcast_url, work_dir / "b10") as stack:
        async with httpx.AsyncClient(base_url=stack.url, timeout=60, trust_env=False) as http:
            headers = {"authorization": f"Bearer {admin}"}
            for _, text in asked[:8]:  # warm the process's pool and caches
                await http.post("/graphql", json={"query": SEARCH, "variables": {"q": text}}, headers=headers)
            for kind, text in asked:
                began = time.perf_counter()
                response = await http.post("/graphql", json={"query": SEARCH, "variables": {"q": text}}, headers=headers)
                api[kind].append((time.perf_counter() - began) * 1000)
                body = response.json()
                assert "errors" not in body, body
                found[kind] += any(hit["matched"] == kind.upper() for hit in body["data"]["supportSearch"])
    await conn.close()
    every, every_raw = [t for ts in api.values() for t in ts], [t for ts in raw.values() for t in ts]
    p95, raw_p95 = percentile(every, 0.95), percentile(every_raw, 0.95)
    email_p95, email_raw_p95 = percentile(api["buyer_email"], 0.95), percentile(raw["buyer_email"], 0.95)
    ticket_p95, ticket_raw_p95 = percentile(api["ticket"], 0.95), percentile(raw["ticket"], 0.95)
    return [
        Result(
            "B10", f"supportSearch p95 over {stored:,} orders (platform admin, every organization)", p95, raw_p95, "ms",
            "the same statement over asyncpg, p95", p95 / raw_p95 if raw_p95 else None, f"p95 <= {TARGET_MS:.0f} ms",
            p95 <= TARGET_MS,
            {"p50_ms": percentile(every, 0.5), "raw_p50_ms": percentile(every_raw, 0.5), "searches": len(asked),
             "with_hits": sum(found.values())},
        ),
        Result(
            "B10", f"supportSearch by buyer email p95 over {stored:,} orders (platform admin)", email_p95, email_raw_p95,
            "ms", "the same statement over asyncpg, p95", email_p95 / email_raw_p95 if email_raw_p95 else None,
            f"p95 <= {TARGET_MS:.0f} ms", email_p95 <= TARGET_MS,
            {"p50_ms": percentile(api["buyer_email"], 0.5), "raw_p50_ms": percentile(raw["buyer_email"], 0.5),
             "searches": len(api["buyer_email"]), "with_hits": found["buyer_email"]},
        ),
        Result(
            "B10", f"supportSearch by ticket id or code p95 over {scanned:,} scans", ticket_p95, ticket_raw_p95, "ms",
            "the same statement over asyncpg, p95", ticket_p95 / ticket_raw_p95 if ticket_raw_p95 else None,
            f"p95 <= {TARGET_MS:.0f} ms", ticket_p95 <= TARGET_MS,
            {"p50_ms": percentile(api["ticket"], 0.5), "raw_p50_ms": percentile(raw["ticket"], 0.5),
             "searches": len(api["ticket"]), "found_the_ticket": found["ticket"]},
        ),
    ]  # fmt: skip
