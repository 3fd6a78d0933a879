"""Tenants inside a running stack's database, made by a helper process.

The test process's database is not the stack's, so `python -m tests.support.provision COUNT`
runs `make_tenant` with the stack's environment (its database and the test JWT secret) and
prints one JSON line per tenant: ids and credentials, all a test needs of it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from tests.support.processes import ROOT

PROVISION_TIMEOUT = 120.0


@dataclass(frozen=True)
class StackTenant:
    """What tests need of a tenant made in a stack's database: ids and credentials."""

    org_id: str
    profile_id: str
    other_profile_id: str
    ingestion_key: str
    admin_token: str
    org_admin_token: str
    provider_token: str
    service_token: str
    viewer_email: str  # a member who signs in with STACK_PASSWORD
    viewer_user_id: str


STACK_PASSWORD = "stack member passphrase 7"


def provision_tenants(env: dict[str, str], count: int, log_dir: Path) -> list[StackTenant]:
    """Run this module with the stack's environment; its output is kept in `log_dir`."""
    log_path = log_dir / f"provision-{uuid.uuid4().hex[:6]}.log"
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.provision", str(count)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=PROVISION_TIMEOUT, check=False,
    )  # fmt: skip
    log_path.write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        print(f"[provision] failed ({log_path}):\n{done.stdout}{done.stderr}")
        pytest.fail(f"could not provision tenants (exit {done.returncode}); output above", pytrace=False)
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == count, done.stdout
    return [StackTenant(**row) for row in rows]


async def _provision(count: int) -> None:
    from app.database import close_database, init_database
    from app.settings import get_settings
    from tests.support.tenants import make_tenant

    settings = get_settings()  # the stack's environment: its database and the test JWT secret
    await init_database(settings)
    try:
        for _ in range(count):
            tenant = await make_tenant(settings)
            row = StackTenant(
                org_id=tenant.org_id,
                profile_id=tenant.profile_id,
                other_profile_id=str(tenant.other_profile.id),
                ingestion_key=tenant.ingestion_key,
                admin_token=tenant.admin_token,
                org_admin_token=tenant.org_admin_token,
                provider_token=tenant.provider_token,
                service_token=tenant.service_token,
                viewer_email=await _with_password(tenant.users["viewer"]),
                viewer_user_id=str(tenant.users["viewer"]),
            )
            print(json.dumps(asdict(row)), flush=True)
    finally:
        await close_database()


async def _with_password(user_id: uuid.UUID) -> str:
    from app.database import connection
    from app.services.accounts.passwords import hash_password

    async with connection() as conn:
        return await conn.fetchval(
            "UPDATE users SET password_hash = $2 WHERE id = $1 RETURNING email", user_id, hash_password(STACK_PASSWORD)
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.support.provision COUNT")
    asyncio.run(_provision(int(sys.argv[1])))
