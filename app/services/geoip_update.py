"""`pulsegraph geoip update`: download a free City + ASN database pair, verify it, install it.

Two sources. DB-IP Lite, the default, needs no account (CC BY 4.0) and is published monthly
as `dbip-{city,asn}-lite-YYYY-MM.mmdb.gz`; early in a month the new files may not be out
yet, so the previous month's are taken then. MaxMind GeoLite2 needs a free account (account
ID and license key, GeoLite2 EULA) and ships `.tar.gz` archives with a `.sha256` companion.

Nothing is installed until both files have been downloaded, decompressed, checked against
the published checksum (when there is one), opened with the reader the server uses, found
to be of the right type and have answered a lookup. Each is then swapped in with one atomic
rename in the same folder, so a running server (which reloads replaced files by itself)
never sees a half-written file, and a failed update leaves the previous pair in place.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, Literal

import geoip2.database
import geoip2.errors
import httpx
import maxminddb

from app.errors import UserError
from app.settings import GEOIP_ASN_FILE, GEOIP_CITY_FILE, Settings, geoip_dir

log = logging.getLogger("pulsegraph.geoip")

Kind = Literal["city", "asn"]
KINDS: tuple[Kind, ...] = ("city", "asn")
INSTALLED_FILES: dict[Kind, str] = {"city": GEOIP_CITY_FILE, "asn": GEOIP_ASN_FILE}
MAXMIND_EDITIONS: dict[Kind, str] = {"city": "GeoLite2-City", "asn": "GeoLite2-ASN"}

TIMEOUT = httpx.Timeout(60.0, connect=15.0)  # read timeout is per chunk, not per file
USER_AGENT = "pulsegraph-geoip-update"
CHUNK_BYTES = 1 << 20
MAX_DOWNLOAD_BYTES = 1 << 30  # today's largest (DB-IP City Lite, gzipped) is well under this
MAX_DATABASE_BYTES = 4 << 30
PROBE_NETWORKS = 5000
STALE_PART_SECONDS = 3600
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")

DBIP_ATTRIBUTION = (
    "DB-IP Lite (CC BY 4.0): pages that show this data must link \"IP Geolocation by DB-IP\" "
    "to https://db-ip.com"
)
MAXMIND_ATTRIBUTION = (
    "MaxMind GeoLite2 (GeoLite2 EULA): credit \"This product includes GeoLite2 data created by "
    "MaxMind, available from https://www.maxmind.com\" and keep the databases up to date"
)


class GeoipUpdateError(Exception):
    """Why the update failed, in one line; the installed databases were not touched."""


class _NotPublished(GeoipUpdateError):
    """HTTP 404: for DB-IP, this month's file is not out yet."""


@dataclass(frozen=True)
class MaxMindAccount:
    account_id: str
    license_key: str


@dataclass(frozen=True)
class InstalledDatabase:
    kind: Kind
    path: Path
    url: str
    database_type: str
    build_date: str
    sha256: str | None  # the archive's checksum, when the source publishes one and it matched


@dataclass(frozen=True)
class UpdateReport:
    source: Literal["dbip", "maxmind"]
    databases: tuple[InstalledDatabase, ...]
    attribution: str

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"source": self.source}
        for db in self.databases:
            result |= {
                f"{db.kind}_path": str(db.path), f"{db.kind}_type": db.database_type,
                f"{db.kind}_build_date": db.build_date, f"{db.kind}_url": db.url, f"{db.kind}_sha256": db.sha256,
            }  # fmt: skip
        result["attribution"] = self.attribution
        return result


@dataclass(frozen=True)
class _Staged:
    """Downloaded and decompressed next to its final place, not yet checked."""

    kind: Kind
    path: Path
    url: str
    sha256: str | None


