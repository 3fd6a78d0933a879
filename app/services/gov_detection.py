"""Gov detection: does an IP address belong to a government or law-enforcement network?

Signals, strongest first, each turned into a weight and combined as independent evidence
(noisy-OR: ``1 - prod(1 - w)``), so that more evidence only ever raises the confidence
and it stays in [0, 1]:

- **curated ASN** (0.95): the address's AS number (from the ASN database) is on the curated
  list shipped in ``app/data/gov_networks.json`` (or the file in PULSEGRAPH_GOV_NETWORKS_FILE);
- **curated network** (0.95): the address is inside a curated CIDR network. This needs no
  GeoIP database at all;
- **domain** (0.80): the AS organization names a government domain (``army.mil``,
  ``bmi.bund.de``, ``interieur.gouv.fr``, ``*.gov.uk``, ``*.police.uk`` ...);
- **keyword** (0.75): the AS organization contains a government / law-enforcement /
  military word (ministry, police, Bundesministerium, Ministère, Policía, Polizia, politie,
  policja, ...), matched on word boundaries after case folding and accent stripping;
- **weak keyword** (0.35): words that are often but not only governmental (department,
  bureau, agency, federal, national, county, municipal, ...): alone they stay below the
  threshold, together with a keyword they raise it;
- **commercial name** (damping): a legal form or an industry word (Inc, Ltd, GmbH, AG,
  telecom, hosting, cloud, ...) halves the evidence derived from the name (never the curated
  list's), so "Federal Express Corporation" is not a government.

Evidence from the name is capped at 0.9 (`NAME_CONFIDENCE_CAP`), so a curated match always
ranks above name heuristics. `DEFAULT_GOV_THRESHOLD` (0.7) decides `is_government`: one
curated match, one government domain or one keyword is enough; weak words alone are not.

Which signals were available (ASN database, city/country database, curated list) is part of
every answer: detection degrades, it does not fail, when a database is not configured. A
configured database that is missing, corrupt or of the wrong type fails at construction with
`GovDetectorConfigError`; lookups never raise for an address.
"""

from __future__ import annotations

import bisect
import functools
import ipaddress
import json
import logging
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import maxminddb

from app.auth import Viewer, require_reader
from app.errors import BadInput
from app.services.enrichment import Geo, GeoLocator, normalize_ip
from app.settings import Settings, get_settings

log = logging.getLogger("pulsegraph.gov_detection")

DEFAULT_GOV_THRESHOLD = 0.7
CHECK_CACHE_SIZE = 10_000
IP_MAX_CHARS = 64  # longer than any spelling of an address; keeps hostile input cheap

SIGNAL_ASN_DATABASE = "asn-database"
SIGNAL_CITY_DATABASE = "city-database"
SIGNAL_CURATED_LIST = "curated-list"

WEIGHT_CURATED_ASN = 0.95
WEIGHT_CURATED_NETWORK = 0.95
WEIGHT_DOMAIN = 0.80
WEIGHT_KEYWORD = 0.75
WEIGHT_WEAK_KEYWORD = 0.35
COMMERCIAL_DAMPING = 0.5
# Name heuristics never outrank the curated list: however many words match, at most this.
NAME_CONFIDENCE_CAP = 0.9

PRIVATE_REASON = "private or reserved address"
SHIPPED_LIST = "gov_networks.json"


class GovDetectorConfigError(RuntimeError):
    """A configured database or curated list cannot be used: raised at start, never per request."""


# --------------------------------------------------------------------------- name patterns


