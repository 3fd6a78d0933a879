"""The operator's command line, run as a real process against the test database."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.graphql import gql
from tests.support.settings import TEST_JWT_SECRET

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cli_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PULSEGRAPH_JWT_SECRET": TEST_JWT_SECRET,
        "PULSEGRAPH_DATA_DIR": str(tmp_path_factory.mktemp("cli-data")),
    }


def pulsegraph(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120,
        input=stdin,
    )  # fmt: skip


def pulsegraph_json(env: dict[str, str], *args: str, stdin: str | None = None) -> dict:
    done = pulsegraph(env, *args, "--json", stdin=stdin)
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


# -- listing and revoking ------------------------------------------------------------------


def test_lists_show_organizations_profiles_and_keys_but_never_a_key(cli_env):
    org = pulsegraph_json(cli_env, "org", "create", f"Lister {uuid.uuid4().hex[:6]}", "--currency", "EUR")
    profile = pulsegraph_json(cli_env, "profile", "create", "--org", org["slug"], "Ada Listed")
    key = pulsegraph_json(cli_env, "key", "create", "--org", org["slug"], "--name", "beacon")

    listed_org = {o["slug"]: o for o in pulsegraph_json(cli_env, "org", "list")}[org["slug"]]
    assert datetime.fromisoformat(listed_org.pop("created_at")) <= datetime.now(UTC)
    assert listed_org == {"id": org["id"], "slug": org["slug"], "name": org["name"], "timezone": "UTC", "currency": "EUR"}
    [listed_profile] = pulsegraph_json(cli_env, "profile", "list", "--org", org["id"])
    assert listed_profile.pop("created_at")
    assert listed_profile == {"id": profile["id"], "slug": "ada-listed", "name": "Ada Listed", "organization": org["slug"]}
    assert profile["id"] in {p["id"] for p in pulsegraph_json(cli_env, "profile", "list")}

    done = pulsegraph(cli_env, "key", "list", "--org", org["slug"], "--json")
    assert done.returncode == 0, done.stderr
    secret = key["key"].split("_", 2)[2]  # the secret itself may contain "_"
    assert key["key"] not in done.stdout and secret not in done.stdout
    [listed] = json.loads(done.stdout)
    assert listed["id"] == key["id"] and listed["name"] == "beacon" and listed["created_at"]
    assert (listed["last_used_at"], listed["revoked_at"]) == (None, None)
    assert listed["starts_with"] == "_".join(key["key"].split("_")[:2]) + "_..."


def test_lists_print_a_table_without_json(cli_env):
    org = pulsegraph_json(cli_env, "org", "create", f"Tabled {uuid.uuid4().hex[:6]}")
    done = pulsegraph(cli_env, "key", "list", "--org", org["slug"])
    assert (done.returncode, done.stdout.strip()) == (0, "(none)"), done.stderr
    pulsegraph_json(cli_env, "key", "create", "--org", org["slug"], "--name", "beacon")
    header, row = pulsegraph(cli_env, "key", "list", "--org", org["slug"]).stdout.strip().splitlines()
    assert header.split() == ["id", "name", "organization", "starts_with", "created_at", "last_used_at", "revoked_at"]
    assert row.split()[1:3] == ["beacon", org["slug"]] and row.split()[-2:] == ["-", "-"]


async def test_a_key_revoked_by_the_key_itself_is_refused_and_listed_as_revoked(app, client, cli_env):
    org = pulsegraph_json(cli_env, "org", "create", f"Revoker {uuid.uuid4().hex[:6]}")
    doomed = pulsegraph_json(cli_env, "key", "create", "--org", org["slug"])
    kept = pulsegraph_json(cli_env, "key", "create", "--org", org["slug"])
    track = {"type": "cli.revocation"}
    for key in (doomed, kept):
        response = await client.post("/track", json=track, headers={"Authorization": f"Bearer {key['key']}"})
        assert response.status_code == 200, response.text

    revoked = pulsegraph_json(cli_env, "key", "revoke", doomed["key"])
    assert (revoked["id"], revoked["already_revoked"]) == (doomed["id"], False) and revoked["revoked_at"]
    await app.state.revocations.poll()  # what this process's watcher does several times a second
    response = await client.post("/track", json=track, headers={"Authorization": f"Bearer {doomed['key']}"})
    assert (response.status_code, response.json()["error"]["code"]) == (401, "UNAUTHENTICATED")
    response = await client.post("/track", json=track, headers={"Authorization": f"Bearer {kept['key']}"})
    assert response.status_code == 200, response.text

    again = pulsegraph_json(cli_env, "key", "revoke", doomed["id"])
    assert (again["already_revoked"], again["revoked_at"]) == (True, revoked["revoked_at"])
    listed = {k["id"]: k for k in pulsegraph_json(cli_env, "key", "list", "--org", org["slug"])}
    assert listed[doomed["id"]]["revoked_at"] == revoked["revoked_at"]
    assert listed[kept["id"]]["revoked_at"] is None and listed[kept["id"]]["last_used_at"]


def test_an_issued_token_shows_its_id_and_expiry(cli_env):
    import jwt

    issued = pulsegraph_json(cli_env, "token", "--role", "admin", "--ttl-days", "2")
    claims = jwt.decode(issued["token"], TEST_JWT_SECRET, algorithms=["HS256"], issuer="pulsegraph")
    assert issued["jti"] == claims["jti"]
    assert datetime.fromisoformat(issued["expires_at"]) == datetime.fromtimestamp(claims["exp"], UTC)
    assert claims["exp"] - claims["iat"] == 2 * 86400


def test_version_comes_from_the_installed_package(cli_env):
    done = pulsegraph(cli_env, "--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"pulsegraph {importlib.metadata.version('pulsegraph')}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token"], "--role is required"),
        (["token", "revoke"], "either TOKEN or --jti"),
        (["token", "revoke", "not-a-jwt"], "TOKEN is not a token this server signed"),
        (["token", "revoke", "x", "--jti", "y"], "either TOKEN or --jti"),
        (["profile", "list", "--org", "no-such-org"], "organization 'no-such-org' not found"),
        (["key", "list", "--org", "no-such-org"], "organization 'no-such-org' not found"),
        (["key", "revoke", "not-an-id"], "KEY 'not-an-id' is neither a key id nor a pgk_... key"),
        (["key", "revoke", "00000000-0000-4000-8000-000000000000"], "ingestion key '00000000-0000-4000-8000-000000000000' not found"),
        (["key", "revoke", "pgk_000000000000_" + "z" * 32], "KEY is not an ingestion key of this server"),
    ],
)
def test_list_and_revoke_errors_are_one_line_naming_the_argument(cli_env, args, message):
    done = pulsegraph(cli_env, *args)
    assert done.returncode == 2, done.stdout
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line and done.stdout == ""


# -- accounts ------------------------------------------------------------------------------

LOGIN = """
mutation($email: String!, $password: String!) {
  login(email: $email, password: $password) { role organizationId profileId accessToken user { email name } }
}"""
STRONG = "correct horse battery staple"


def an_email(who: str) -> str:
    return f"{who}-{uuid.uuid4().hex[:8]}@example.com"


async def sign_in(client: Any, email: str, password: str) -> dict[str, Any]:
    body = await gql(client, LOGIN, {"email": email, "password": password})
    assert body.get("errors") is None, body
    return body["data"]["login"]


async def test_a_platform_admin_made_here_signs_in_with_the_password_printed_once(app, client, cli_env):
    email = an_email("operator")
    done = pulsegraph(cli_env, "user", "create", "--email", email.upper(), "--name", "Ops Person", "--admin")
    assert done.returncode == 0, done.stderr
    printed = dict(line.split(None, 1) for line in done.stdout.strip().splitlines())
    assert (printed["email"], printed["name"], printed["platform_admin"]) == (email, "Ops Person", "True")
    assert len(printed["password"]) >= 20 and printed["password"] not in done.stderr

    signed_in = await sign_in(client, email, printed["password"])
    assert (signed_in["role"], signed_in["organizationId"], signed_in["user"]["name"]) == ("admin", None, "Ops Person")
    body = await gql(client, "{ viewer { role organizationId } }", token=signed_in["accessToken"])
    assert body["data"]["viewer"] == {"role": "admin", "organizationId": None}, body


async def test_an_organization_member_gets_the_role_asked_and_is_listed(app, client, cli_env):
    org = pulsegraph_json(cli_env, "org", "create", f"Staffed {uuid.uuid4().hex[:6]}")
    profile = pulsegraph_json(cli_env, "profile", "create", "--org", org["slug"], "Pat Provider")
    watcher, provider = an_email("watcher"), an_email("provider")
    created = pulsegraph_json(
        cli_env, "user", "create", "--email", watcher, "--org", org["id"], "--role", "viewer", "--password-stdin",
        stdin=STRONG + "\n",
    )  # fmt: skip
    assert (created["organization"], created["role"], created["platform_admin"]) == (org["slug"], "viewer", False)
    assert "password" not in created  # given, so not printed
    made = pulsegraph_json(
        cli_env, "user", "create", "--email", provider, "--org", org["slug"], "--role", "provider", "--profile", "pat-provider"
    )  # fmt: skip

    signed_in = await sign_in(client, watcher, STRONG)
    assert (signed_in["role"], signed_in["organizationId"], signed_in["profileId"]) == ("viewer", org["id"], None)
    signed_in = await sign_in(client, provider, made["password"])
    assert (signed_in["role"], signed_in["organizationId"], signed_in["profileId"]) == ("provider", org["id"], profile["id"])

    listed = {user["email"]: user for user in pulsegraph_json(cli_env, "user", "list", "--org", org["slug"])}
    assert set(listed) == {watcher, provider}
    assert listed[watcher]["memberships"] == [{"organization": org["slug"], "role": "viewer", "profile": None}]
    assert listed[provider]["memberships"] == [{"organization": org["slug"], "role": "provider", "profile": "pat-provider"}]
    assert listed[provider]["platform_admin"] is False and listed[provider]["last_sign_in_at"]
    done = pulsegraph(cli_env, "user", "list", "--org", org["slug"])
    assert made["password"] not in done.stdout and STRONG not in done.stdout
    header, *rows = done.stdout.strip().splitlines()
    assert header.split() == ["id", "email", "name", "platform_admin", "memberships", "last_sign_in_at"]
    assert f"{org['slug']}:provider/pat-provider" in {cell for row in rows for cell in row.split()}


@pytest.mark.parametrize(
    ("password", "rule"),
    [("k9#Qz", "length"), ("password123", "common"), ("{who} rules them all", "personal")],
)
def test_a_weak_password_from_stdin_is_refused_naming_the_rule(cli_env, password, rule):
    email = an_email("weakling")
    password = password.format(who=email.split("@")[0])
    done = pulsegraph(cli_env, "user", "create", "--email", email, "--admin", "--password-stdin", stdin=password + "\n")
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: password ") and f"the rule '{rule}'" in line and password not in line
    assert email not in {user["email"] for user in pulsegraph_json(cli_env, "user", "list")}


def test_a_second_account_with_the_same_email_is_refused(cli_env):
    email = an_email("twice")
    pulsegraph_json(cli_env, "user", "create", "--email", email, "--admin")
    done = pulsegraph(cli_env, "user", "create", "--email", f" {email.upper()} ", "--admin")
    assert (done.returncode, done.stdout) == (2, "")
    assert f"error: a user with email {email} already exists" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email", "x@example.com"], "give --admin (a platform admin), --org with --role (a member), or both"),
        (["--email", "x@example.com", "--org", "demo"], "--role is required with --org"),
        (["--email", "x@example.com", "--admin", "--role", "viewer"], "--role and --profile need --org"),
        (["--email", "x@example.com", "--org", "demo", "--role", "provider"], "--profile is required for role provider"),
        (["--email", "x@example.com", "--org", "demo", "--role", "viewer", "--profile", "p"], "--profile is only for role provider"),
        (["--email", "x@example.com", "--org", "no-such-org", "--role", "viewer"], "organization 'no-such-org' not found"),
        (["--email", "not-an-email", "--admin"], "email must be an address like name@example.com"),
        (["--email", "x@example.com", "--admin", "--password-stdin"], "--password-stdin: no password on standard input"),
    ],
)
def test_user_create_errors_are_one_line_naming_the_option(cli_env, args, message):
    done = pulsegraph(cli_env, "user", "create", *args, stdin="")
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line
