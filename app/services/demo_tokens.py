"""The demo's tokens: kept in the data folder and printed again at every start while good.

Minting new tokens at every start of `serve` left a trail of valid 30-day tokens behind
each restart. Instead the tokens are stored (file mode 0600, like the JWT secret) and reused
while each is still signed by the current secret, not revoked, made for the demo's current
organization and profile, and valid for more than a day; any other is minted anew.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from app.auth import Role, Viewer, mint_token, verified_token
from app.errors import Unauthenticated
from app.revocation import revoked_token_ids
from app.settings import Settings

log = logging.getLogger("pulsegraph.demo")

TOKENS_FILE = "demo-tokens.json"
MIN_REMAINING_SECONDS = 86_400  # a token expiring sooner is replaced at start


@dataclass(frozen=True)
class DemoTokens:
    admin_token: str
    org_admin_token: str
    provider_token: str


@dataclass(frozen=True)
class _Wanted:
    role: Role
    organization_id: uuid.UUID | None
    profile_id: uuid.UUID | None

    def made_by(self, viewer: Viewer) -> bool:
        return (viewer.role, viewer.organization_id, viewer.profile_id) == (self.role, self.organization_id, self.profile_id)


async def demo_tokens(settings: Settings, *, organization_id: uuid.UUID, profile_id: uuid.UUID) -> DemoTokens:
    """The stored tokens that are still good, new ones for the rest; stores the result."""
    wanted = {
        "admin_token": _Wanted(Role.ADMIN, None, None),
        "org_admin_token": _Wanted(Role.ORG_ADMIN, organization_id, None),
        "provider_token": _Wanted(Role.PROVIDER, organization_id, profile_id),
    }
    path = settings.data_dir / TOKENS_FILE
    stored = _read(path)
    usable = {name: stored[name] for name, want in wanted.items() if _fits(stored.get(name), want, settings)}
    revoked = await revoked_token_ids([_token_id(token, settings) for token in usable.values()])
    usable = {name: token for name, token in usable.items() if _token_id(token, settings) not in revoked}
    tokens = {
        name: usable.get(name) or mint_token(
            role=want.role, organization_id=want.organization_id, profile_id=want.profile_id, settings=settings
        ).token
        for name, want in wanted.items()
    }  # fmt: skip
    if tokens != stored:
        write_private(path, tokens)
        log.info("demo: minted %s", ", ".join(sorted(set(tokens) - set(usable))))
    elif stat.S_IMODE(path.stat().st_mode) != 0o600:
        path.chmod(0o600)  # someone opened it up: the tokens are credentials
    return DemoTokens(**tokens)


def _fits(token: object, want: _Wanted, settings: Settings) -> bool:
    """Signed by the current secret and issuer, made for what is wanted, valid for long enough."""
    if not isinstance(token, str):
        return False
    try:
        expires, viewer = verified_token(token, settings)
    except Unauthenticated:
        return False
    return want.made_by(viewer) and expires - time.time() > MIN_REMAINING_SECONDS


def _token_id(token: str, settings: Settings) -> str:
    _, viewer = verified_token(token, settings)
    assert viewer.token_id is not None
    return viewer.token_id


def _read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("demo: ignoring unreadable %s (%s); minting new tokens", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def write_private(path: Path, data: dict[str, str]) -> None:
    """Readable by the owner only (the demo's tokens and passwords are credentials), and
    replaced whole, so a reader never sees half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(data, file)
    os.chmod(partial, 0o600)  # whatever the umask
    os.replace(partial, path)

