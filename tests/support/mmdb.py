"""Real MaxMind-format databases for tests, written with mmdb-writer and read back by the
real `geoip2` reader, so lookups are tested the way production runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mmdb_writer import MMDBWriter
from netaddr import IPSet  # type: ignore[import-untyped]


def write_mmdb(path: Path, database_type: str, records: dict[str, dict[str, Any]], *, ip_version: int = 6) -> str:
    """`database_type` ("GeoLite2-City", "GeoLite2-ASN") decides which geoip2 methods accept it."""
    writer = MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en"],
        description=f"pulsegraph test {database_type}",
    )
    for network, record in records.items():
        writer.insert_network(IPSet([network]), record)
    writer.to_db_file(str(path))
    return str(path)