def maxmind_account(license_key: str | None, account_id: str | None) -> MaxMindAccount | None:
    """MaxMind's download URLs take the account ID with the key (HTTP basic auth)."""
    if not license_key:
        if account_id:
            raise UserError("a MaxMind account ID needs its license key (--license-key or MAXMIND_LICENSE_KEY)", field="license_key")
        return None
    if not account_id:
        raise UserError(
            "MaxMind downloads need the account ID with the license key (--account-id or MAXMIND_ACCOUNT_ID); "
            "both are on https://www.maxmind.com under Manage License Keys",
            field="account_id",
        )
    return MaxMindAccount(account_id=account_id.strip(), license_key=license_key.strip())


def update_geoip(settings: Settings, *, maxmind: MaxMindAccount | None = None, today: date | None = None) -> UpdateReport:
    """Download both databases from DB-IP (or MaxMind with an account), verify, install."""
    target = geoip_dir(settings.data_dir)
    target.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(target)
    with _part_files(target) as new_part, _client() as http:
        if maxmind is None:
            today = today or datetime.now(UTC).date()
            staged = [_fetch_dbip(http, settings.geoip_dbip_url, kind, today, new_part(kind)) for kind in KINDS]
        else:
            staged = [_fetch_maxmind(http, settings.geoip_maxmind_url, kind, maxmind, new_part) for kind in KINDS]
        verified = [_verify(item) for item in staged]
        for item in staged:
            os.replace(item.path, target / INSTALLED_FILES[item.kind])
        _fsync_directory(target)
    installed = tuple(_installed(db, target / INSTALLED_FILES[db.kind]) for db in verified)
    if maxmind is None:
        return UpdateReport(source="dbip", databases=installed, attribution=DBIP_ATTRIBUTION)
    return UpdateReport(source="maxmind", databases=installed, attribution=MAXMIND_ATTRIBUTION)


def _installed(db: InstalledDatabase, path: Path) -> InstalledDatabase:
    return InstalledDatabase(db.kind, path, db.url, db.database_type, db.build_date, db.sha256)


# --------------------------------------------------------------------------- sources


def _months(today: date) -> tuple[str, str]:
    previous = today.replace(day=1) - timedelta(days=1)
    return today.strftime("%Y-%m"), previous.strftime("%Y-%m")


def _fetch_dbip(http: httpx.Client, base_url: str, kind: Kind, today: date, part: Path) -> _Staged:
    """This month's file, or last month's while this month's is not published."""
    urls = [f"{base_url.rstrip('/')}/dbip-{kind}-lite-{month}.mmdb.gz" for month in _months(today)]
    for url in urls:
        try:
            with _durable(part) as sink:
                gunzip = _Gunzip(sink, url)
                _download(http, url, gunzip.write)
                gunzip.finish()
        except _NotPublished:
            continue
        return _Staged(kind=kind, path=part, url=url, sha256=None)  # DB-IP publishes no checksum file
    raise GeoipUpdateError(f"DB-IP has not published the {kind} database for this or last month ({' and '.join(urls)} answered 404)")


def _fetch_maxmind(
    http: httpx.Client, base_url: str, kind: Kind, account: MaxMindAccount, new_part: Callable[[str], Path]
) -> _Staged:
    """The archive, checked against its published sha256, then its one `.mmdb` member."""
    edition = MAXMIND_EDITIONS[kind]
    url = f"{base_url.rstrip('/')}/{edition}/download?suffix=tar.gz"
    auth = (account.account_id, account.license_key)
    expected = _published_sha256(http, f"{url}.sha256", auth)
    archive = new_part(f"{kind}-archive")
    with _durable(archive) as sink:
        actual = _download(http, url, sink.write, auth=auth)
    if actual != expected:
        raise GeoipUpdateError(f"the {edition} archive from {url} has sha256 {actual}, but MaxMind published {expected}")
    part = new_part(kind)
    _extract_member(archive, f"{edition}.mmdb", part, url)
    archive.unlink()
    return _Staged(kind=kind, path=part, url=url, sha256=actual)


