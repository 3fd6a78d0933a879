"""Enrichment: everything an event's context says about its visitor, derived without I/O.

Ingestion calls these helpers on every event, so they are pure, cached where inputs
repeat (user agents, IPs), and never raise on hostile input: a bad header must cost
an event its enrichment, never the event itself. Parsing is left to the libraries that
track the moving targets (ua-parser's regexes, MaxMind's databases, urllib's URL
rules); this module only decides what the parsed facts mean for analytics.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

import geoip2.database
import geoip2.errors
import maxminddb
import ua_parser

DeviceType = Literal["desktop", "mobile", "tablet", "bot", "other"]

UA_CACHE_SIZE = 10_000
GEO_CACHE_SIZE = 10_000
UA_MAX_CHARS = 1024
URL_MAX_CHARS = 2048
UTM_MAX_CHARS = 256
UTM_FIELDS = ("source", "medium", "campaign", "term", "content")

_Record = TypeVar("_Record")

log = logging.getLogger("pulsegraph.enrichment")


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True, slots=True)
class Device:
    device_type: str
    browser: str | None
    os: str | None
    is_bot: bool


_OTHER_DEVICE = Device(device_type="other", browser=None, os=None, is_bot=False)

# ua-parser names clients, it does not judge them: these families are scripts and
# automation, never a person reading a page, so they would inflate visitor counts.
# okhttp is deliberately absent: native Android apps send real users' events with it.
_AUTOMATION_BROWSERS = frozenset(
    {
        "curl",
        "Wget",
        "Python Requests",
        "Python-urllib",
        "Python aiohttp",
        "Go-http-client",
        "Apache-HttpClient",
        "Java",
        "libwww-perl",
        "HTTPie",
        "axios",
        "PostmanRuntime",
        "Scrapy",
        "HeadlessChrome",
        "PhantomJS",
    }
)
_MOBILE_OSES = frozenset(
    {
        "iOS",
        "Android",
        "Windows Phone",
        "Windows Mobile",
        "BlackBerry OS",
        "BlackBerry Tablet OS",
        "KaiOS",
        "Symbian OS",
        "Series 40",
        "Firefox OS",
        "HarmonyOS",
        "webOS",
    }
)
_DESKTOP_OSES = frozenset(
    {
        "Mac OS X",
        "Linux",
        "Chrome OS",
        "Ubuntu",
        "Kubuntu",
        "Debian",
        "Fedora",
        "Red Hat",
        "CentOS",
        "SUSE",
        "openSUSE",
        "Mint",
        "Linux Mint",
        "Arch Linux",
        "Gentoo",
        "Slackware",
        "Mandriva",
        "FreeBSD",
        "OpenBSD",
        "NetBSD",
        "Solaris",
    }
)
_TABLET_FAMILY_PREFIXES = ("iPad", "Kindle", "Generic Tablet")
# Televisions and consoles run Android or desktop-looking stacks without "Mobile";
# they must not fall into the Android-tablet rule.
_TV_OR_CONSOLE = re.compile(
    r"\b(?:Smart-?TV|Android ?TV|Google ?TV|TV|BRAVIA|CrKey|PlayStation|Xbox|Nintendo)\b",
    re.IGNORECASE,
)


@functools.cache
def _ua_parser() -> ua_parser.Parser:
    """Build the parser once, without ua-parser's own cache: ours sits on top of it.

    The best available resolver is the rust `ua-parser-rs` one when installed; the
    lazy builtins are what ua-parser itself pairs with that resolver.
    """
    return ua_parser.Parser(ua_parser.BestAvailableResolver(ua_parser.load_lazy_builtins()))


def _family(value: ua_parser.UserAgent | ua_parser.OS | None) -> str | None:
    """ua-parser reports misses as None, yet some rules still name "Other"."""
    if value is None or value.family in ("", "Other"):
        return None
    return value.family


def _is_bot(result: ua_parser.Result, browser: str | None) -> bool:
    device = result.device
    return (device is not None and device.family == "Spider") or browser in _AUTOMATION_BROWSERS


def _is_tablet(ua: str, result: ua_parser.Result, os: str | None) -> bool:
    """ua-parser knows named tablets; Google's rule (Android without "Mobile") covers the rest."""
    device = result.device
    if device is not None:
        if device.family.startswith(_TABLET_FAMILY_PREFIXES):
            return True
        if device.brand == "Generic_Android_Tablet" or device.model == "Tablet":
            return True
    return os == "Android" and "Mobile" not in ua


