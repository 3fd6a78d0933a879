"""`pulsegraph geoip update` against a real HTTP server on 127.0.0.1 that publishes test
databases the way DB-IP and MaxMind do, and servers that follow the files it replaces.

The databases are real MaxMind DB files written with mmdb-writer; the update reads them
back with the same reader the server uses.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import maxminddb
import pytest
from mmdb_writer import MmdbU32

from app.errors import UserError
from app.services.enrichment import GeoLocator
from app.services.geoip_update import GeoipUpdateError, MaxMindAccount, maxmind_account, update_geoip
from app.settings import Settings
from tests.support.http_files import FileServer, file_server
from tests.support.mmdb import write_mmdb
from tests.support.postgres import create_database, drop_database
from tests.support.processes import ROOT
from tests.support.stacks import running_stack

VISITOR_IP = "81.2.69.160"
VISITOR_NETWORK = "81.2.69.0/24"
DBIP_CITY_TYPE = "DBIP-City-Lite"
DBIP_ASN_TYPE = "DBIP-ASN-Lite (compat=GeoLite2-ASN)"
TODAY = date(2027, 1, 2)  # fixed for in-process runs: its "last month" is in the previous year
THIS_MONTH, LAST_MONTH = "2027-01", "2026-12"


# -- test databases and publishing ------------------------------------------------------------


def city_bytes(tmp: Path, country: str, *, database_type: str = DBIP_CITY_TYPE) -> bytes:
    record = {"country": {"iso_code": country, "names": {"en": country}}, "city": {"names": {"en": f"Capital of {country}"}}}
    path = tmp / f"city-{uuid.uuid4().hex}.mmdb"
    write_mmdb(path, database_type, {VISITOR_NETWORK: record})
    return path.read_bytes()


def asn_bytes(tmp: Path, asn: int, org: str, *, database_type: str = DBIP_ASN_TYPE) -> bytes:
    record = {"autonomous_system_number": MmdbU32(asn), "autonomous_system_organization": org}
    path = tmp / f"asn-{uuid.uuid4().hex}.mmdb"
    write_mmdb(path, database_type, {VISITOR_NETWORK: record})
    return path.read_bytes()


def publish_dbip(server: FileServer, month: str, *, city: bytes | tuple[int, bytes], asn: bytes | tuple[int, bytes]) -> None:
    """DB-IP's names: dbip-city-lite-YYYY-MM.mmdb.gz; raw tuples are served as they are."""
    for kind, body in (("city", city), ("asn", asn)):
        server.files[f"/dbip-{kind}-lite-{month}.mmdb.gz"] = body if isinstance(body, tuple) else gzip.compress(body)