def _published_sha256(http: httpx.Client, url: str, auth: tuple[str, str]) -> str:
    """MaxMind's companion file reads `<hex digest>  <archive name>`."""
    chunks: list[bytes] = []
    _download(http, url, chunks.append, auth=auth, limit=4096)
    text = b"".join(chunks).decode("ascii", "replace").split()
    if not text or not _SHA256.fullmatch(text[0]):
        raise GeoipUpdateError(f"{url} is not a sha256 checksum file")
    return text[0].lower()


def _extract_member(archive: Path, name: str, part: Path, url: str) -> None:
    """Copy the one member by its base name: nothing else of the archive touches the disk."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = next((m for m in tar if m.isfile() and PurePosixPath(m.name).name == name), None)
            if member is None:
                raise GeoipUpdateError(f"the archive from {url} has no {name}")
            if member.size > MAX_DATABASE_BYTES:
                raise GeoipUpdateError(f"{name} in the archive from {url} is larger than {MAX_DATABASE_BYTES} bytes")
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has a stream
            with source, _durable(part) as sink:
                shutil.copyfileobj(source, sink, CHUNK_BYTES)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise GeoipUpdateError(f"the archive from {url} cannot be read ({exc})") from exc


# --------------------------------------------------------------------------- HTTP


def _client() -> httpx.Client:
    """Redirects are followed (MaxMind answers with one to its storage); httpx drops the
    credentials when a redirect leaves the origin."""
    return httpx.Client(timeout=TIMEOUT, follow_redirects=True, headers={"User-Agent": USER_AGENT})


def _download(
    http: httpx.Client,
    url: str,
    write: Callable[[bytes], object],
    *,
    auth: tuple[str, str] | None = None,
    limit: int = MAX_DOWNLOAD_BYTES,
) -> str:
    """Stream the body into `write`; the sha256 of what was received."""
    digest = hashlib.sha256()
    received = 0
    try:
        with http.stream("GET", url, auth=auth) as response:
            _check_status(response, url)
            log.info("downloading %s", url)
            for chunk in response.iter_bytes(CHUNK_BYTES):
                received += len(chunk)
                if received > limit:
                    raise GeoipUpdateError(f"{url} sent more than {limit} bytes")
                digest.update(chunk)
                write(chunk)
    except httpx.HTTPError as exc:
        raise GeoipUpdateError(f"could not download {url}: {type(exc).__name__}: {exc or 'no detail'}") from exc
    return digest.hexdigest()


def _check_status(response: httpx.Response, url: str) -> None:
    status = response.status_code
    if status == 404:
        raise _NotPublished(f"{url} answered 404 Not Found")
    if status in (401, 403):
        raise GeoipUpdateError(f"{url} refused the credentials (HTTP {status}): check the account ID and license key")
    if status >= 400:
        raise GeoipUpdateError(f"{url} answered HTTP {status} {response.reason_phrase}")


class _Gunzip:
    """Decompress a gzip stream as it arrives; gzip's own CRC and length trailer catch a
    damaged or truncated download."""

    def __init__(self, sink: BinaryIO, url: str) -> None:
        self._sink = sink
        self._url = url
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._written = 0

    def write(self, data: bytes) -> None:
        try:
            while data:
                self._emit(self._inflate.decompress(data, CHUNK_BYTES))
                data = self._inflate.unconsumed_tail
                if self._inflate.eof and self._inflate.unused_data:  # a further gzip member
                    data = self._inflate.unused_data + data
                    self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise GeoipUpdateError(f"{self._url} is not a valid gzip file ({exc})") from exc

    def finish(self) -> None:
        if not self._inflate.eof:
            raise GeoipUpdateError(f"{self._url} ended before the end of its gzip stream (truncated download)")
        self._emit(self._inflate.flush())

    def _emit(self, data: bytes) -> None:
        self._written += len(data)
        if self._written > MAX_DATABASE_BYTES:
            raise GeoipUpdateError(f"{self._url} decompresses to more than {MAX_DATABASE_BYTES} bytes")
        self._sink.write(data)


# --------------------------------------------------------------------------- verification


def _verify(item: _Staged) -> InstalledDatabase:
    """Open the file as the server will, check its type, and make it answer a lookup."""
    what = f"the {item.kind} database from {item.url}"
    try:
        raw = maxminddb.open_database(str(item.path))
        reader = geoip2.database.Reader(str(item.path))
    except (maxminddb.InvalidDatabaseError, ValueError, OSError) as exc:
        raise GeoipUpdateError(f"{what} is not a valid MaxMind DB file ({exc})") from exc
    try:
        metadata = raw.metadata()
        database_type = metadata.database_type
        lookup, answered = _lookup_of(item.kind, reader, database_type, what)
        _probe(raw, lookup, answered, what)
        build_date = datetime.fromtimestamp(metadata.build_epoch, UTC).date().isoformat()
    finally:
        reader.close()
        raw.close()
    return InstalledDatabase(item.kind, item.path, item.url, database_type, build_date, item.sha256)


def _lookup_of(
    kind: Kind, reader: geoip2.database.Reader, database_type: str, what: str
) -> tuple[Callable[[str], Any], Callable[[Any], bool]]:
    """The same reader methods the server picks (see enrichment.GeoLocator)."""
    if kind == "city" and "City" in database_type:
        return reader.city, lambda answer: bool(answer.country.iso_code)
    if kind == "asn" and "ASN" in database_type:
        return reader.asn, lambda answer: answer.autonomous_system_number is not None
    expected = "a City" if kind == "city" else "an ASN"
    raise GeoipUpdateError(f"{what} is a {database_type!r} database, not {expected} database")


def _probe(raw: maxminddb.Reader, lookup: Callable[[str], Any], answered: Callable[[Any], bool], what: str) -> None:
    """A lookup of the file's first networks must answer: the tree, the data section and
    geoip2's model of them all work."""
    try:
        for network, _record in itertools.islice(raw, PROBE_NETWORKS):
            try:
                if answered(lookup(str(network.network_address))):
                    return
            except (geoip2.errors.AddressNotFoundError, ValueError):
                continue
    except TypeError as exc:  # geoip2 refuses a type it does not model for this method
        raise GeoipUpdateError(f"{what} cannot be read as its type claims ({exc})") from exc
    except (maxminddb.InvalidDatabaseError, KeyError, AttributeError) as exc:
        raise GeoipUpdateError(f"{what} is damaged ({type(exc).__name__}: {exc})") from exc
    raise GeoipUpdateError(f"{what} answered no lookup in its first {PROBE_NETWORKS} networks")


