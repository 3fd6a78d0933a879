"""Revocation: a revoked token, session or key is refused by every API process within a second.

Revoking writes one row to `revoked_credentials` (a global table, migration 0009) from
whichever process does it, usually `pulsegraph token revoke` or `pulsegraph key revoke`, a
process of its own. Every API process runs a `RevocationWatcher` that reads the rows it has
not seen yet several times a second into app.auth's in-memory sets, which every request
checks, cache hits of verified tokens and keys included, and hands the newly revoked token
ids to listeners (the open websockets, which are then closed).

The watcher polls rather than listens: one indexed query on a tiny table per poll, nothing
to reconnect, and a poll that fails (database down) is simply repeated; the next one reads
every row after the last id seen, so an outage delays a revocation but never loses one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import jwt

from app.auth import (
    KEY_CACHE_SECONDS,
    forget_past_revocations,
    learn_revoked_key,
    learn_revoked_session,
    learn_revoked_token,
    token_id_of,
)
from app.database import connection, transaction
from app.errors import BadInput
from app.settings import Settings

log = logging.getLogger("pulsegraph.revocation")

POLL_SECONDS = 0.2  # learn of a revocation within this (plus one query) on every process
POLL_TIMEOUT_SECONDS = 2.0
PRUNE_SECONDS = 600.0  # how often a process deletes rows nobody needs any more
# A revoked key's row outlives every key cache entry made before the revocation by far.
KEY_ROW_SECONDS = max(600, 10 * int(KEY_CACHE_SECONDS))

TOKEN = "token"
INGESTION_KEY = "ingestion_key"
SESSION = "session"  # a sign-in: its cookie and every access token minted for it
API_KEY = "api_key"  # a personal API key or a service token

# Revoked again: nothing changes, except that an expiry unknown until now (revoked by id
# alone, then by the token itself) is filled in, so that the row can be pruned one day.
INSERT = """
INSERT INTO revoked_credentials (kind, credential_id, expires_at, revoked_by)
VALUES ($1, $2, $3, $4)
ON CONFLICT (kind, credential_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
    WHERE revoked_credentials.expires_at IS NULL AND EXCLUDED.expires_at IS NOT NULL
RETURNING xmax = 0 AS inserted
"""
NEWER = """
SELECT id, kind, credential_id, extract(epoch FROM expires_at)::float8 AS expires
FROM revoked_credentials WHERE id > $1 ORDER BY id
"""
PRUNE = "DELETE FROM revoked_credentials WHERE expires_at < now() - interval '1 minute'"


async def record_revocation(
    conn: asyncpg.Connection, *, kind: str, credential_id: str, expires_at: datetime | None, revoked_by: str
) -> bool:
    """Add the revocation inside the caller's transaction; False if it was already there.

    The table lock (held until commit, and taken by writers only: readers are not blocked)
    makes writers commit one after another in the order of their ids, so a watcher that has
    read id N will never see a row below N appear later."""
    await conn.execute("LOCK TABLE revoked_credentials IN SHARE ROW EXCLUSIVE MODE")
    return await conn.fetchval(INSERT, kind, credential_id, expires_at, revoked_by) is True


def key_row_expiry(now: datetime) -> datetime:
    return now + timedelta(seconds=KEY_ROW_SECONDS)


@dataclass(frozen=True)
class RevokedToken:
    token_id: str
    expires_at: datetime | None  # None: revoked by id alone, its expiry is not known
    already_revoked: bool

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= datetime.now(UTC)


async def revoke_token(
    *, token: str | None = None, token_id: str | None = None, settings: Settings, revoked_by: str
) -> RevokedToken:
    """Revoke a token given itself (its signature is checked, not its expiry) or its id."""
    if (token is None) == (token_id is None):
        raise BadInput("give either TOKEN or --jti ID", field="token")
    expires_at: datetime | None = None
    if token is not None:
        token_id, expires_at = identify_token(token, settings)
    else:
        token_id = (token_id or "").strip()
        if not token_id:
            raise BadInput("--jti must not be empty", field="jti")
    async with transaction() as conn:
        new = await record_revocation(
            conn, kind=TOKEN, credential_id=token_id, expires_at=expires_at, revoked_by=revoked_by
        )
        if not new:  # revoked before, maybe knowing more (its expiry) than this call
            expires_at = await conn.fetchval(
                "SELECT expires_at FROM revoked_credentials WHERE kind = $1 AND credential_id = $2", TOKEN, token_id
            )
    return RevokedToken(token_id=token_id, expires_at=expires_at, already_revoked=not new)


def identify_token(token: str, settings: Settings) -> tuple[str, datetime]:
    """The id and expiry of a token this server signed, expired or not."""
    raw = token.strip()
    if raw.lower().startswith("bearer "):
        raw = raw[7:].strip()
    try:
        claims = jwt.decode(
            raw, settings.jwt_secret, algorithms=["HS256"], issuer=settings.jwt_issuer,
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": ["exp"]},
        )  # fmt: skip
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
    except (jwt.InvalidTokenError, ValueError, TypeError, OverflowError) as exc:
        raise BadInput(
            f"TOKEN is not a token this server signed ({exc}); check PULSEGRAPH_JWT_SECRET, or use --jti ID",
            field="token",
        ) from exc
    return token_id_of(raw, claims), expires_at


async def revoked_token_ids(token_ids: list[str]) -> set[str]:
    """Which of these tokens are revoked, from the table itself (for processes without a
    watcher, such as the one that seeds the demo before the API starts)."""
    async with connection() as conn:
        rows = await conn.fetch(
            "SELECT credential_id FROM revoked_credentials WHERE kind = $1 AND credential_id = ANY($2::text[])",
            TOKEN, token_ids,
        )  # fmt: skip
    return {row["credential_id"] for row in rows}


Listener = Callable[[frozenset[str]], Awaitable[None]]


def learn(kind: str, credential_id: str, expires: float | None) -> str | None:
    """Tell app.auth of one revocation; the handle open websockets are listed under (none
    for ingestion keys, which cannot subscribe)."""
    if kind == TOKEN:
        learn_revoked_token(credential_id, expires)
        return credential_id
    if kind == SESSION:
        learn_revoked_session(credential_id, expires)
        return f"session:{credential_id}"
    if kind in (INGESTION_KEY, API_KEY):
        learn_revoked_key(uuid.UUID(credential_id), expires)
        return f"api_key:{credential_id}" if kind == API_KEY else None
    log.warning("unknown revocation kind %r", kind)
    return None


class RevocationWatcher:
    """Per API process: keeps app.auth's revoked sets up to date with the table."""

    def __init__(self, *, poll_seconds: float = POLL_SECONDS, prune_seconds: float = PRUNE_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self.prune_seconds = prune_seconds
        self.last_id = 0
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def add_listener(self, listener: Listener) -> None:
        """`listener(token_ids)` is awaited with the ids of tokens revoked since the last poll."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Read every revocation so far, before the process answers its first request."""
        await self.poll()
        self._task = asyncio.create_task(self._run(), name="pulsegraph-revocations")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def poll(self) -> frozenset[str]:
        """Learn the revocations after `last_id`; the newly revoked handles (`Viewer.
        revocation_handles`: token ids, `session:<id>`, `api_key:<id>`)."""
        async with connection() as conn:
            rows = await conn.fetch(NEWER, self.last_id)
        tokens: set[str] = set()
        for row in rows:
            handle = learn(row["kind"], row["credential_id"], row["expires"])
            if handle is not None:
                tokens.add(handle)
        if rows:
            self.last_id = rows[-1]["id"]
        revoked = frozenset(tokens)
        if revoked:
            await self._tell(revoked)
        return revoked

    async def _tell(self, token_ids: frozenset[str]) -> None:
        for listener in self._listeners:
            try:
                await listener(token_ids)
            except Exception:  # noqa: BLE001 - one listener must not stop the others or the watcher
                log.exception("a revocation listener failed")

    async def _run(self) -> None:
        next_prune = time.monotonic() + self.prune_seconds
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self._poll_logged()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + self.prune_seconds
                await self._prune_logged()

    async def _poll_logged(self) -> None:
        """One poll; failures are logged once per outage and retried by the next poll."""
        try:
            async with asyncio.timeout(POLL_TIMEOUT_SECONDS):  # in this task: no task per poll
                await self.poll()
        except Exception as exc:  # noqa: BLE001 - the watcher outlives database outages
            if not self._failing:
                log.warning("cannot read revocations (%r); retrying every %.1fs", exc, self.poll_seconds)
            self._failing = True
            return
        if self._failing:
            log.info("reading revocations again (up to id %d)", self.last_id)
            self._failing = False

    async def prune(self) -> int:
        """Forget, here and in the table, revocations of credentials that have expired since;
        the number of rows deleted."""
        forget_past_revocations(time.time())
        async with connection() as conn:
            status = await conn.execute(PRUNE)
        return int(status.split()[-1])

    async def _prune_logged(self) -> None:
        try:
            await self.prune()
        except Exception as exc:  # noqa: BLE001 - pruning is housekeeping; the next round retries
            log.warning("cannot prune revocations (%r)", exc)