def maxmind_archive(edition: str, database: bytes) -> bytes:
    """Shaped like MaxMind's: a dated folder with the database and its licence files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("LICENSE.txt", b"GeoLite2 EULA"), (f"{edition}.mmdb", database)):
            info = tarfile.TarInfo(f"{edition}_20261229/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def publish_maxmind(server: FileServer, edition: str, database: bytes, *, checksum: str | None = None) -> None:
    archive = maxmind_archive(edition, database)
    path = f"/geoip/databases/{edition}/download?suffix=tar.gz"
    server.files[path] = archive
    digest = checksum or hashlib.sha256(archive).hexdigest()
    server.files[f"{path}.sha256"] = f"{digest}  {edition}_20261229.tar.gz\n".encode()


def settings_for(data_dir: Path, server: FileServer | str) -> Settings:
    base = server if isinstance(server, str) else server.base_url
    return Settings(
        database_url=None, broadcast_url="memory://", data_dir=data_dir, jwt_secret="unused",
        geoip_dbip_url=base, geoip_maxmind_url=f"{base}/geoip/databases",
    )  # fmt: skip


def installed(data_dir: Path) -> dict[str, tuple[int, bytes]]:
    """Inode and content of each installed file: a refused update changes neither."""
    folder = data_dir / "geoip"
    return {name: ((folder / name).stat().st_ino, (folder / name).read_bytes()) for name in ("city.mmdb", "asn.mmdb")}


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "geoip").iterdir() if p.name not in ("city.mmdb", "asn.mmdb"))


def locate(data_dir: Path, ip: str = VISITOR_IP) -> tuple[str | None, int | None]:
    geo = GeoLocator(str(data_dir / "geoip" / "city.mmdb"), str(data_dir / "geoip" / "asn.mmdb"))
    try:
        place = geo.lookup(ip)
        return place.country, place.asn
    finally:
        geo.close()


@pytest.fixture
def server() -> Any:
    with file_server() as running:
        yield running


# -- DB-IP ---------------------------------------------------------------------------------


def test_update_downloads_verifies_and_installs_city_and_asn(server, tmp_path):
    publish_dbip(server, THIS_MONTH, city=city_bytes(tmp_path, "GB"), asn=asn_bytes(tmp_path, 20712, "Andrews & Arnold"))
    data_dir = tmp_path / "data"

    report = update_geoip(settings_for(data_dir, server), today=TODAY).as_dict()

    assert locate(data_dir) == ("GB", 20712)
    assert report["source"] == "dbip"
    assert report["city_path"] == str(data_dir / "geoip" / "city.mmdb")
    assert report["asn_path"] == str(data_dir / "geoip" / "asn.mmdb")
    assert (report["city_type"], report["asn_type"]) == (DBIP_CITY_TYPE, DBIP_ASN_TYPE)
    built = maxminddb.open_database(report["city_path"]).metadata().build_epoch
    assert report["city_build_date"] == datetime.fromtimestamp(built, UTC).date().isoformat()
    assert report["city_url"] == f"{server.base_url}/dbip-city-lite-{THIS_MONTH}.mmdb.gz"
    assert report["city_sha256"] is None  # DB-IP publishes no checksum file
    assert "IP Geolocation by DB-IP" in report["attribution"] and "https://db-ip.com" in report["attribution"]
    assert leftovers(data_dir) == []
    assert oct((data_dir / "geoip" / "city.mmdb").stat().st_mode & 0o777) == "0o644"


def test_last_month_is_used_while_this_month_is_not_published(server, tmp_path):
    publish_dbip(server, LAST_MONTH, city=city_bytes(tmp_path, "DE"), asn=asn_bytes(tmp_path, 3320, "Deutsche Telekom"))
    data_dir = tmp_path / "data"

    report = update_geoip(settings_for(data_dir, server), today=TODAY).as_dict()

    assert locate(data_dir) == ("DE", 3320)
    assert report["city_url"].endswith(f"/dbip-city-lite-{LAST_MONTH}.mmdb.gz")
    assert report["asn_url"].endswith(f"/dbip-asn-lite-{LAST_MONTH}.mmdb.gz")
    assert server.paths() == [
        f"/dbip-city-lite-{THIS_MONTH}.mmdb.gz", f"/dbip-city-lite-{LAST_MONTH}.mmdb.gz",
        f"/dbip-asn-lite-{THIS_MONTH}.mmdb.gz", f"/dbip-asn-lite-{LAST_MONTH}.mmdb.gz",
    ]  # fmt: skip


def test_no_published_month_fails_with_both_urls(server, tmp_path):
    with pytest.raises(GeoipUpdateError) as refused:
        update_geoip(settings_for(tmp_path / "data", server), today=TODAY)
    assert f"dbip-city-lite-{THIS_MONTH}.mmdb.gz and " in str(refused.value)
    assert f"dbip-city-lite-{LAST_MONTH}.mmdb.gz answered 404" in str(refused.value)


def _bad_downloads(tmp: Path) -> dict[str, tuple[dict[str, Any], str]]:
    """What the server publishes this month instead of a good pair, and the refusal's words."""
    good_city, good_asn = city_bytes(tmp, "FR"), asn_bytes(tmp, 3215, "Orange")
    return {
        "not gzip": ({"city": (200, b"<html>maintenance</html>"), "asn": good_asn}, "is not a valid gzip file"),
        "truncated": ({"city": (200, gzip.compress(good_city)[:-200]), "asn": good_asn}, "truncated download"),
        "not a database": ({"city": b"\x00" * 4096, "asn": good_asn}, "is not a valid MaxMind DB file"),
        "ASN file as City": ({"city": good_asn, "asn": good_asn}, "is a 'DBIP-ASN-Lite (compat=GeoLite2-ASN)' database, not a City"),
        "City file as ASN": ({"city": good_city, "asn": good_city}, "is a 'DBIP-City-Lite' database, not an ASN"),
        "ASN type geoip2 cannot read": (
            {"city": good_city, "asn": asn_bytes(tmp, 3215, "Orange", database_type="DBIP-ASN-Lite")},
            "cannot be read as its type claims",
        ),
        "empty database": (
            {"city": (200, gzip.compress(_empty_city(tmp))), "asn": good_asn}, "answered no lookup in its first"
        ),
        "server error": ({"city": good_city, "asn": (503, b"busy")}, "answered HTTP 503"),
    }