# --------------------------------------------------------------------------- files


@contextmanager
def _part_files(target: Path) -> Iterator[Callable[[str], Path]]:
    """Temporary files in the install folder (so the final rename is atomic), removed on
    the way out whatever happened; installed ones were renamed away already."""
    made: list[Path] = []

    def new_part(label: str) -> Path:
        fd, name = tempfile.mkstemp(dir=target, prefix=f".{label}-", suffix=".part")
        os.close(fd)
        made.append(Path(name))
        return made[-1]

    try:
        yield new_part
    finally:
        for path in made:
            path.unlink(missing_ok=True)


@contextmanager
def _durable(path: Path) -> Iterator[BinaryIO]:
    """Write from the start, then flush to disk before anyone renames the file into place;
    readable by the server's user like any installed data file."""
    with path.open("wb") as sink:
        yield sink
        sink.flush()
        os.fsync(sink.fileno())
    path.chmod(0o644)


def _fsync_directory(path: Path) -> None:
    """Make the renames themselves durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_parts(target: Path) -> None:
    """Leftovers of an update that was killed; a concurrent update's fresh ones are kept."""
    cutoff = time.time() - STALE_PART_SECONDS
    for part in target.glob(".*.part"):
        try:
            if part.stat().st_mtime < cutoff:
                part.unlink()
        except FileNotFoundError:
            continue
