"""Enrichment is pure, so these tests run on real inputs: current browser user agents,
real .mmdb files written at test time (read back through geoip2's own Reader), and
arbitrary text from Hypothesis for the never-raise promises ingestion relies on."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mmdb_writer import MmdbU32

from app.services.enrichment import (
    Attribution,
    Device,
    Geo,
    GeoLocator,
    normalize_ip,
    parse_attribution,
    parse_user_agent,
    salt_day,
    visitor_id,
)
from tests.support.mmdb import write_mmdb

# Hypothesis' example database would be written into the repo; these tests don't need it.
PROPERTY = settings(database=None, deadline=None, max_examples=300)

# Text that includes lone surrogates, which JSON decoders can hand us and which
# C/Rust extensions refuse to encode.
HOSTILE_TEXT = st.text(
    alphabet=st.one_of(st.characters(), st.sampled_from(["\ud800", "\udfff", "\x00", "%", "[", "]"])),
    max_size=300,
)


# --------------------------------------------------------------------------- user agents

CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
EDGE_WINDOWS = CHROME_WINDOWS + " Edg/131.0.0.0"
CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
CHROME_OS = (
    "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
SAFARI_IPAD = (
    "Mozilla/5.0 (iPad; CPU OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1"
)
CHROME_ANDROID_PHONE = (
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36"
)
SAMSUNG_PHONE = (
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36"
)
ANDROID_TABLET = (  # Galaxy Tab S9: Chrome drops "Mobile" on tablets
    "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
ANDROID_TABLET_REDUCED = (  # Chrome's reduced UA hides the model; only "Mobile" is left to tell
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
FIREFOX_ANDROID_TABLET = "Mozilla/5.0 (Android 14; Tablet; rv:133.0) Gecko/133.0 Firefox/133.0"
KINDLE_FIRE = (
    "Mozilla/5.0 (Linux; Android 11; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Silk/131.3.1 like Chrome/131.0.6778.135 Safari/537.36"
)
FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
GOOGLEBOT_SMARTPHONE = (
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.6778.108 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
)
GPTBOT = (
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; "
    "+https://openai.com/gptbot)"
)
HEADLESS_CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/131.0.0.0 Safari/537.36"
)
SAMSUNG_TV = (
    "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) "
    "SamsungBrowser/4.0 Chrome/76.0.3809.146 TV Safari/537.36"
)
ANDROID_TV = (  # no "Mobile", yet not a tablet
    "Mozilla/5.0 (Linux; Android 9; BRAVIA 4K UR2 Build/PTT1.190515.001.S52) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("ua", "browser", "os", "device_type"),
    [
        (CHROME_WINDOWS, "Chrome", "Windows", "desktop"),
        (EDGE_WINDOWS, "Edge", "Windows", "desktop"),
        (CHROME_MAC, "Chrome", "Mac OS X", "desktop"),
        (CHROME_OS, "Chrome", "Chrome OS", "desktop"),
        (FIREFOX_LINUX, "Firefox", "Linux", "desktop"),
        (SAFARI_IPHONE, "Mobile Safari", "iOS", "mobile"),
        (CHROME_ANDROID_PHONE, "Chrome Mobile", "Android", "mobile"),
        (SAMSUNG_PHONE, "Samsung Internet", "Android", "mobile"),
        (SAFARI_IPAD, "Mobile Safari", "iOS", "tablet"),
        (ANDROID_TABLET, "Chrome", "Android", "tablet"),
        (ANDROID_TABLET_REDUCED, "Chrome", "Android", "tablet"),
        (FIREFOX_ANDROID_TABLET, "Firefox Mobile", "Android", "tablet"),
        (KINDLE_FIRE, "Amazon Silk", "Android", "tablet"),
        (SAMSUNG_TV, "Samsung Internet", "Tizen", "other"),
        (ANDROID_TV, "Chrome", "Android", "other"),
    ],
)
def test_browsers_are_classified(ua: str, browser: str, os: str, device_type: str) -> None:
    assert parse_user_agent(ua) == Device(device_type=device_type, browser=browser, os=os, is_bot=False)


@pytest.mark.parametrize(
    ("ua", "browser"),
    [
        (GOOGLEBOT, "Googlebot"),
        (GOOGLEBOT_SMARTPHONE, "Googlebot"),  # a crawler dressed as an Android phone
        (GPTBOT, "GPTBot"),
        ("curl/8.5.0", "curl"),
        ("Wget/1.21.4", "Wget"),
        ("python-requests/2.32.3", "Python Requests"),
        (HEADLESS_CHROME, "HeadlessChrome"),
    ],
)
def test_crawlers_and_scripts_are_bots(ua: str, browser: str) -> None:
    device = parse_user_agent(ua)
    assert device.device_type == "bot"
    assert device.is_bot
    assert device.browser == browser


def test_android_app_http_client_is_not_a_bot() -> None:
    # Native Android SDKs send real users' events with okhttp.
    assert not parse_user_agent("okhttp/4.12.0").is_bot


@pytest.mark.parametrize("ua", [None, "", "   ", "\t\n"])
def test_missing_user_agent_is_other(ua: str | None) -> None:
    assert parse_user_agent(ua) == Device(device_type="other", browser=None, os=None, is_bot=False)


def test_unrecognised_user_agent_is_other_not_bot() -> None:
    assert parse_user_agent("asdf qwerty") == Device(device_type="other", browser=None, os=None, is_bot=False)


def test_user_agent_is_trimmed_and_cached() -> None:
    first = parse_user_agent(CHROME_WINDOWS)
    assert parse_user_agent(f"  {CHROME_WINDOWS}\n") is first


def test_huge_user_agent_is_capped() -> None:
    device = parse_user_agent(CHROME_WINDOWS + " x" * 100_000)
    assert device.browser == "Chrome"


@PROPERTY
@given(HOSTILE_TEXT)
def test_parse_user_agent_never_raises(ua: str) -> None:
    device = parse_user_agent(ua)
    assert device.device_type in {"desktop", "mobile", "tablet", "bot", "other"}
    assert device.is_bot == (device.device_type == "bot")


@PROPERTY
@given(st.sampled_from([CHROME_WINDOWS, SAFARI_IPHONE, SAFARI_IPAD, GOOGLEBOT]), HOSTILE_TEXT)
def test_parse_user_agent_never_raises_on_mangled_real_agents(ua: str, noise: str) -> None:
    parse_user_agent(ua[: len(ua) // 2] + noise + ua[len(ua) // 2 :])


# --------------------------------------------------------------------------- IPs


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("81.2.69.160", "81.2.69.160"),
        (" 81.2.69.160\n", "81.2.69.160"),
        ("2001:4860:0000:0000:0000:0000:0000:8888", "2001:4860::8888"),
        ("2001:4860::8888", "2001:4860::8888"),
        ("2001:4860::ABCD", "2001:4860::abcd"),
        ("::ffff:81.2.69.160", "81.2.69.160"),
        ("::ffff:5102:45a0", "81.2.69.160"),
        ("::1", "::1"),
        (None, None),
        ("", None),
        ("   ", None),
        ("not-an-ip", None),
        ("256.1.1.1", None),
        ("1.2.3", None),
        ("081.2.69.160", None),  # leading zeros are ambiguous (octal), so rejected
        ("81.2.69.160:443", None),
        ("[2001:4860::8888]", None),
        ("2001:4860::8888::1", None),
    ],
)
def test_normalize_ip(raw: str | None, expected: str | None) -> None:
    assert normalize_ip(raw) == expected


@PROPERTY
@given(HOSTILE_TEXT)
def test_normalize_ip_never_raises_and_is_idempotent(raw: str) -> None:
    normalized = normalize_ip(raw)
    if normalized is not None:
        ipaddress.ip_address(normalized)
        assert normalize_ip(normalized) == normalized


@PROPERTY
@given(st.ip_addresses())
def test_normalize_ip_accepts_every_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    normalized = normalize_ip(str(address))
    assert normalized is not None
    mapped = getattr(address, "ipv4_mapped", None)
    assert ipaddress.ip_address(normalized) == (mapped or address)


# --------------------------------------------------------------------------- GeoIP

LONDON_V4 = "81.2.69.0/24"
MOUNTAIN_VIEW_V6 = "2001:4860::/32"
PRIVATE_V4 = "10.0.0.0/8"


def _place(country: str, subdivisions: list[dict[str, Any]], city: str) -> dict[str, Any]:
    """Shaped like a GeoLite2-City record, which geoip2.models.City is built from."""
    return {
        "continent": {"code": "EU", "names": {"en": "Europe"}},
        "country": {"iso_code": country, "names": {"en": country}},
        "subdivisions": subdivisions,
        "city": {"names": {"en": city}},
    }


CITY_RECORDS = {
    LONDON_V4: _place("GB", [{"iso_code": "ENG", "names": {"en": "England"}}], "London"),
    MOUNTAIN_VIEW_V6: _place(
        "US",
        [{"iso_code": "CA", "names": {"en": "California"}}, {"names": {"en": "Santa Clara County"}}],
        "Mountain View",
    ),
    # Present in the file on purpose: private ranges must not be looked up at all.
    PRIVATE_V4: _place("ZZ", [], "Nowhere"),
}
ASN_RECORDS = {
    LONDON_V4: {"autonomous_system_number": MmdbU32(20712), "autonomous_system_organization": "Andrews & Arnold Ltd"},
    MOUNTAIN_VIEW_V6: {"autonomous_system_number": MmdbU32(15169), "autonomous_system_organization": "GOOGLE"},
}


@pytest.fixture(scope="module")
def mmdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mmdb")


@pytest.fixture(scope="module")
def city_db(mmdb_dir: Path) -> str:
    return write_mmdb(mmdb_dir / "GeoLite2-City.mmdb", "GeoLite2-City", CITY_RECORDS)


@pytest.fixture(scope="module")
def asn_db(mmdb_dir: Path) -> str:
    return write_mmdb(mmdb_dir / "GeoLite2-ASN.mmdb", "GeoLite2-ASN", ASN_RECORDS)


@pytest.fixture
def locator(city_db: str, asn_db: str) -> Iterator[GeoLocator]:
    geo = GeoLocator(city_db, asn_db)
    yield geo
    geo.close()


EMPTY_GEO = Geo(country=None, region=None, city=None, asn=None, as_org=None)


def test_ipv4_lookup(locator: GeoLocator) -> None:
    assert locator.enabled
    assert locator.lookup("81.2.69.160") == Geo(
        country="GB", region="ENG", city="London", asn=20712, as_org="Andrews & Arnold Ltd"
    )


def test_ipv6_lookup_uses_most_specific_subdivision(locator: GeoLocator) -> None:
    # The county has no ISO code, so its name stands in.
    assert locator.lookup("2001:4860:4860::8888") == Geo(
        country="US", region="Santa Clara County", city="Mountain View", asn=15169, as_org="GOOGLE"
    )


def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4(locator: GeoLocator) -> None:
    assert locator.lookup("::ffff:81.2.69.160").country == "GB"


def test_repeated_lookups_are_cached(locator: GeoLocator) -> None:
    assert locator.lookup("81.2.69.1") is locator.lookup(" 81.2.69.1 ")


@pytest.mark.parametrize("ip", ["8.8.8.8", "2a00:1450:4001::1"])
def test_unknown_public_ip_gives_empty_geo(locator: GeoLocator, ip: str) -> None:
    assert locator.lookup(ip) == EMPTY_GEO


@pytest.mark.parametrize("ip", ["10.1.2.3", "127.0.0.1", "192.168.1.1", "100.64.0.1", "::1", "fe80::1", "fd00::1"])
def test_private_ip_gives_empty_geo(locator: GeoLocator, ip: str) -> None:
    assert locator.lookup(ip) == EMPTY_GEO


@pytest.mark.parametrize("ip", [None, "", "garbage", "999.1.1.1", "1.2.3.4/24", "\ud800", "fe80::1%eth0"])
def test_garbage_ip_does_not_raise(locator: GeoLocator, ip: str | None) -> None:
    assert locator.lookup(ip) == EMPTY_GEO


def test_only_asn_database(asn_db: str) -> None:
    geo = GeoLocator(None, asn_db)
    assert geo.lookup("81.2.69.160") == Geo(country=None, region=None, city=None, asn=20712, as_org="Andrews & Arnold Ltd")
    geo.close()


def test_country_database_is_accepted(mmdb_dir: Path) -> None:
    path = write_mmdb(
        mmdb_dir / "GeoLite2-Country.mmdb",
        "GeoLite2-Country",
        {LONDON_V4: {"country": {"iso_code": "GB", "names": {"en": "United Kingdom"}}}},
    )
    geo = GeoLocator(path, None)
    assert geo.lookup("81.2.69.160") == Geo(country="GB", region=None, city=None, asn=None, as_org=None)
    geo.close()


def test_ipv6_address_in_ipv4_only_database_is_a_miss(mmdb_dir: Path) -> None:
    path = write_mmdb(mmdb_dir / "v4-only.mmdb", "GeoLite2-City", {LONDON_V4: CITY_RECORDS[LONDON_V4]}, ip_version=4)
    geo = GeoLocator(path, None)
    assert geo.lookup("81.2.69.160").city == "London"
    assert geo.lookup("2001:4860::1") == EMPTY_GEO
    geo.close()


def test_wrong_database_type_fails_at_start_up(city_db: str, asn_db: str) -> None:
    with pytest.raises(ValueError, match="GeoLite2-ASN"):
        GeoLocator(asn_db, None)
    with pytest.raises(ValueError, match="GeoLite2-City"):
        GeoLocator(None, city_db)


def test_missing_database_file_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        GeoLocator(str(tmp_path / "missing.mmdb"), None)


def test_disabled_locator() -> None:
    geo = GeoLocator(None, None)
    assert not geo.enabled
    assert geo.lookup("81.2.69.160") == EMPTY_GEO
    geo.close()


def test_closed_locator_returns_empty_geo(city_db: str, asn_db: str) -> None:
    geo = GeoLocator(city_db, asn_db)
    assert geo.lookup("81.2.69.160").country == "GB"
    geo.close()
    assert not geo.enabled
    assert geo.lookup("81.2.69.160") == EMPTY_GEO
    geo.close()  # idempotent


@PROPERTY
@given(st.one_of(HOSTILE_TEXT, st.ip_addresses().map(str)))
def test_lookup_never_raises(city_db: str, asn_db: str, ip: str) -> None:
    geo = GeoLocator(city_db, asn_db)
    try:
        assert isinstance(geo.lookup(ip), Geo)
    finally:
        geo.close()


# --------------------------------------------------------------------------- attribution

LANDING = (
    "https://shop.example.com/products/42?utm_source=Newsletter&utm_medium=email"
    "&utm_campaign=spring%20sale&utm_term=red+shoes&utm_content=hero&ref=x"
)


def test_utm_from_url() -> None:
    attribution = parse_attribution(url=LANDING, referrer=None)
    assert attribution == Attribution(
        url=LANDING,
        referrer=None,
        referrer_domain=None,
        utm_source="Newsletter",
        utm_medium="email",
        utm_campaign="spring sale",
        utm_term="red shoes",
        utm_content="hero",
    )


def test_explicit_utm_overrides_url_per_field() -> None:
    attribution = parse_attribution(
        url=LANDING,
        referrer=None,
        utm={"source": "partner", "utm_campaign": "launch", "medium": "   ", "term": None},
    )
    assert attribution.utm_source == "partner"
    assert attribution.utm_campaign == "launch"  # "utm_" prefixed keys are accepted too
    assert attribution.utm_medium == "email"  # blank explicit value falls back to the URL
    assert attribution.utm_term == "red shoes"
    assert attribution.utm_content == "hero"


def test_explicit_utm_without_url() -> None:
    attribution = parse_attribution(url=None, referrer=None, utm={"source": " google ", "medium": "cpc"})
    assert (attribution.utm_source, attribution.utm_medium, attribution.utm_campaign) == ("google", "cpc", None)


def test_utm_values_are_trimmed_emptied_and_truncated() -> None:
    url = "https://example.com/?utm_source=%20%20&utm_medium=+email+&utm_campaign=" + "c" * 1000
    attribution = parse_attribution(url=url, referrer=None)
    assert attribution.utm_source is None
    assert attribution.utm_medium == "email"
    assert attribution.utm_campaign == "c" * 256


def test_repeated_utm_parameter_first_wins() -> None:
    attribution = parse_attribution(url="https://example.com/?utm_source=a&utm_source=b", referrer=None)
    assert attribution.utm_source == "a"


def test_utm_parameter_names_are_case_insensitive() -> None:
    attribution = parse_attribution(url="https://example.com/?UTM_Source=mail", referrer=None)
    assert attribution.utm_source == "mail"


def test_referrer_does_not_invent_a_source() -> None:
    attribution = parse_attribution(url="https://shop.example.com/", referrer="https://www.google.com/")
    assert attribution.referrer_domain == "google.com"
    assert attribution.utm_source is None


@pytest.mark.parametrize(
    ("referrer", "domain"),
    [
        ("https://www.google.com/search?q=shoes", "google.com"),
        ("https://WWW.Google.COM/", "google.com"),
        ("https://news.ycombinator.com./item?id=1", "news.ycombinator.com"),
        ("http://example.org:8443/a", "example.org"),
        ("https://user:pass@forum.example.net/t/1", "forum.example.net"),
        ("android-app://com.google.android.gm/", "com.google.android.gm"),
        ("https://wwwfoo.com/", "wwwfoo.com"),
        ("https://blog.shop.example.com/post", "blog.shop.example.com"),  # a subdomain is another site
    ],
)
def test_referrer_domain_is_normalised(referrer: str, domain: str) -> None:
    attribution = parse_attribution(url="https://shop.example.com/", referrer=referrer)
    assert attribution.referrer_domain == domain
    assert attribution.referrer == referrer


@pytest.mark.parametrize(
    ("url", "referrer"),
    [
        ("https://shop.example.com/b", "https://shop.example.com/a"),
        ("https://www.shop.example.com/b", "https://shop.example.com/a"),
        ("https://shop.example.com/b", "http://WWW.SHOP.example.com:8080/a"),
    ],
)
def test_internal_referrer_has_no_domain(url: str, referrer: str) -> None:
    attribution = parse_attribution(url=url, referrer=referrer)
    assert attribution.referrer_domain is None
    assert attribution.referrer == referrer  # the raw referrer is still kept


@pytest.mark.parametrize("referrer", [None, "", "   ", "not a url", "/relative/path", "http://[::1", "https://"])
def test_empty_or_unparsable_referrer_has_no_domain(referrer: str | None) -> None:
    assert parse_attribution(url="https://shop.example.com/", referrer=referrer).referrer_domain is None


def test_unparsable_url_still_gives_referrer_domain() -> None:
    attribution = parse_attribution(url="http://[broken/?utm_source=x", referrer="https://google.com/")
    assert attribution.referrer_domain == "google.com"
    assert attribution.utm_source is None


def test_url_and_referrer_are_truncated() -> None:
    long_url = "https://example.com/?q=" + "a" * 5000
    attribution = parse_attribution(url=long_url, referrer=long_url)
    assert attribution.url == long_url[:2048]
    assert attribution.referrer == long_url[:2048]


def test_blank_url_and_referrer_are_none() -> None:
    attribution = parse_attribution(url="  ", referrer="")
    assert (attribution.url, attribution.referrer, attribution.referrer_domain) == (None, None, None)


def _url_like() -> st.SearchStrategy[str]:
    return st.builds(
        lambda scheme, host, path, query: f"{scheme}://{host}/{path}?{query}",
        st.sampled_from(["http", "https", "android-app", ""]),
        HOSTILE_TEXT,
        HOSTILE_TEXT,
        HOSTILE_TEXT,
    )


@PROPERTY
@given(
    url=st.one_of(st.none(), HOSTILE_TEXT, _url_like()),
    referrer=st.one_of(st.none(), HOSTILE_TEXT, _url_like()),
    utm=st.one_of(st.none(), st.dictionaries(HOSTILE_TEXT, st.one_of(st.none(), HOSTILE_TEXT), max_size=6)),
)
def test_parse_attribution_never_raises(url: str | None, referrer: str | None, utm: dict[str, str | None] | None) -> None:
    attribution = parse_attribution(url=url, referrer=referrer, utm=utm)
    for value in (attribution.url, attribution.referrer):
        assert value is None or 0 < len(value) <= 2048
    for value in (
        attribution.utm_source,
        attribution.utm_medium,
        attribution.utm_campaign,
        attribution.utm_term,
        attribution.utm_content,
    ):
        assert value is None or (0 < len(value) <= 256 and value == value.strip())
    assert attribution.referrer_domain is None or not attribution.referrer_domain.startswith("www.")


# --------------------------------------------------------------------------- visitors

SALT = b"s" * 32
ORG = "7b2f5c7e-0000-4000-8000-000000000001"


def _hash(**overrides: Any) -> str | None:
    arguments: dict[str, Any] = {
        "organization_id": ORG,
        "user_id": None,
        "anonymous_id": None,
        "ip": "81.2.69.160",
        "user_agent": CHROME_WINDOWS,
        "salt": SALT,
    }
    arguments.update(overrides)
    return visitor_id(**arguments)


def test_visitor_id_precedence() -> None:
    assert _hash(user_id="user-1", anonymous_id="anon-1") == "u:user-1"
    assert _hash(anonymous_id="anon-1") == "a:anon-1"
    assert _hash(user_id="", anonymous_id="anon-1") == "a:anon-1"
    hashed = _hash()
    assert hashed is not None and hashed.startswith("h:")
    assert _hash(ip=None) is None
    assert _hash(ip=None, user_id="user-1") == "u:user-1"


def test_visitor_hash_is_the_documented_hmac() -> None:
    message = f"{ORG}|81.2.69.160|{CHROME_WINDOWS}".encode()
    expected = hmac.new(SALT, message, hashlib.sha256).digest()[:16].hex()
    assert _hash() == f"h:{expected}"
    assert len(expected) == 32


def test_visitor_hash_is_stable() -> None:
    assert _hash() == _hash()


def test_visitor_hash_rotates_with_salt_and_is_per_organization() -> None:
    baseline = _hash()
    assert _hash(salt=b"t" * 32) != baseline
    assert _hash(organization_id="7b2f5c7e-0000-4000-8000-000000000002") != baseline
    assert _hash(user_agent=FIREFOX_LINUX) != baseline
    assert _hash(ip="81.2.69.161") != baseline


def test_visitor_hash_uses_the_canonical_ip() -> None:
    assert _hash(ip="::ffff:81.2.69.160") == _hash(ip="81.2.69.160")
    assert _hash(ip="2001:4860:0:0::8888") == _hash(ip="2001:4860::8888")


def test_visitor_hash_without_user_agent() -> None:
    assert _hash(user_agent=None) == _hash(user_agent="")
    assert _hash(user_agent=None) is not None


def test_invalid_ip_gives_no_visitor() -> None:
    assert _hash(ip="not-an-ip") is None


# --------------------------------------------------------------------------- salt day


def test_salt_day_is_the_utc_date() -> None:
    assert salt_day(datetime(2024, 3, 1, 1, 30, tzinfo=timezone(timedelta(hours=2)))) == date(2024, 2, 29)
    assert salt_day(datetime(2024, 2, 29, 23, 30, tzinfo=timezone(timedelta(hours=-5)))) == date(2024, 3, 1)
    assert salt_day(datetime(2024, 3, 1, 0, 0, tzinfo=UTC)) == date(2024, 3, 1)


def test_salt_day_treats_naive_timestamps_as_utc() -> None:
    assert salt_day(datetime(2024, 3, 1, 23, 59, 59)) == date(2024, 3, 1)
