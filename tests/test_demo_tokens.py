"""The demo's tokens are stored in the data folder and printed again while they are good,
instead of three new 30-day tokens at every start."""

from __future__ import annotations

import json
import stat
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from app.auth import Role, issue_token
from app.revocation import revoke_token
from app.services.demo_tokens import TOKENS_FILE, demo_tokens
from app.settings import Settings
from tests.support.graphql import gql
from tests.support.settings import settings_with
from tests.support.tenants import Tenant

VIEWER = "{ viewer { role organizationId profileId } }"


@pytest.fixture
def demo_settings(settings: Settings, tmp_path: Path) -> Settings:
    """The test settings with a data folder of the test's own."""
    return settings_with(settings, data_dir=tmp_path)


async def tokens_for(settings: Settings, tenant: Tenant) -> dict[str, str]:
    return asdict(await demo_tokens(settings, organization_id=tenant.organization.id, profile_id=tenant.profile.id))


def stored(settings: Settings) -> dict[str, str]:
    return json.loads((settings.data_dir / TOKENS_FILE).read_text())


async def test_a_restart_reuses_the_stored_tokens_and_they_work(client: Any, demo_settings: Settings, tenant: Tenant) -> None:
    first = await tokens_for(demo_settings, tenant)
    assert await tokens_for(demo_settings, tenant) == first == stored(demo_settings)
    assert stat.S_IMODE((demo_settings.data_dir / TOKENS_FILE).stat().st_mode) == 0o600
    views = {name: (await gql(client, VIEWER, token=token))["data"]["viewer"] for name, token in first.items()}
    assert views == {
        "admin_token": {"role": "admin", "organizationId": None, "profileId": None},
        "org_admin_token": {"role": "org_admin", "organizationId": tenant.org_id, "profileId": None},
        "provider_token": {"role": "provider", "organizationId": tenant.org_id, "profileId": tenant.profile_id},
    }


async def test_a_revoked_token_is_replaced(demo_settings: Settings, tenant: Tenant) -> None:
    first = await tokens_for(demo_settings, tenant)
    await revoke_token(token=first["org_admin_token"], settings=demo_settings, revoked_by="test")
    again = await tokens_for(demo_settings, tenant)
    assert again["org_admin_token"] != first["org_admin_token"]
    assert (again["admin_token"], again["provider_token"]) == (first["admin_token"], first["provider_token"])
    assert stored(demo_settings) == again


async def test_a_token_valid_for_a_day_or_less_is_replaced(demo_settings: Settings, tenant: Tenant) -> None:
    first = await tokens_for(demo_settings, tenant)
    short = issue_token(role=Role.ADMIN, organization_id=None, ttl_seconds=86_400 - 60, settings=demo_settings)
    long = issue_token(role=Role.ORG_ADMIN, organization_id=tenant.organization.id, ttl_seconds=86_400 + 600, settings=demo_settings)
    (demo_settings.data_dir / TOKENS_FILE).write_text(json.dumps({**first, "admin_token": short, "org_admin_token": long}))
    again = await tokens_for(demo_settings, tenant)
    assert again["admin_token"] not in (short, first["admin_token"])
    assert (again["org_admin_token"], again["provider_token"]) == (long, first["provider_token"])


async def test_another_secret_or_another_demo_organization_gets_new_tokens(
    demo_settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    first = await tokens_for(demo_settings, tenant)
    rotated = settings_with(demo_settings, jwt_secret="rotated-secret-" + "z" * 40)
    after_rotation = await tokens_for(rotated, tenant)
    assert all(after_rotation[name] != first[name] for name in first)
    reseeded = await tokens_for(rotated, other_tenant)  # e.g. a new database, same data folder
    assert reseeded["admin_token"] == after_rotation["admin_token"]
    assert all(reseeded[name] != after_rotation[name] for name in ("org_admin_token", "provider_token"))


async def test_an_unreadable_file_is_replaced_and_the_file_kept_private(demo_settings: Settings, tenant: Tenant) -> None:
    path = demo_settings.data_dir / TOKENS_FILE
    path.write_text("{not json")
    tokens = await tokens_for(demo_settings, tenant)
    assert stored(demo_settings) == tokens
    path.chmod(0o644)
    assert await tokens_for(demo_settings, tenant) == tokens
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
