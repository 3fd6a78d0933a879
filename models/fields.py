"""Fields for the PostgreSQL types our tables use that Tortoise has no field for, and the
database defaults the tables declare.

Tortoise's `TextField` refuses to be a primary key or unique, its `CharField` is `varchar(n)`
and its `FloatField` is `double precision`; our tables have `text` keys, `char(n)` codes,
`real` thresholds and `inet` addresses. Each field here says exactly which column type it is,
so `tests/test_models.py` can hold every model to its migrated table.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from tortoise import fields
from tortoise.exceptions import ValidationError
from tortoise.fields.db_defaults import SqlDefault

NOW = SqlDefault("now()")  # DEFAULT now(): the start of the inserting transaction
CLOCK = SqlDefault("clock_timestamp()")  # DEFAULT clock_timestamp(): the moment of the insert


class TextKeyField(fields.Field[str], str):  # type: ignore[misc]
    """A `text` column that is a primary key or unique: `TextField` refuses both, and a
    `CharField` would claim a `varchar(n)` limit the table does not have."""

    SQL_TYPE = "TEXT"


class FixedCharField(fields.CharField):
    """A `char(n)` column (ISO codes). PostgreSQL pads shorter values with blanks and ignores
    trailing blanks in comparisons; reads strip them so 'D ' comes back as the 'D' written."""

    @property
    def SQL_TYPE(self) -> str:  # type: ignore[override]  # noqa: N802 - Tortoise's attribute name
        return f"CHAR({self.max_length})"

    def to_python_value(self, value: Any) -> Any:
        value = super().to_python_value(value)
        return value.rstrip(" ") if isinstance(value, str) else value


class RealField(fields.FloatField):
    """A `real` (float4) column: values read back with single precision (0.7 is 0.699999988)."""

    SQL_TYPE = "REAL"

    class _db_postgres:
        SQL_TYPE = "REAL"


class InetField(fields.Field[str], str):  # type: ignore[misc]
    """An `inet` column, as PostgreSQL's text form ('203.0.113.7', '2001:db8::1',
    '10.0.0.1/24'): asyncpg reads it as an `ipaddress` object and takes one to write."""

    SQL_TYPE = "INET"

    def to_db_value(self, value: Any, instance: Any) -> Any:
        if value is None:
            return None
        try:
            return ipaddress.ip_interface(str(value))
        except ValueError as exc:
            raise ValidationError(f"{self.model_field_name}: {value!r} is not an IP address") from exc

    def to_python_value(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, ipaddress.IPv4Interface | ipaddress.IPv6Interface) and value.network.prefixlen == value.max_prefixlen:
            return str(value.ip)
        return str(value)
