"""Gov detection through the real geoip2 reader: small ASN and City .mmdb files are written
at test time with mmdb-writer (IPv4 and IPv6), next to the curated list shipped in
app/data/gov_networks.json and override files written here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from mmdb_writer import MmdbU32

from app.errors import BadInput
from app.services import gov_detection
from app.services.gov_detection import (
    DEFAULT_GOV_THRESHOLD,
    PRIVATE_REASON,
    SIGNAL_ASN_DATABASE,
    SIGNAL_CITY_DATABASE,
    SIGNAL_CURATED_LIST,
    GovDetector,
    GovDetectorConfigError,
    get_detector,
    name_evidence,
)
from app.settings import Settings, get_settings, override_settings
from tests.support.graphql import error_codes, gql
from tests.support.mmdb import write_mmdb
from tests.support.settings import settings_with

# --------------------------------------------------------------------------- test databases

CURATED_ASN_V4 = "130.114.0.0/16"  # AS5927, inside the shipped DNIC-ASBLK-05800-06055 range
CURATED_ASN_V6 = "2001:480::/32"  # AS721, DNIC-ASBLK-00721-00726
BMI_V4 = "141.1.0.0/16"
INTERIEUR_V6 = "2a01:100::/32"
POLICIA_V4 = "83.44.0.0/16"
POLICE_DEPT_V4 = "63.80.0.0/16"
NAVY_MIL_V4 = "140.100.0.0/16"
TELEKOM_V4 = "91.0.0.0/10"
CLOUD_V4 = "52.0.0.0/11"
CLOUD_V6 = "2600:1f00::/24"
FEDEX_V4 = "12.0.0.0/16"
PRIVATE_V4 = "10.0.0.0/8"


def _as(number: int, organization: str) -> dict[str, Any]:
    return {"autonomous_system_number": MmdbU32(number), "autonomous_system_organization": organization}


ASN_RECORDS = {
    CURATED_ASN_V4: _as(5927, "DNIC-ASBLK-05800-06055"),
    CURATED_ASN_V6: _as(721, "DoD Network Information Center"),
    BMI_V4: _as(64601, "Bundesministerium des Innern"),
    INTERIEUR_V6: _as(64602, "Ministère de l'Intérieur"),
    POLICIA_V4: _as(64603, "Policía Nacional"),
    POLICE_DEPT_V4: _as(64604, "Example Police Department"),
    NAVY_MIL_V4: _as(64605, "NAVY.MIL Network Operations"),
    TELEKOM_V4: _as(3320, "Deutsche Telekom AG"),
    CLOUD_V4: _as(16509, "Amazon.com, Inc."),
    CLOUD_V6: _as(16509, "Amazon.com, Inc."),
    FEDEX_V4: _as(64606, "Federal Express Corporation"),
    # Present on purpose: private ranges must never be looked up.
    PRIVATE_V4: _as(64607, "Ministry of Private Addresses"),
}


def _country(iso: str) -> dict[str, Any]:
    return {"continent": {"code": "EU", "names": {"en": "Europe"}}, "country": {"iso_code": iso, "names": {"en": iso}}}


CITY_RECORDS = {
    CURATED_ASN_V4: _country("US"),
    BMI_V4: _country("DE") | {"city": {"names": {"en": "Berlin"}}},
    INTERIEUR_V6: _country("FR"),
    POLICIA_V4: _country("ES"),
    TELEKOM_V4: _country("DE"),
}


@pytest.fixture(scope="module")
def mmdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gov-mmdb")


@pytest.fixture(scope="module")
def asn_db(mmdb_dir: Path) -> str:
    return write_mmdb(mmdb_dir / "GeoLite2-ASN.mmdb", "GeoLite2-ASN", ASN_RECORDS)


@pytest.fixture(scope="module")
def city_db(mmdb_dir: Path) -> str:
    return write_mmdb(mmdb_dir / "GeoLite2-City.mmdb", "GeoLite2-City", CITY_RECORDS)


@pytest.fixture
def detector(city_db: str, asn_db: str) -> Iterator[GovDetector]:
    found = GovDetector(city_db=city_db, asn_db=asn_db)
    yield found
    found.close()


def _write_json(path: Path, document: Any) -> str:
    path.write_text(json.dumps(document))
    return str(path)


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("ip", "asn", "organization", "country", "confidence", "evidence"),
    [
        ("130.114.7.1", 5927, "DNIC-ASBLK-05800-06055", "US", 0.95, "AS5927 is on the curated government list"),
        ("2001:480:10::1", 721, "DoD Network Information Center", "US", 0.95, "AS721 is on the curated government list"),
        ("141.1.2.3", 64601, "Bundesministerium des Innern", "DE", 0.75, "government keyword 'bundesministerium'"),
        ("2a01:100::53", 64602, "Ministère de l'Intérieur", "FR", 0.75, "government keyword 'ministere'"),
        ("83.44.1.1", 64603, "Policía Nacional", "ES", 0.838, "government keyword 'policia'"),
        ("63.80.9.9", 64604, "Example Police Department", None, 0.838, "government keyword 'police'"),
        ("140.100.3.3", 64605, "NAVY.MIL Network Operations", None, 0.8, "government domain 'navy.mil'"),
    ],
)
def test_government_networks_are_detected(
    detector: GovDetector, ip: str, asn: int, organization: str, country: str | None, confidence: float, evidence: str
) -> None:
    check = detector.check_ip(ip)
    assert check.is_government
    assert check.confidence == confidence
    assert (check.asn, check.organization, check.country) == (asn, organization, country)
    assert any(evidence in reason for reason in check.reasons), check.reasons
    assert check.signals == (SIGNAL_ASN_DATABASE, SIGNAL_CITY_DATABASE, SIGNAL_CURATED_LIST)


@pytest.mark.parametrize(
    ("ip", "organization"),
    [
        ("91.10.1.1", "Deutsche Telekom AG"),
        ("52.1.2.3", "Amazon.com, Inc."),
        ("2600:1f00::1", "Amazon.com, Inc."),
        ("12.0.1.1", "Federal Express Corporation"),
    ],
)
def test_isps_and_cloud_providers_are_not_government(detector: GovDetector, ip: str, organization: str) -> None:
    check = detector.check_ip(ip)
    assert not check.is_government
    assert check.organization == organization
    assert check.confidence < 0.2


def test_a_weak_word_in_a_commercial_name_is_halved_and_explained(detector: GovDetector) -> None:
    check = detector.check_ip("12.0.1.1")
    assert check.confidence == 0.175  # "federal" 0.35, halved for "corporation"
    assert any("weak keyword 'federal'" in r for r in check.reasons)
    assert any("looks commercial ('corporation')" in r for r in check.reasons)


def test_confidence_orders_curated_above_keyword_above_nothing(detector: GovDetector) -> None:
    curated = detector.check_ip("130.114.7.1").confidence
    keyword = detector.check_ip("141.1.2.3").confidence
    several_keywords = detector.check_ip("63.80.9.9").confidence
    nothing = detector.check_ip("91.10.1.1").confidence
    assert curated > several_keywords >= keyword > DEFAULT_GOV_THRESHOLD > nothing == 0.0
    assert 0.0 <= nothing and curated <= 1.0


def test_curated_asn_and_network_together_are_stronger_than_either(tmp_path: Path, asn_db: str) -> None:
    override = _write_json(
        tmp_path / "gov.json",
        {"networks": [{"network": CURATED_ASN_V4, "name": "Test DoD site", "country": "US", "source": "test"}]},
    )
    both = GovDetector(asn_db=asn_db, networks_file=override)
    check = both.check_ip("130.114.7.1")
    assert check.confidence > 0.95  # 1 - 0.05 * 0.05
    assert check.reasons[0].startswith("AS5927 is on the curated government list")
    assert check.reasons[1].startswith(f"the address is in {CURATED_ASN_V4}, on the curated government list")
    both.close()


def test_shipped_curated_network_needs_no_database() -> None:
    check = GovDetector().check_ip("214.3.2.1")
    assert check.is_government and check.confidence == 0.95
    assert check.organization == "US Department of Defense" and check.country == "US"
    assert check.asn is None
    assert "214.0.0.0/8" in check.reasons[0] and "IANA IPv4 Address Space Registry" in check.reasons[0]
    assert check.signals == (SIGNAL_CURATED_LIST,)


@pytest.mark.parametrize("ip", ["8.8.8.8", "2606:4700::1111"])
def test_unknown_public_address_is_not_government(detector: GovDetector, ip: str) -> None:
    check = detector.check_ip(ip)
    assert (check.is_government, check.confidence, check.organization, check.asn) == (False, 0.0, None, None)
    assert check.reasons == ("address not found in the ASN database",)


@pytest.mark.parametrize(
    "ip", ["10.1.2.3", "127.0.0.1", "192.168.1.1", "172.16.0.1", "100.64.0.1", "169.254.1.1", "::1", "fe80::1", "fd00::1", "::ffff:10.0.0.1", "2001:db8::1"]
)
def test_private_and_reserved_addresses_are_never_looked_up(detector: GovDetector, ip: str) -> None:
    check = detector.check_ip(ip)
    assert (check.is_government, check.confidence, check.organization, check.asn) == (False, 0.0, None, None)
    assert check.reasons == (PRIVATE_REASON,)


def test_ipv4_mapped_ipv6_is_checked_as_ipv4(detector: GovDetector) -> None:
    check = detector.check_ip("::ffff:141.1.2.3")
    assert check.ip == "141.1.2.3" and check.is_government


@pytest.mark.parametrize("ip", ["not-an-ip", "", "   ", "1.2.3.4/24", "999.1.1.1", "1.2.3.4:80", "1" * 1000])
def test_invalid_ip_is_bad_input_on_the_ip_field(detector: GovDetector, ip: str) -> None:
    with pytest.raises(BadInput) as raised:
        detector.check_ip(ip)
    assert raised.value.field == "ip"


@hypothesis_settings(database=None, deadline=None, max_examples=200)
@given(st.one_of(st.text(max_size=80), st.ip_addresses().map(str)))
def test_check_ip_only_ever_refuses_with_bad_input(city_db: str, asn_db: str, ip: str) -> None:
    detector = get_detector(settings_with(get_settings(), geoip_city_db=city_db, geoip_asn_db=asn_db))
    try:
        check = detector.check_ip(ip)
    except BadInput:
        return
    assert 0.0 <= check.confidence <= 1.0
    assert check.is_government == (check.confidence >= DEFAULT_GOV_THRESHOLD)


def test_results_are_cached_per_normalized_address(detector: GovDetector) -> None:
    first = detector.check_ip("141.1.2.3")
    hits = detector.cache_info().hits
    assert detector.check_ip(" 141.1.2.3\n") is first
    assert detector.check_ip("::ffff:141.1.2.3") is first
    assert detector.cache_info().hits == hits + 2
    assert detector.cache_info().currsize >= 1


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("organization", "keyword"),
    [
        ("Bundespolizei", "bundespolizei"),
        ("Landesregierung Nordrhein-Westfalen", "landesregierung"),
        ("Bundesamt fuer Sicherheit in der Informationstechnik", "bundesamt"),
        ("Ministero dell'Interno", "ministero"),
        ("Polizia di Stato", "polizia"),
        ("Ministério da Defesa", "ministerio"),
        ("Politie Nederland", "politie"),
        ("Ministerie van Defensie", "ministerie"),
        ("Komenda Glowna Policji", "policji"),
        ("Gendarmerie nationale", "gendarmerie"),
        ("Guardia Civil", "guardia civil"),
        ("Ministry of Justice", "ministry"),
        ("Министерство внутренних дел", "министерство"),
    ],
)
def test_keywords_in_several_languages(organization: str, keyword: str) -> None:
    assert keyword in name_evidence(organization).keywords


@pytest.mark.parametrize(
    ("organization", "domain"),
    [
        ("Home Office (homeoffice.gov.uk)", "homeoffice.gov.uk"),
        ("interieur.gouv.fr", "interieur.gouv.fr"),
        ("ITZBund bund.de", "bund.de"),
        ("Metropolitan Police met.police.uk", "met.police.uk"),
        ("army.mil", "army.mil"),
        ("SSA.GOV", "ssa.gov"),
        ("Mapa gob.es", "gob.es"),
    ],
)
def test_government_domains(organization: str, domain: str) -> None:
    assert name_evidence(organization).domains == (domain,)


@pytest.mark.parametrize(
    "organization",
    ["Policyholder Services Ltd", "Governor Networks", "Armyworm Research", "Defenders Inc", "Mil-Tech", "Governance Partners", "Amtrak"],
)
def test_word_boundaries_keep_lookalikes_out(organization: str) -> None:
    evidence = name_evidence(organization)
    assert evidence.keywords == () and evidence.domains == ()


# --------------------------------------------------------------------------- degradation


def test_without_asn_database_only_the_available_signals_count(city_db: str) -> None:
    detector = GovDetector(city_db=city_db)
    assert detector.signals == (SIGNAL_CITY_DATABASE, SIGNAL_CURATED_LIST)
    ministry = detector.check_ip("141.1.2.3")
    assert (ministry.is_government, ministry.confidence, ministry.organization, ministry.country) == (False, 0.0, None, "DE")
    assert ministry.reasons == ("no ASN database configured: the network's organization was not checked",)
    assert ministry.signals == (SIGNAL_CITY_DATABASE, SIGNAL_CURATED_LIST)
    assert detector.check_ip("55.1.1.1").is_government  # the curated networks need no database
    detector.close()


def test_without_city_database_there_is_no_country(asn_db: str) -> None:
    detector = GovDetector(asn_db=asn_db)
    assert detector.signals == (SIGNAL_ASN_DATABASE, SIGNAL_CURATED_LIST)
    check = detector.check_ip("141.1.2.3")
    assert check.is_government and check.country is None
    detector.close()


def test_without_anything_nothing_is_government(tmp_path: Path) -> None:
    empty = _write_json(tmp_path / "empty.json", {"mode": "replace", "asns": [], "networks": []})
    detector = GovDetector(networks_file=empty)
    assert detector.signals == ()
    check = detector.check_ip("55.1.1.1")
    assert (check.is_government, check.confidence, check.signals) == (False, 0.0, ())


# --------------------------------------------------------------------------- configuration


def test_missing_database_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(GovDetectorConfigError, match=r"PULSEGRAPH_GEOIP_ASN_DB '.*missing\.mmdb' does not exist"):
        GovDetector(asn_db=str(tmp_path / "missing.mmdb"))
    with pytest.raises(GovDetectorConfigError, match=r"PULSEGRAPH_GEOIP_CITY_DB '.*missing\.mmdb' does not exist"):
        GovDetector(city_db=str(tmp_path / "missing.mmdb"))


def test_corrupt_database_file_fails_at_construction(tmp_path: Path, asn_db: str) -> None:
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"\x00\x01not a maxmind database" * 100)
    with pytest.raises(GovDetectorConfigError, match="PULSEGRAPH_GEOIP_ASN_DB .* is not a valid MaxMind database"):
        GovDetector(asn_db=str(garbage))
    truncated = tmp_path / "truncated.mmdb"
    truncated.write_bytes(Path(asn_db).read_bytes()[:200])
    with pytest.raises(GovDetectorConfigError, match="is not a valid MaxMind database"):
        GovDetector(asn_db=str(truncated))
    empty = tmp_path / "empty.mmdb"
    empty.write_bytes(b"")
    with pytest.raises(GovDetectorConfigError, match="PULSEGRAPH_GEOIP_CITY_DB"):
        GovDetector(city_db=str(empty))


def test_wrong_database_type_fails_at_construction(city_db: str, asn_db: str) -> None:
    with pytest.raises(GovDetectorConfigError, match="PULSEGRAPH_GEOIP_ASN_DB .*GeoLite2-City"):
        GovDetector(asn_db=city_db)
    with pytest.raises(GovDetectorConfigError, match="PULSEGRAPH_GEOIP_CITY_DB .*GeoLite2-ASN"):
        GovDetector(city_db=asn_db)


def test_override_file_is_merged_over_the_shipped_list(tmp_path: Path) -> None:
    override = _write_json(
        tmp_path / "gov.json",
        {
            "asns": [{"asn": 64601, "name": "BMI", "country": "DE", "category": "government", "source": "test"}],
            "networks": [
                {"network": "2a02:c00::/32", "name": "Test Police", "country": "NL", "category": "law-enforcement", "source": "test RIPE DB"},
                {"network": "55.0.0.0/8", "name": "Renamed DoD", "source": "test"},
            ],
        },
    )
    detector = GovDetector(networks_file=override)
    v6 = detector.check_ip("2a02:c00::1")
    assert v6.is_government and v6.organization == "Test Police" and v6.country == "NL"
    assert "law-enforcement; source: test RIPE DB" in v6.reasons[0]
    assert detector.check_ip("55.1.1.1").organization == "Renamed DoD"  # same network: the override wins
    assert detector.check_ip("214.1.1.1").is_government  # the rest of the shipped list stays


def test_override_file_in_replace_mode_replaces_the_shipped_list(tmp_path: Path) -> None:
    override = _write_json(
        tmp_path / "gov.json",
        {"mode": "replace", "networks": [{"network": "198.18.0.0/15", "name": "x", "source": "y"}, {"network": "5.5.5.0/24", "name": "Only", "source": "test"}]},
    )
    detector = GovDetector(networks_file=override)
    assert not detector.check_ip("214.1.1.1").is_government
    assert detector.check_ip("5.5.5.5").organization == "Only"


def test_most_specific_curated_network_wins(tmp_path: Path) -> None:
    override = _write_json(
        tmp_path / "gov.json", {"networks": [{"network": "55.66.0.0/16", "name": "Specific", "source": "test"}]}
    )
    assert GovDetector(networks_file=override).check_ip("55.66.1.1").organization == "Specific"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"networks": [{"network": "55.0.0.0/8", "name": "No source"}]}, r"networks\[0\]: needs a non-empty 'source'"),
        ({"networks": [{"network": "not-a-network", "name": "x", "source": "y"}]}, "is not a CIDR network"),
        ({"asns": [{"asn": "721", "name": "x", "source": "y"}]}, "an AS number must be an integer"),
        ({"asns": [{"asn_range": [10, 1], "name": "x", "source": "y"}]}, "is above last"),
        ({"mode": "append"}, "'mode' must be 'merge' or 'replace'"),
        ([], "expected a JSON object"),
    ],
)
def test_invalid_override_file_fails_at_construction(tmp_path: Path, document: Any, message: str) -> None:
    path = _write_json(tmp_path / "gov.json", document)
    with pytest.raises(GovDetectorConfigError, match=message) as raised:
        GovDetector(networks_file=path)
    assert "PULSEGRAPH_GOV_NETWORKS_FILE" in str(raised.value)


def test_unreadable_override_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(GovDetectorConfigError, match="PULSEGRAPH_GOV_NETWORKS_FILE .* cannot be read"):
        GovDetector(networks_file=str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(GovDetectorConfigError, match="not valid JSON"):
        GovDetector(networks_file=str(broken))


def test_shipped_list_entries_all_name_their_source() -> None:
    from importlib import resources

    document = json.loads(resources.files("app").joinpath("data", "gov_networks.json").read_text())
    entries = document["asns"] + document["networks"]
    assert entries and all(entry["source"].strip() and entry["name"].strip() for entry in entries)


def test_detector_is_built_once_per_settings(settings: Settings, asn_db: str) -> None:
    assert get_detector(settings) is get_detector(settings)
    with_asn = settings_with(settings, geoip_asn_db=asn_db)
    assert get_detector(with_asn) is not get_detector(settings)
    assert get_detector(with_asn).signals == (SIGNAL_ASN_DATABASE, SIGNAL_CURATED_LIST)


def test_a_failed_build_is_not_cached(settings: Settings, tmp_path: Path) -> None:
    broken = settings_with(settings, geoip_asn_db=str(tmp_path / "missing.mmdb"))
    for _ in range(2):
        with pytest.raises(GovDetectorConfigError, match="does not exist"):
            get_detector(broken)


# --------------------------------------------------------------------------- GraphQL

CHECK_IP = "query($ip: String!) { checkIp(ip: $ip) { ip isGovernment confidence organization asn country reasons signals } }"


async def test_check_ip_with_the_shipped_list_only(client, tenant) -> None:
    """The app under test has no GeoIP databases: a curated network is still detected."""
    body = await gql(client, CHECK_IP, {"ip": "55.1.2.3"}, token=tenant.provider_token)
    assert body.get("errors") is None, body
    check = body["data"]["checkIp"]
    assert check["isGovernment"] is True and check["confidence"] == 0.95
    assert check["organization"] == "DoD Network Information Center" and check["asn"] is None
    assert check["signals"] == [SIGNAL_CURATED_LIST]
    assert "55.0.0.0/8" in check["reasons"][0]

    private = await gql(client, CHECK_IP, {"ip": "192.168.0.10"}, token=tenant.provider_token)
    assert private["data"]["checkIp"]["reasons"] == [PRIVATE_REASON]


@pytest.mark.parametrize("role", ["org_admin_token", "admin_token"])
async def test_check_ip_is_open_to_every_reader(client, tenant, role: str) -> None:
    body = await gql(client, CHECK_IP, {"ip": "214.0.0.1"}, token=getattr(tenant, role))
    assert body["data"]["checkIp"]["isGovernment"] is True


async def test_check_ip_needs_a_reader(client, tenant) -> None:
    assert error_codes(await gql(client, CHECK_IP, {"ip": "55.1.2.3"})) == ["UNAUTHENTICATED"]
    assert error_codes(await gql(client, CHECK_IP, {"ip": "not-an-ip"})) == ["UNAUTHENTICATED"]
    assert error_codes(await gql(client, CHECK_IP, {"ip": "55.1.2.3"}, token=tenant.ingestion_key)) == ["FORBIDDEN"]


async def test_check_ip_refuses_what_is_not_an_address(client, tenant) -> None:
    body = await gql(client, CHECK_IP, {"ip": "not-an-ip"}, token=tenant.provider_token)
    assert body["data"] is None
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "ip"


@pytest.fixture
def settings_with_geoip(settings: Settings, city_db: str, asn_db: str) -> Iterator[Settings]:
    configured = settings_with(settings, geoip_city_db=city_db, geoip_asn_db=asn_db)
    override_settings(configured)
    try:
        yield configured
    finally:
        override_settings(settings)


async def test_check_ip_through_graphql_with_geoip_databases(client, tenant, settings_with_geoip: Settings) -> None:
    body = await gql(client, CHECK_IP, {"ip": "2a01:100::53"}, token=tenant.provider_token)
    assert body.get("errors") is None, body
    check = body["data"]["checkIp"]
    assert check == {
        "ip": "2a01:100::53",
        "isGovernment": True,
        "confidence": 0.75,
        "organization": "Ministère de l'Intérieur",
        "asn": 64602,
        "country": "FR",
        "reasons": ["organization \"Ministère de l'Intérieur\" contains the government keyword 'ministere'"],
        "signals": [SIGNAL_ASN_DATABASE, SIGNAL_CITY_DATABASE, SIGNAL_CURATED_LIST],
    }
    isp = await gql(client, CHECK_IP, {"ip": "91.10.1.1"}, token=tenant.provider_token)
    assert isp["data"]["checkIp"]["isGovernment"] is False


def test_gov_detection_module_keeps_the_threshold_of_issue_6() -> None:
    assert gov_detection.DEFAULT_GOV_THRESHOLD == 0.7