def _is_mobile(result: ua_parser.Result, os: str | None) -> bool:
    device = result.device
    if os in _MOBILE_OSES:
        return True
    return device is not None and (
        device.family in ("iPhone", "iPod") or device.model in ("Smartphone", "Feature Phone")
    )


def _is_desktop(os: str | None) -> bool:
    return os is not None and (os in _DESKTOP_OSES or os.startswith("Windows"))


def _device_type(
    ua: str, result: ua_parser.Result, browser: str | None, os: str | None
) -> DeviceType:
    """Order matters: a crawler posing as Android is a bot, an iPad runs iOS, etc."""
    if _is_bot(result, browser):
        return "bot"
    if "Mobile" not in ua and _TV_OR_CONSOLE.search(ua):
        return "other"
    if _is_tablet(ua, result, os):
        return "tablet"
    if _is_mobile(result, os):
        return "mobile"
    if _is_desktop(os):
        return "desktop"
    return "other"


@functools.lru_cache(maxsize=UA_CACHE_SIZE)
def _parse_user_agent_cached(ua: str) -> Device:
    # The rust resolver needs encodable text; lone surrogates can arrive through JSON.
    clean = ua.encode("utf-8", "replace").decode("utf-8")
    result = _ua_parser().parse(clean)
    browser = _family(result.user_agent)
    os = _family(result.os)
    device_type = _device_type(clean, result, browser, os)
    return Device(device_type=device_type, browser=browser, os=os, is_bot=device_type == "bot")


def parse_user_agent(ua: str | None) -> Device:
    """Classify a user agent; heavy repetition across events makes the cache pay off.

    The string is capped before it becomes a cache key so hostile headers cannot grow
    the cache beyond ~10 MB. iPadOS Safari in its default "desktop" mode sends a Mac
    user agent and is therefore counted as desktop; only client hints could tell.
    """
    if ua is None:
        return _OTHER_DEVICE
    ua = ua.strip()[:UA_MAX_CHARS]
    if not ua:
        return _OTHER_DEVICE
    return _parse_user_agent_cached(ua)


# --------------------------------------------------------------------------- geo


_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
# A dotted quad without leading zeros is already its one spelling. Most addresses are IPv4
# and few repeat within the cache, so recognising them here spares ipaddress (~5 µs each).
_CANONICAL_IPV4 = re.compile(rf"(?:{_OCTET}\.){{3}}{_OCTET}")


@dataclass(frozen=True, slots=True)
class Geo:
    country: str | None
    region: str | None
    city: str | None
    asn: int | None
    as_org: str | None


_EMPTY_GEO = Geo(country=None, region=None, city=None, asn=None, as_org=None)


@functools.lru_cache(maxsize=GEO_CACHE_SIZE)
def normalize_ip(ip: str | None) -> str | None:
    """One spelling per address, so caches, hashes and lookups agree (cached: it runs
    several times per event and beacons repeat addresses).

    IPv4-mapped IPv6 (``::ffff:1.2.3.4``, what dual-stack sockets report) becomes the
    IPv4 address it is, otherwise the same visitor would hash to two ids.
    """
    if not ip:
        return None
    ip = ip.strip()
    if _CANONICAL_IPV4.fullmatch(ip):
        return ip
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.compressed
    return address.compressed


def _is_public(ip: str) -> bool:
    """Private, loopback and reserved ranges are never in GeoIP data; skip the lookup."""
    return ipaddress.ip_address(ip).is_global


def _location_method(
    reader: geoip2.database.Reader,
) -> Callable[[str], geoip2.models.Country]:
    """geoip2 ties each method to a database type, so pick the one this file serves."""
    db_type = reader.metadata().database_type
    if "City" in db_type:
        return reader.city
    if "Enterprise" in db_type:
        return reader.enterprise
    if "Country" in db_type:
        return reader.country
    raise ValueError(f"unsupported location database type {db_type!r}")


def _network_method(
    reader: geoip2.database.Reader,
) -> Callable[[str], geoip2.models.ASN]:
    """The ISP database carries the same AS fields as the ASN one."""
    db_type = reader.metadata().database_type
    if "ASN" in db_type:
        return reader.asn
    if "ISP" in db_type:
        return reader.isp
    raise ValueError(f"unsupported ASN database type {db_type!r}")


def _safe_lookup(method: Callable[[str], _Record] | None, ip: str) -> _Record | None:
    """A miss is normal (unallocated space, an IPv6 address in an IPv4-only file)."""
    if method is None:
        return None
    try:
        return method(ip)
    except (geoip2.errors.AddressNotFoundError, ValueError):
        return None