def _fold(text: str) -> str:
    """Case-folded, accents stripped: "Ministère" -> "ministere", "Policía" -> "policia"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _words(*alternatives: str) -> re.Pattern[str]:
    """Whole words (alternatives may use \\w* for compounds such as Bundesministerium)."""
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)")


# Matched against the folded AS organization name, so patterns are lower case without accents.
KEYWORDS = _words(
    # English
    r"government", r"govt", r"gov", r"ministry", r"ministries", r"police", r"policing",
    r"military", r"army", r"navy", r"air force", r"armed forces", r"defen[cs]e",
    r"law enforcement", r"sheriffs?", r"constabulary", r"marine corps", r"national guard",
    r"homeland security", r"parliament", r"prosecutors?",
    # German (compounds: Bundesministerium, Landespolizei, Bundesbehörde, Landesregierung)
    r"\w*regierung\w*", r"\w*ministerium\w*", r"\w*polizei\w*", r"bundeswehr", r"\w*beho(?:e)?rde\w*",
    r"bundesamt\w*", r"landesamt\w*", r"bundesverwaltung\w*", r"\w*verteidigung\w*", r"staatskanzlei",
    r"streitkrafte", r"streitkraefte",
    # French
    r"gouvernement\w*", r"ministeres?", r"gendarmerie", r"armee", r"prefecture", r"douanes?",
    r"republique francaise",
    # Spanish
    r"gobierno", r"ministerio", r"policia", r"guardia civil", r"ejercito", r"fuerzas armadas",
    r"defensa",
    # Italian
    r"governo", r"ministero", r"polizia", r"carabinieri", r"esercito", r"difesa",
    r"guardia di finanza",
    # Portuguese
    r"forcas armadas", r"exercito", r"defesa",
    # Spanish, Italian, Portuguese, French, German adjectives: militar, militare, militaire, militär
    r"militar\w*",
    # Dutch
    r"\w*overheid", r"ministerie", r"politie", r"defensie", r"krijgsmacht",
    # Polish
    r"rzad\w*", r"ministerstw\w*", r"policj\w*", r"wojsk\w*", r"obrony narodowej", r"straz graniczna",
    # Russian, transliterated and in Cyrillic
    r"ministerstv\w*", r"pravitelstv\w*", r"politsi\w*", r"militsi\w*",
    r"министерств\w*", r"правительств\w*", r"полици\w*", r"милици\w*",
)

WEAK_KEYWORDS = _words(
    r"department", r"dept", r"bureau", r"agency", r"federal", r"national", r"nacional", r"nationale",
    r"nazionale", r"state of", r"county",
    r"municipal\w*", r"city of", r"council", r"administration", r"authority", r"office of",
    r"bundes\w+", r"landkreis", r"\w*verwaltung", r"amt",
    r"departement", r"agence", r"direction generale", r"ayuntamiento", r"departamento", r"agencia",
    r"secretaria", r"direccion general", r"agenzia", r"dipartimento", r"comune di", r"regione",
    r"prefeitura", r"gemeente", r"agentschap", r"urzad\w*", r"agencja", r"komenda\w*",
)

COMMERCIAL = _words(
    r"inc", r"llc", r"l\.l\.c", r"ltd", r"limited", r"gmbh", r"ag", r"plc", r"corp", r"corporation",
    r"s\.?a", r"s\.a\.s", r"s\.?r\.?l", r"s\.?l", r"s\.?p\.?a", r"b\.?v", r"n\.?v", r"sp\. z o\.o",
    r"\w*telecom\w*", r"\w*telekom\w*", r"hosting", r"cloud", r"data ?cent(?:er|re)s?", r"broadband",
    r"cable", r"isp",
)

# Domain suffixes, label by label; "CC" is any two-letter country code.
_CC = "CC"
GOV_DOMAIN_SUFFIXES: tuple[tuple[str, ...], ...] = (
    ("gov",), ("mil",), ("gov", _CC), ("mil", _CC), ("gob", _CC), ("gouv", _CC), ("govt", "nz"),
    ("go", "jp"), ("go", "kr"), ("go", "id"), ("go", "th"), ("gv", "at"), ("admin", "ch"),
    ("bund", "de"), ("police", "uk"), ("mod", "uk"), ("gc", "ca"), ("europa", "eu"),
    ("overheid", "nl"), ("rijksoverheid", "nl"), ("politie", "nl"),
)
_DOMAIN = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+")


def _gov_domains(folded: str) -> list[re.Match[str]]:
    found = []
    for match in _DOMAIN.finditer(folded):
        labels = match.group(0).split(".")
        for suffix in GOV_DOMAIN_SUFFIXES:
            if len(labels) < len(suffix):
                continue
            tail = labels[-len(suffix) :]
            if all(want == got or (want == _CC and len(got) == 2 and got.isalpha()) for want, got in zip(suffix, tail)):
                found.append(match)
                break
    return found


@dataclass(frozen=True, slots=True)
class NameEvidence:
    keywords: tuple[str, ...]
    weak_keywords: tuple[str, ...]
    domains: tuple[str, ...]
    commercial: str | None


def name_evidence(organization: str) -> NameEvidence:
    """What an AS organization name says. Each stretch of the name counts once: the "navy"
    of "navy.mil" is part of the domain, the "bundes" of "Bundesministerium" part of the keyword."""
    folded = _fold(organization)
    taken: list[tuple[int, int]] = []

    def fresh(matches: Iterable[re.Match[str]]) -> list[str]:
        kept = [m for m in matches if not any(m.start() < end and start < m.end() for start, end in taken)]
        taken.extend(m.span() for m in kept)
        return list(dict.fromkeys(m.group(0) for m in kept))

    domains = fresh(_gov_domains(folded))
    keywords = fresh(KEYWORDS.finditer(folded))
    weak = fresh(WEAK_KEYWORDS.finditer(folded))
    commercial = COMMERCIAL.search(folded)
    return NameEvidence(
        keywords=tuple(keywords),
        weak_keywords=tuple(weak),
        domains=tuple(domains),
        commercial=commercial.group(0) if commercial else None,
    )


def noisy_or(weights: Iterable[float]) -> float:
    remaining = 1.0
    for weight in weights:
        remaining *= 1.0 - min(max(weight, 0.0), 1.0)
    return 1.0 - remaining


# --------------------------------------------------------------------------- curated list


@dataclass(frozen=True, slots=True)
class CuratedEntry:
    name: str
    country: str | None
    category: str
    source: str

    def describe(self) -> str:
        where = f"{self.country}, " if self.country else ""
        return f"{self.name} ({where}{self.category}; source: {self.source})"


@dataclass
class CuratedList:
    """ASNs (single or ranges) and CIDR networks, each with the source that vouches for it."""

    asns: dict[int, CuratedEntry] = field(default_factory=dict)
    asn_ranges: dict[tuple[int, int], CuratedEntry] = field(default_factory=dict)
    networks: dict[ipaddress.IPv4Network | ipaddress.IPv6Network, CuratedEntry] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.asns) + len(self.asn_ranges) + len(self.networks)

    def merge(self, other: CuratedList) -> None:
        """Entries of `other` win for the same ASN, range or network."""
        self.asns.update(other.asns)
        self.asn_ranges.update(other.asn_ranges)
        self.networks.update(other.networks)


def _entry(raw: Mapping[str, Any], where: str) -> CuratedEntry:
    name, source = raw.get("name"), raw.get("source")
    if not isinstance(name, str) or not name.strip():
        raise GovDetectorConfigError(f"{where}: needs a non-empty 'name'")
    if not isinstance(source, str) or not source.strip():
        raise GovDetectorConfigError(f"{where}: needs a non-empty 'source' (where the entry comes from)")
    country = raw.get("country")
    category = raw.get("category") or "government"
    if country is not None and not isinstance(country, str):
        raise GovDetectorConfigError(f"{where}: 'country' must be a string")
    return CuratedEntry(name=name.strip(), country=country, category=str(category), source=source.strip())


def _asn(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**32:
        raise GovDetectorConfigError(f"{where}: an AS number must be an integer in 1..4294967295, got {value!r}")
    return value


def parse_curated(document: Any, origin: str) -> tuple[CuratedList, str]:
    """(list, mode) from a decoded JSON document; mode is "merge" (default) or "replace"."""
    if not isinstance(document, dict):
        raise GovDetectorConfigError(f"{origin}: expected a JSON object with 'asns' and/or 'networks'")
    mode = document.get("mode", "merge")
    if mode not in ("merge", "replace"):
        raise GovDetectorConfigError(f"{origin}: 'mode' must be 'merge' or 'replace', got {mode!r}")
    curated = CuratedList()
    asns, networks = document.get("asns", []), document.get("networks", [])
    if not isinstance(asns, list) or not isinstance(networks, list):
        raise GovDetectorConfigError(f"{origin}: 'asns' and 'networks' must be lists")
    for index, raw in enumerate(asns):
        where = f"{origin}: asns[{index}]"
        if not isinstance(raw, dict):
            raise GovDetectorConfigError(f"{where}: expected an object")
        entry = _entry(raw, where)
        if "asn_range" in raw:
            bounds = raw["asn_range"]
            if not isinstance(bounds, list) or len(bounds) != 2:
                raise GovDetectorConfigError(f"{where}: 'asn_range' must be [first, last]")
            first, last = _asn(bounds[0], where), _asn(bounds[1], where)
            if first > last:
                raise GovDetectorConfigError(f"{where}: 'asn_range' first {first} is above last {last}")
            curated.asn_ranges[(first, last)] = entry
        else:
            curated.asns[_asn(raw.get("asn"), where)] = entry
    for index, raw in enumerate(networks):
        where = f"{origin}: networks[{index}]"
        if not isinstance(raw, dict):
            raise GovDetectorConfigError(f"{where}: expected an object")
        try:
            network = ipaddress.ip_network(str(raw.get("network")).strip(), strict=False)
        except ValueError as exc:
            raise GovDetectorConfigError(f"{where}: 'network' is not a CIDR network: {raw.get('network')!r}") from exc
        curated.networks[network] = _entry(raw, where)
    return curated, mode


def _read_json(text: str, origin: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise GovDetectorConfigError(f"{origin}: not valid JSON ({exc})") from exc


def load_curated(override_file: str | None = None) -> CuratedList:
    """The shipped list, with PULSEGRAPH_GOV_NETWORKS_FILE merged over it or replacing it."""
    shipped_text = resources.files("app").joinpath("data", SHIPPED_LIST).read_text(encoding="utf-8")
    curated, _ = parse_curated(_read_json(shipped_text, f"app/data/{SHIPPED_LIST}"), f"app/data/{SHIPPED_LIST}")
    if override_file:
        origin = f"PULSEGRAPH_GOV_NETWORKS_FILE {override_file!r}"
        try:
            text = Path(override_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise GovDetectorConfigError(f"{origin}: cannot be read ({exc.strerror or exc})") from exc
        override, mode = parse_curated(_read_json(text, origin), origin)
        if mode == "replace":
            return override
        curated.merge(override)
    return curated


class _CuratedIndex:
    """Constant-time-ish lookups: one dict per (IP version, prefix length), longest first."""

    def __init__(self, curated: CuratedList) -> None:
        self.asns = dict(curated.asns)
        ranges = sorted(curated.asn_ranges.items())
        self._range_starts = [first for (first, _), _ in ranges]
        self._ranges = ranges
        by_prefix: dict[tuple[int, int], dict[Any, tuple[Any, CuratedEntry]]] = {}
        for network, entry in curated.networks.items():
            by_prefix.setdefault((network.version, network.prefixlen), {})[network] = (network, entry)
        self._prefixes = sorted(by_prefix.items(), key=lambda item: -item[0][1])
        self.size = len(curated)

    def asn(self, number: int | None) -> CuratedEntry | None:
        if number is None:
            return None
        if number in self.asns:
            return self.asns[number]
        # ranges may overlap; the narrowest containing one wins
        best: tuple[int, CuratedEntry] | None = None
        for (first, last), entry in self._ranges[: bisect.bisect_right(self._range_starts, number)]:
            if first <= number <= last and (best is None or last - first < best[0]):
                best = (last - first, entry)
        return best[1] if best else None

    def network(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[Any, CuratedEntry] | None:
        for (version, prefixlen), networks in self._prefixes:
            if version != address.version:
                continue
            found = networks.get(ipaddress.ip_network(f"{address}/{prefixlen}", strict=False))
            if found is not None:
                return found
        return None


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True, slots=True)
class GovCheck:
    ip: str | None  # None when assessed from the recorded network alone
    is_government: bool
    confidence: float
    organization: str | None
    asn: int | None
    country: str | None
    reasons: tuple[str, ...]
    signals: tuple[str, ...]


def _open_locator(city_db: str | None, asn_db: str | None) -> GeoLocator:
    """GeoLocator's own checks (file exists, right database type), with the setting named."""
    for setting, paths in (
        ("PULSEGRAPH_GEOIP_CITY_DB", (city_db, None)),
        ("PULSEGRAPH_GEOIP_ASN_DB", (None, asn_db)),
    ):
        path = paths[0] or paths[1]
        if not path:
            continue
        try:
            GeoLocator(*paths, cache_size=0).close()
        except FileNotFoundError as exc:
            raise GovDetectorConfigError(f"gov detection: {setting} {path!r} does not exist") from exc
        except maxminddb.InvalidDatabaseError as exc:
            raise GovDetectorConfigError(f"gov detection: {setting} {path!r} is not a valid MaxMind database ({exc})") from exc
        except ValueError as exc:
            raise GovDetectorConfigError(f"gov detection: {setting} {path!r}: {exc}") from exc
        except OSError as exc:
            raise GovDetectorConfigError(f"gov detection: {setting} {path!r} cannot be opened ({exc})") from exc
    return GeoLocator(city_db, asn_db, cache_size=0)