def _empty_city(tmp: Path) -> bytes:
    path = tmp / "empty.mmdb"
    write_mmdb(path, DBIP_CITY_TYPE, {})
    return path.read_bytes()


@pytest.mark.parametrize(
    "case", ["not gzip", "truncated", "not a database", "ASN file as City", "City file as ASN",
             "ASN type geoip2 cannot read", "empty database", "server error"],
)  # fmt: skip
def test_a_bad_download_is_refused_and_the_installed_pair_kept(server, tmp_path, case):
    publish_dbip(server, LAST_MONTH, city=city_bytes(tmp_path, "GB"), asn=asn_bytes(tmp_path, 20712, "Andrews & Arnold"))
    data_dir = tmp_path / "data"
    update_geoip(settings_for(data_dir, server), today=TODAY)
    before = installed(data_dir)
    published, message = _bad_downloads(tmp_path)[case]
    publish_dbip(server, THIS_MONTH, **published)

    with pytest.raises(GeoipUpdateError) as refused:
        update_geoip(settings_for(data_dir, server), today=TODAY)

    assert message in str(refused.value)
    assert "\n" not in str(refused.value)
    assert installed(data_dir) == before  # neither file replaced, not even the good one
    assert locate(data_dir) == ("GB", 20712)
    assert leftovers(data_dir) == []