def _location_fields(record: geoip2.models.Country | None) -> tuple[str | None, ...]:
    if record is None:
        return (None, None, None)
    city = getattr(record, "city", None)
    subdivisions = getattr(record, "subdivisions", None)
    region = None
    if subdivisions:
        most_specific = subdivisions.most_specific
        region = most_specific.iso_code or most_specific.name
    return (record.country.iso_code, region, city.name if city is not None else None)


def _network_fields(record: geoip2.models.ASN | None) -> tuple[int | None, str | None]:
    if record is None:
        return (None, None)
    return (record.autonomous_system_number, record.autonomous_system_organization)


FileStamp = tuple[int, int, int, int] | None


def _stamp(path: str | None) -> FileStamp:
    """Device, inode, mtime and size: an atomic replace changes the inode, a copy over the
    file its mtime or size. None when unset or missing."""
    if not path:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_mtime_ns, info.st_size)


@dataclass(frozen=True, slots=True)
class _Opened:
    readers: tuple[geoip2.database.Reader, ...]
    location: Callable[[str], geoip2.models.Country] | None
    network: Callable[[str], geoip2.models.ASN] | None


_CLOSED = _Opened(readers=(), location=None, network=None)


def _open_databases(city_db: str | None, asn_db: str | None) -> _Opened:
    """Open both files or neither: a half-built set must not leak the file it did open."""
    readers: list[geoip2.database.Reader] = []
    try:
        location = network = None
        if city_db:
            readers.append(geoip2.database.Reader(city_db))
            location = _location_method(readers[-1])
        if asn_db:
            readers.append(geoip2.database.Reader(asn_db))
            network = _network_method(readers[-1])
    except BaseException:
        for reader in readers:
            reader.close()
        raise
    return _Opened(readers=tuple(readers), location=location, network=network)


class GeoLocator:
    """Opens the MaxMind files once per process and answers from memory-mapped data.

    A misconfigured path or wrong database type fails here, at start-up, rather than
    silently leaving every event without a country. Lookups never raise for IP-shaped
    problems; a corrupt file does surface, since hiding it would hide all geo data.

    `reload_if_changed()` (called every few seconds by the process, never per lookup)
    swaps in files replaced on disk, e.g. by `pulsegraph geoip update`; `version` counts
    the swaps so callers' own caches of lookups can key on it.
    """

    def __init__(
        self, city_db: str | None, asn_db: str | None, *, cache_size: int = GEO_CACHE_SIZE
    ) -> None:
        self._paths = (city_db, asn_db)
        self._stamps = tuple(_stamp(path) for path in self._paths)
        self._cached_lookup = functools.lru_cache(maxsize=cache_size)(self._lookup_uncached)
        self._retired: tuple[geoip2.database.Reader, ...] = ()
        self._open = _open_databases(city_db, asn_db)
        self._closed = False
        self.version = 0

    @property
    def enabled(self) -> bool:
        return self._open.location is not None or self._open.network is not None

    def lookup(self, ip: str | None) -> Geo:
        normalized = normalize_ip(ip)
        if normalized is None or not self.enabled or not _is_public(normalized):
            return _EMPTY_GEO
        return self._cached_lookup(normalized)

    def _lookup_uncached(self, ip: str) -> Geo:
        opened = self._open  # one snapshot: both fields come from the same set of files
        country, region, city = _location_fields(_safe_lookup(opened.location, ip))
        asn, as_org = _network_fields(_safe_lookup(opened.network, ip))
        return Geo(country=country, region=region, city=city, asn=asn, as_org=as_org)

    def reload_if_changed(self) -> bool:
        """Swap in the configured files if they changed on disk since they were opened.

        A replacement that cannot be used (corrupt, wrong type, missing) is logged and the
        previous files keep answering; it is tried again once the file changes again. The
        readers swapped out stay open until the next swap, for a lookup still holding them.
        """
        stamps = tuple(_stamp(path) for path in self._paths)
        if self._closed or stamps == self._stamps:
            return False
        self._stamps = stamps
        try:
            opened = _open_databases(*self._paths)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            log.error("GeoIP files %s changed but cannot be used (%s); the previous ones keep answering", self._described(), exc)
            return False
        self._close_retired()
        self._retired, self._open = self._open.readers, opened
        self._cached_lookup.cache_clear()
        self.version += 1
        log.info("GeoIP files %s reloaded", self._described())
        return True

    def _described(self) -> str:
        return " and ".join(path for path in self._paths if path) or "(none)"

    def _close_retired(self) -> None:
        for reader in self._retired:
            reader.close()
        self._retired = ()

    def close(self) -> None:
        """Disable before closing so a concurrent lookup sees empty geo, not a closed file."""
        self._closed = True
        opened, self._open = self._open, _CLOSED
        self._cached_lookup.cache_clear()
        for reader in opened.readers:
            reader.close()
        self._close_retired()


