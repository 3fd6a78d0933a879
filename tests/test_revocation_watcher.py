"""The revocation watcher against the real database: it learns every revocation, whatever
order concurrent writers commit in, and old rows are pruned."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from app import auth
from app.database import connection, transaction
from app.revocation import TOKEN, RevocationWatcher, record_revocation

WRITERS = 6


async def _newest_id() -> int:
    async with connection() as conn:
        return await conn.fetchval("SELECT coalesce(max(id), 0) FROM revoked_credentials")


async def test_no_revocation_is_missed_when_writers_overlap(app: Any, monkeypatch: Any) -> None:
    """Writers start in one order and would finish in the other (the first holds its
    transaction longest). Ids handed out in one order and committed in another would let a
    poller that has seen a later id skip the earlier ones for good; the writers' table lock
    keeps commits in id order, so the watcher learns every one of them."""
    monkeypatch.setattr(auth, "_revoked_tokens", {})
    watcher = RevocationWatcher()
    watcher.last_id = await _newest_id()
    learned: set[str] = set()

    async def listen(token_ids: frozenset[str]) -> None:
        learned.update(token_ids)

    watcher.add_listener(listen)
    ids = [f"overlap-{uuid.uuid4()}" for _ in range(WRITERS)]
    expires = datetime.now(UTC) + timedelta(hours=1)

    async def revoke(token_id: str, hold: float) -> None:
        async with transaction() as conn:
            await record_revocation(conn, kind=TOKEN, credential_id=token_id, expires_at=expires, revoked_by="test")
            await asyncio.sleep(hold)  # still uncommitted

    writers = []
    for n, token_id in enumerate(ids):
        writers.append(asyncio.create_task(revoke(token_id, hold=0.3 - 0.05 * n)))
        await asyncio.sleep(0.01)  # they start in this order
    while not all(writer.done() for writer in writers):
        await watcher.poll()
        await asyncio.sleep(0.005)
    await asyncio.gather(*writers)
    await watcher.poll()
    assert learned == set(ids)
    assert all(auth.is_token_revoked(token_id) for token_id in ids)


async def test_rows_of_expired_credentials_are_pruned(app: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(auth, "_revoked_tokens", {})
    past, future = f"pruned-{uuid.uuid4()}", f"kept-{uuid.uuid4()}"
    now = datetime.now(UTC)
    async with transaction() as conn:
        await record_revocation(conn, kind=TOKEN, credential_id=past, expires_at=now - timedelta(minutes=5), revoked_by="test")
        await record_revocation(conn, kind=TOKEN, credential_id=future, expires_at=now + timedelta(hours=1), revoked_by="test")
    watcher = RevocationWatcher()
    await watcher.poll()
    assert auth.is_token_revoked(past) and auth.is_token_revoked(future)
    assert await watcher.prune() >= 1
    assert not auth.is_token_revoked(past) and auth.is_token_revoked(future)
    async with connection() as conn:
        left = await conn.fetch(
            "SELECT credential_id FROM revoked_credentials WHERE credential_id = ANY($1::text[])", [past, future]
        )
    assert [row["credential_id"] for row in left] == [future]