class GovDetector:
    """Built once per process; `check_ip` answers from memory and caches per address."""

    def __init__(
        self,
        *,
        city_db: str | None = None,
        asn_db: str | None = None,
        networks_file: str | None = None,
        threshold: float = DEFAULT_GOV_THRESHOLD,
        cache_size: int = CHECK_CACHE_SIZE,
    ) -> None:
        self.threshold = threshold
        self._curated = _CuratedIndex(load_curated(networks_file))
        self._geo = _open_locator(city_db, asn_db)
        signals = []
        if asn_db:
            signals.append(SIGNAL_ASN_DATABASE)
        if city_db:
            signals.append(SIGNAL_CITY_DATABASE)
        if self._curated.size:
            signals.append(SIGNAL_CURATED_LIST)
        self.signals: tuple[str, ...] = tuple(signals)
        self._has_asn_db = bool(asn_db)
        self._has_city_db = bool(city_db)
        self._cached_check = functools.lru_cache(maxsize=cache_size)(self._check_uncached)
        self._cached_network = functools.lru_cache(maxsize=cache_size)(self._check_network_uncached)
        log.info("gov detection ready: signals %s, %d curated entries", ", ".join(signals) or "none", self._curated.size)

    @classmethod
    def from_settings(cls, settings: Settings) -> GovDetector:
        return cls(city_db=settings.geoip_city_db, asn_db=settings.geoip_asn_db, networks_file=settings.gov_networks_file)

    def check_ip(self, ip: str) -> GovCheck:
        if not isinstance(ip, str) or len(ip) > IP_MAX_CHARS:
            raise BadInput("ip must be an IPv4 or IPv6 address", field="ip")
        normalized = normalize_ip(ip)
        if normalized is None:
            raise BadInput(f"ip must be an IPv4 or IPv6 address, got {ip.strip()[:IP_MAX_CHARS]!r}", field="ip")
        return self._cached_check(normalized)

    def cache_info(self) -> Any:
        return self._cached_check.cache_info()

    def reload_if_changed(self) -> bool:
        """Follow GeoIP files replaced on disk; address checks made with the old ones are
        forgotten (checks of a recorded network never read the files)."""
        if not self._geo.reload_if_changed():
            return False
        self._cached_check.cache_clear()
        return True

    def close(self) -> None:
        self._cached_check.cache_clear()
        self._cached_network.cache_clear()
        self._geo.close()

    def _lookup(self, ip: str) -> tuple[Geo | None, str | None]:
        if not self._geo.enabled:
            return None, None
        try:
            return self._geo.lookup(ip), None
        except (maxminddb.InvalidDatabaseError, OSError) as exc:  # a file damaged after start
            log.error("gov detection: GeoIP lookup of %s failed: %s", ip, exc)
            return None, "the GeoIP databases could not be read for this address; only the curated networks were checked"

    def check_recorded_network(self, *, asn: int | None, organization: str | None, country: str | None) -> GovCheck:
        """Assess a view whose raw IP is gone (IP retention 0, Do-Not-Track) from the network
        ingestion recorded for it: the curated ASNs and the name patterns still apply; the
        curated CIDR networks, which need the address, do not."""
        return self._cached_network(asn, organization, country)

    def _check_uncached(self, ip: str) -> GovCheck:
        address = ipaddress.ip_address(ip)
        if not address.is_global:
            return GovCheck(ip, False, 0.0, None, None, None, (PRIVATE_REASON,), self.signals)
        geo, lookup_failure = self._lookup(ip)
        if lookup_failure:
            notes = [lookup_failure]
        elif not self._has_asn_db:
            notes = ["no ASN database configured: the network's organization was not checked"]
        elif geo is None or geo.asn is None:
            notes = ["address not found in the ASN database"]
        else:
            notes = []
        return self._assess(
            ip=ip,
            address=address,
            asn=geo.asn if geo else None,
            organization=geo.as_org if geo else None,
            country=geo.country if geo else None,
            notes=notes,
        )

    def _check_network_uncached(self, asn: int | None, organization: str | None, country: str | None) -> GovCheck:
        notes = ["the raw IP address was not retained: the curated networks were not checked"]
        if asn is None and not organization:
            notes.append("no network was recorded for this view")
        return self._assess(ip=None, address=None, asn=asn, organization=organization, country=country, notes=notes)

    def _assess(
        self,
        *,
        ip: str | None,
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
        asn: int | None,
        organization: str | None,
        country: str | None,
        notes: list[str],
    ) -> GovCheck:
        """Combine the curated list and the name patterns into one confidence, with reasons."""
        reasons: list[str] = []
        curated_weights: list[float] = []

        by_asn = self._curated.asn(asn)
        if by_asn is not None:
            curated_weights.append(WEIGHT_CURATED_ASN)
            reasons.append(f"AS{asn} is on the curated government list: {by_asn.describe()}")
        by_network = self._curated.network(address) if address is not None else None
        if by_network is not None:
            network, entry = by_network
            curated_weights.append(WEIGHT_CURATED_NETWORK)
            reasons.append(f"the address is in {network}, on the curated government list: {entry.describe()}")

        name_weight = 0.0
        if organization:
            name_weight = self._name_weight(organization, reasons)
        reasons += notes

        curated = by_asn or (by_network[1] if by_network else None)
        if curated is not None:
            organization = organization or curated.name
            country = country or curated.country
        confidence = round(noisy_or([*curated_weights, name_weight]), 3)
        return GovCheck(
            ip=ip,
            is_government=confidence >= self.threshold,
            confidence=confidence,
            organization=organization,
            asn=asn,
            country=country,
            reasons=tuple(reasons),
            signals=self.signals,
        )

    @staticmethod
    def _name_weight(organization: str, reasons: list[str]) -> float:
        """Evidence from the network's name (capped, damped for commercial names)."""
        evidence = name_evidence(organization)
        weights = [WEIGHT_DOMAIN] * len(evidence.domains) + [WEIGHT_KEYWORD] * len(evidence.keywords)
        weights += [WEIGHT_WEAK_KEYWORD] * len(evidence.weak_keywords)
        reasons += [f"organization {organization!r} names the government domain {d!r}" for d in evidence.domains]
        reasons += [f"organization {organization!r} contains the government keyword {k!r}" for k in evidence.keywords]
        reasons += [f"organization {organization!r} contains the weak keyword {k!r}" for k in evidence.weak_keywords]
        weight = min(noisy_or(weights), NAME_CONFIDENCE_CAP)
        if weight and evidence.commercial:
            weight *= COMMERCIAL_DAMPING
            reasons.append(f"organization {organization!r} looks commercial ({evidence.commercial!r}): name evidence halved")
        if not weights:
            reasons.append(f"organization {organization!r} matches no government pattern")
        return weight


# --------------------------------------------------------------------------- per process

_detectors: dict[tuple[str | None, str | None, str | None], GovDetector] = {}
_detectors_lock = threading.Lock()


def get_detector(settings: Settings | None = None) -> GovDetector:
    """The process's detector for these settings, built on first use.

    Call it at start (API lifespan, worker start) so that a bad database path fails there;
    a failed build is not cached, so every later call reports the same clear error.
    """
    settings = settings or get_settings()
    key = (settings.geoip_city_db, settings.geoip_asn_db, settings.gov_networks_file)
    detector = _detectors.get(key)
    if detector is None:
        with _detectors_lock:
            detector = _detectors.get(key)
            if detector is None:
                detector = GovDetector.from_settings(settings)
                _detectors[key] = detector
    return detector


def check_ip(*, viewer: Viewer, ip: str, settings: Settings | None = None) -> GovCheck:
    """Any reader (platform admin, organization admin, provider) may check an address."""
    require_reader(viewer)
    return get_detector(settings).check_ip(ip)