# --------------------------------------------------------------------------- attribution


@dataclass(frozen=True, slots=True)
class Attribution:
    url: str | None
    referrer: str | None
    referrer_domain: str | None
    utm_source: str | None
    utm_medium: str | None
    utm_campaign: str | None
    utm_term: str | None
    utm_content: str | None


def _clean(value: str | None, limit: int) -> str | None:
    """Stored columns are bounded; whitespace-only input is the same as absent."""
    if value is None:
        return None
    value = value.strip()
    return value[:limit] if value else None


def _host(url: str | None) -> str | None:
    """Host as a person would name the site: case-folded, no "www.", no trailing dot."""
    if not url:
        return None
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    if not host:
        return None
    host = host.rstrip(".")
    host = host.removeprefix("www.")
    return host or None


def _referrer_domain(url: str | None, referrer: str | None) -> str | None:
    """Internal navigation is not a traffic source, so the page's own host is dropped."""
    domain = _host(referrer)
    if domain is None or domain == _host(url):
        return None
    return domain


def _url_utm(url: str | None) -> dict[str, str]:
    """First occurrence wins, matching what analytics tools show for repeated params."""
    if not url:
        return {}
    try:
        query = urlsplit(url.strip()).query
    except ValueError:
        return {}
    found: dict[str, str] = {}
    for key, value in parse_qsl(query):
        name = key.strip().lower()
        if name.startswith("utm_") and name[4:] in UTM_FIELDS:
            found.setdefault(name[4:], value)
    return found


def _explicit_utm(utm: Mapping[str, str | None] | None) -> dict[str, str | None]:
    """SDKs spell keys either "source" or "utm_source"; accept both."""
    if not utm:
        return {}
    return {key.strip().lower().removeprefix("utm_"): value for key, value in utm.items()}


def _utm_value(field: str, explicit: Mapping[str, str | None], from_url: Mapping[str, str]) -> str | None:
    """Per field, an explicit value beats the URL: the SDK may carry the landing page's."""
    value = _clean(explicit.get(field), UTM_MAX_CHARS)
    return value if value is not None else _clean(from_url.get(field), UTM_MAX_CHARS)


def parse_attribution(
    *, url: str | None, referrer: str | None, utm: Mapping[str, str | None] | None = None
) -> Attribution:
    """Where the visit came from, as far as the event itself can tell.

    A referrer never fills in utm_source: campaigns and referrers are reported
    separately, and inventing a source would blur tagged traffic with untagged.
    """
    explicit = _explicit_utm(utm)
    from_url = _url_utm(url)
    values = {field: _utm_value(field, explicit, from_url) for field in UTM_FIELDS}
    return Attribution(
        url=_clean(url, URL_MAX_CHARS),
        referrer=_clean(referrer, URL_MAX_CHARS),
        referrer_domain=_referrer_domain(url, referrer),
        utm_source=values["source"],
        utm_medium=values["medium"],
        utm_campaign=values["campaign"],
        utm_term=values["term"],
        utm_content=values["content"],
    )


# --------------------------------------------------------------------------- visitors


def visitor_id(
    *,
    organization_id: str,
    user_id: str | None,
    anonymous_id: str | None,
    ip: str | None,
    user_agent: str | None,
    salt: bytes,
) -> str | None:
    """The strongest identity the event offers, falling back to a cookie-less hash.

    The hash follows Plausible: keyed by a salt that rotates daily (so a visitor cannot
    be followed across days, and the raw IP is never stored) and by organization (so
    two tenants never see the same id for one person). The IP is normalised first so
    ``::ffff:1.2.3.4`` and ``1.2.3.4`` are one visitor; an IP that is not an IP gives
    no id rather than a hash of noise. Organization ids are UUIDs, which keeps the
    "|"-joined message unambiguous (IPs contain no "|", the user agent comes last).
    """
    if user_id and user_id.strip():
        return f"u:{user_id}"
    if anonymous_id and anonymous_id.strip():
        return f"a:{anonymous_id}"
    normalized = normalize_ip(ip)
    if normalized is None:
        return None
    message = f"{organization_id}|{normalized}|{user_agent or ''}".encode("utf-8", "surrogatepass")
    digest = hmac.new(salt, message, hashlib.sha256).digest()
    return "h:" + digest[:16].hex()


def salt_day(ts: datetime) -> date:
    """Salts rotate at UTC midnight; a naive timestamp is taken to be UTC already."""
    if ts.tzinfo is None:
        return ts.date()
    return ts.astimezone(UTC).date()
