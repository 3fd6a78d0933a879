"""The operator's command line, run as a real process against the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import TEST_JWT_SECRET, gql

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cli_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PULSEGRAPH_JWT_SECRET": TEST_JWT_SECRET,
        "PULSEGRAPH_DATA_DIR": str(tmp_path_factory.mktemp("cli-data")),
    }


def pulsegraph(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def pulsegraph_json(env: dict[str, str], *args: str) -> dict:
    done = pulsegraph(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


async def test_operator_sets_up_a_tenant_and_its_tokens_work(app, client, cli_env):
    name = f"Acme {uuid.uuid4().hex[:6]}"
    org = pulsegraph_json(cli_env, "org", "create", name, "--timezone", "Europe/Berlin")
    assert org["timezone"] == "Europe/Berlin"
    profile = pulsegraph_json(cli_env, "profile", "create", "--org", org["slug"], "Jane Doe")
    provider = pulsegraph_json(cli_env, "token", "--org", org["slug"], "--role", "provider", "--profile", profile["slug"])
    key = pulsegraph_json(cli_env, "key", "create", "--org", org["id"])
    assert key["key"].startswith("pgk_")

    body = await gql(client, "{ viewer { role organizationId profileId } }", token=provider["token"])
    assert body["data"]["viewer"] == {"role": "provider", "organizationId": org["id"], "profileId": profile["id"]}
    body = await gql(client, "{ viewer { role } }", token=key["key"])
    assert body["data"]["viewer"]["role"] is None


def test_migrate_reports_versions(cli_env):
    result = pulsegraph_json(cli_env, "migrate")
    assert result["applied"] == result["available"]
    assert "0001_initial" in result["applied"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["org", "create", "Bad Zone", "--timezone", "Mars/Olympus"], "not an IANA time zone"),
        (["profile", "create", "--org", "no-such-org", "X"], "organization 'no-such-org' not found"),
        (["token", "--role", "org_admin"], "--org is required"),
    ],
)
def test_bad_arguments_get_a_clear_error(cli_env, args, message):
    done = pulsegraph(cli_env, *args)
    assert done.returncode == 2
    assert message in done.stderr


def test_unknown_role_is_refused_by_the_parser(cli_env):
    done = pulsegraph(cli_env, "token", "--org", "x", "--role", "root")
    assert done.returncode == 2
    assert "invalid choice: 'root'" in done.stderr


def test_serve_refuses_to_start_with_a_missing_geoip_database(cli_env, tmp_path):
    """A typo in a GeoIP path is found at start, not by the first visitor's request."""
    env = {**cli_env, "PULSEGRAPH_GEOIP_ASN_DB": str(tmp_path / "GeoLite2-ASN.mmdb"), "PULSEGRAPH_DEMO": "0"}
    done = pulsegraph(env, "serve", "--no-worker", "--port", "0")
    assert done.returncode != 0
    assert "GeoLite2-ASN.mmdb" in done.stderr


@pytest.mark.parametrize("asked_by", ["--workers", "PULSEGRAPH_WEB_CONCURRENCY"])
def test_several_api_processes_need_a_shared_broadcast(cli_env, asked_by):
    """With the in-process bus a subscriber would miss what the other processes handle: refused."""
    env = {**cli_env, "BROADCAST_URL": "memory://"}
    args = ["serve", "--no-demo", "--port", "0"]
    if asked_by == "--workers":
        args += ["--workers", "2"]
    else:
        env["PULSEGRAPH_WEB_CONCURRENCY"] = "2"
    done = pulsegraph(env, *args)
    assert done.returncode == 2, done.stderr
    assert "2 API processes need a shared BROADCAST_URL" in done.stderr