def test_an_unreachable_server_is_a_clear_error(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(GeoipUpdateError) as refused:
        update_geoip(settings_for(tmp_path / "data", closed), today=TODAY)
    assert str(refused.value).startswith(f"could not download {closed}/dbip-city-lite-{THIS_MONTH}.mmdb.gz: ConnectError")


# -- MaxMind ---------------------------------------------------------------------------------


ACCOUNT = MaxMindAccount(account_id="123456", license_key="test-licence-key")


def test_maxmind_geolite2_installs_with_a_matching_checksum_and_basic_auth(server, tmp_path):
    publish_maxmind(server, "GeoLite2-City", city_bytes(tmp_path, "NL", database_type="GeoLite2-City"))
    publish_maxmind(server, "GeoLite2-ASN", asn_bytes(tmp_path, 1136, "KPN", database_type="GeoLite2-ASN"))
    data_dir = tmp_path / "data"

    report = update_geoip(settings_for(data_dir, server), maxmind=ACCOUNT).as_dict()

    assert locate(data_dir) == ("NL", 1136)
    assert (report["source"], report["city_type"], report["asn_type"]) == ("maxmind", "GeoLite2-City", "GeoLite2-ASN")
    archive = server.files["/geoip/databases/GeoLite2-City/download?suffix=tar.gz"]
    assert report["city_sha256"] == hashlib.sha256(archive).hexdigest()
    assert "GeoLite2" in report["attribution"]
    expected_auth = "Basic " + base64.b64encode(b"123456:test-licence-key").decode()
    assert {auth for _, auth in server.requests} == {expected_auth}
    assert all("licen" not in path for path in server.paths())  # the key never travels in a URL
    assert leftovers(data_dir) == []


def test_maxmind_archive_with_the_wrong_checksum_is_refused(server, tmp_path):
    publish_dbip(server, THIS_MONTH, city=city_bytes(tmp_path, "GB"), asn=asn_bytes(tmp_path, 20712, "Andrews & Arnold"))
    data_dir = tmp_path / "data"
    update_geoip(settings_for(data_dir, server), today=TODAY)
    before = installed(data_dir)
    publish_maxmind(server, "GeoLite2-City", city_bytes(tmp_path, "NL", database_type="GeoLite2-City"), checksum="0" * 64)
    publish_maxmind(server, "GeoLite2-ASN", asn_bytes(tmp_path, 1136, "KPN", database_type="GeoLite2-ASN"))

    with pytest.raises(GeoipUpdateError) as refused:
        update_geoip(settings_for(data_dir, server), maxmind=ACCOUNT)

    assert f"but MaxMind published {'0' * 64}" in str(refused.value)
    assert installed(data_dir) == before
    assert leftovers(data_dir) == []


def test_maxmind_refusing_the_key_says_so(server, tmp_path):
    server.files["/geoip/databases/GeoLite2-City/download?suffix=tar.gz.sha256"] = (401, b"Invalid license key")
    with pytest.raises(GeoipUpdateError) as refused:
        update_geoip(settings_for(tmp_path / "data", server), maxmind=ACCOUNT)
    assert "refused the credentials (HTTP 401): check the account ID and license key" in str(refused.value)


def test_a_license_key_needs_its_account_id():
    assert maxmind_account(None, None) is None
    with pytest.raises(UserError) as refused:
        maxmind_account("key", None)
    assert refused.value.field == "account_id"
    assert maxmind_account(" key ", " 42 ") == MaxMindAccount(account_id="42", license_key="key")


# -- settings and reloading ------------------------------------------------------------------


def test_the_server_settings_find_the_downloaded_files(tmp_path, monkeypatch):
    monkeypatch.setenv("PULSEGRAPH_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PULSEGRAPH_GEOIP_CITY_DB", raising=False)
    monkeypatch.delenv("PULSEGRAPH_GEOIP_ASN_DB", raising=False)
    assert (Settings.from_env().geoip_city_db, Settings.from_env().geoip_asn_db) == (None, None)

    (tmp_path / "geoip").mkdir()
    (tmp_path / "geoip" / "city.mmdb").write_bytes(city_bytes(tmp_path, "GB"))
    (tmp_path / "geoip" / "asn.mmdb").write_bytes(asn_bytes(tmp_path, 20712, "Andrews & Arnold"))
    settings = Settings.from_env()
    assert settings.geoip_city_db == str(tmp_path / "geoip" / "city.mmdb")
    assert settings.geoip_asn_db == str(tmp_path / "geoip" / "asn.mmdb")

    monkeypatch.setenv("PULSEGRAPH_GEOIP_CITY_DB", "/srv/geo/GeoIP2-City.mmdb")
    assert Settings.from_env().geoip_city_db == "/srv/geo/GeoIP2-City.mmdb"  # an explicit path wins


def test_a_locator_follows_a_replaced_file_and_ignores_a_corrupt_one(tmp_path):
    path = tmp_path / "city.mmdb"
    path.write_bytes(city_bytes(tmp_path, "GB"))
    geo = GeoLocator(str(path), None)
    try:
        assert geo.lookup(VISITOR_IP).country == "GB"
        assert geo.reload_if_changed() is False

        corrupt = tmp_path / "corrupt.part"
        corrupt.write_bytes(b"\x00" * 4096)
        os.replace(corrupt, path)
        assert geo.reload_if_changed() is False
        assert geo.lookup(VISITOR_IP).country == "GB"  # the old file keeps answering

        fresh = tmp_path / "fresh.part"
        fresh.write_bytes(city_bytes(tmp_path, "FR"))
        os.replace(fresh, path)
        version = geo.version
        assert geo.reload_if_changed() is True
        assert geo.version == version + 1
        assert geo.lookup(VISITOR_IP).country == "FR"
    finally:
        geo.close()


# -- the command and a running server ------------------------------------------------------


def pulsegraph(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def this_and_last_month() -> tuple[str, str]:
    today = datetime.now(UTC).date()
    return today.strftime("%Y-%m"), (today.replace(day=1) - timedelta(days=1)).strftime("%Y-%m")


def cli_env(data_dir: Path, server: FileServer) -> dict[str, str]:
    env = {**os.environ, "PULSEGRAPH_DATA_DIR": str(data_dir), "PULSEGRAPH_GEOIP_DBIP_URL": server.base_url}
    for variable in ("PULSEGRAPH_GEOIP_CITY_DB", "PULSEGRAPH_GEOIP_ASN_DB", "MAXMIND_LICENSE_KEY", "MAXMIND_ACCOUNT_ID"):
        env.pop(variable, None)
    return env


def test_the_command_installs_and_prints_json(server, tmp_path):
    this_month, _ = this_and_last_month()
    publish_dbip(server, this_month, city=city_bytes(tmp_path, "GB"), asn=asn_bytes(tmp_path, 20712, "Andrews & Arnold"))

    done = pulsegraph(cli_env(tmp_path / "data", server), "geoip", "update", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["source"] == "dbip"
    assert report["city_path"] == str((tmp_path / "data" / "geoip" / "city.mmdb").resolve())
    assert report["asn_build_date"] == datetime.now(UTC).date().isoformat()
    assert locate(tmp_path / "data") == ("GB", 20712)


def test_the_command_fails_with_one_line_and_a_nonzero_status(server, tmp_path):
    done = pulsegraph(cli_env(tmp_path / "data", server), "geoip", "update")
    assert done.returncode == 1
    *progress, error = done.stderr.splitlines()
    assert error.startswith("error: geoip update failed, the installed databases were left in place: DB-IP has not")
    assert all(" INFO " in line for line in progress), progress


def test_the_command_wants_the_account_id_with_a_license_key(server, tmp_path):
    env = {**cli_env(tmp_path / "data", server), "MAXMIND_LICENSE_KEY": "test-licence-key"}
    done = pulsegraph(env, "geoip", "update")
    assert done.returncode == 2
    assert "--account-id or MAXMIND_ACCOUNT_ID" in done.stderr
    assert server.requests == []


RECENT_VIEWS = "query($p: ID!) { recentProfileViews(profileId: $p, limit: 10) { eventId country city } }"
CHECK_IP = "query($ip: String!) { checkIp(ip: $ip) { asn country organization } }"


def _track_view(http: httpx.Client, base_url: str, key: str, profile_id: str) -> str:
    event_id = f"geo-{uuid.uuid4().hex}"
    event = {"type": "profile.viewed", "eventId": event_id, "profileId": profile_id, "context": {"ip": VISITOR_IP}}
    response = http.post(f"{base_url}/track", json=event, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200 and response.json()["accepted"] == 1, response.text
    return event_id


def _view(http: httpx.Client, graphql_url: str, token: str, profile_id: str, event_id: str) -> dict[str, Any]:
    """The view once the worker has processed it."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body = http.post(graphql_url, json={"query": RECENT_VIEWS, "variables": {"p": profile_id}},
                         headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
        found = [v for v in body["data"]["recentProfileViews"] if v["eventId"] == event_id]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"view {event_id} never appeared: {body}")


def _check_ip(http: httpx.Client, graphql_url: str, token: str) -> dict[str, Any]:
    body = http.post(graphql_url, json={"query": CHECK_IP, "variables": {"ip": VISITOR_IP}},
                     headers={"Authorization": f"Bearer {token}"}).json()  # fmt: skip
    return body["data"]["checkIp"]


@pytest.mark.usefixtures("server_logs_on_failure")
def test_a_running_server_uses_the_updated_database_without_a_restart(server, tmp_path, database_url):
    this_month, _ = this_and_last_month()
    work_dir = tmp_path / "stack"
    env = cli_env(work_dir / "data", server)
    publish_dbip(server, this_month, city=city_bytes(tmp_path, "DE"), asn=asn_bytes(tmp_path, 64500, "Old Net"))
    assert pulsegraph(env, "geoip", "update").returncode == 0

    stack_database = create_database(database_url, "geo")
    try:
        with running_stack(
            "geoip", database_url=stack_database, broadcast_url="memory://", work_dir=work_dir, in_process_worker=True,
            extra_env={"PULSEGRAPH_GEOIP_DBIP_URL": server.base_url, "PULSEGRAPH_GEOIP_RELOAD_SECONDS": "0.2"},
        ) as stack, httpx.Client(timeout=10, trust_env=False) as http:  # fmt: skip
            tenant = stack.tenant()
            before = _track_view(http, stack.base_url, tenant.ingestion_key, tenant.profile_id)
            assert _view(http, stack.graphql_url, tenant.provider_token, tenant.profile_id, before)["country"] == "DE"
            assert _check_ip(http, stack.graphql_url, tenant.org_admin_token)["asn"] == 64500

            publish_dbip(server, this_month, city=city_bytes(tmp_path, "FR"), asn=asn_bytes(tmp_path, 64501, "New Net"))
            done = pulsegraph(env, "geoip", "update")
            assert done.returncode == 0, done.stderr
            time.sleep(1.0)  # five reload intervals

            after = _track_view(http, stack.base_url, tenant.ingestion_key, tenant.profile_id)  # same visitor IP
            view = _view(http, stack.graphql_url, tenant.provider_token, tenant.profile_id, after)
            assert (view["country"], view["city"]) == ("FR", "Capital of FR")
            assert _check_ip(http, stack.graphql_url, tenant.org_admin_token) == {"asn": 64501, "country": "FR", "organization": "New Net"}
            stack.check_alive()
    finally:
        drop_database(database_url, stack_database)
