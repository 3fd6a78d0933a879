"""Every Tortoise model against the migrated catalog: each migrated table has a model, and
each model is its table (columns, SQL types, nullability, defaults, identity columns, the
primary key and unique constraints). A migration that adds a table or a column without its
model, or a model edited without a migration, fails here naming the table and the column."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from tortoise import Tortoise, fields
from tortoise.contrib.postgres.fields import ArrayField
from tortoise.fields.db_defaults import SqlDefault
from tortoise.models import Model

from app.database import connection
from models import TABLES_WITHOUT_MODELS
from models.fields import FixedCharField, InetField, RealField, TextKeyField

# The one mapping from a Tortoise field class to the catalog's type (`udt_name`, with its
# length or precision). Exact classes: a subclass (FixedCharField is a CharField) is a
# different column type, and a field class missing here is reported, never guessed.
SQL_TYPE_OF_FIELD: dict[type[fields.Field], Callable[[Any], str]] = {
    fields.UUIDField: lambda f: "uuid",
    fields.TextField: lambda f: "text",
    TextKeyField: lambda f: "text",
    fields.CharField: lambda f: f"varchar({f.max_length})",
    FixedCharField: lambda f: f"bpchar({f.max_length})",
    fields.SmallIntField: lambda f: "int2",
    fields.IntField: lambda f: "int4",
    fields.BigIntField: lambda f: "int8",
    fields.BooleanField: lambda f: "bool",
    fields.FloatField: lambda f: "float8",
    RealField: lambda f: "float4",
    fields.DecimalField: lambda f: f"numeric({f.max_digits},{f.decimal_places})",
    fields.DatetimeField: lambda f: "timestamptz",
    fields.DateField: lambda f: "date",
    fields.BinaryField: lambda f: "bytea",
    fields.JSONField: lambda f: "jsonb",
    InetField: lambda f: "inet",
    ArrayField: lambda f: "_" + ARRAY_ELEMENTS.get(f.element_type, f"unmapped {f.element_type}"),
}
ARRAY_ELEMENTS = {"TEXT": "text", "INT": "int4", "INTEGER": "int4", "BIGINT": "int8", "UUID": "uuid"}

COLUMNS = """
SELECT c.table_name, c.column_name, c.udt_name, c.character_maximum_length AS length,
       c.numeric_precision AS precision, c.numeric_scale AS scale, c.is_nullable = 'YES' AS nullable,
       c.column_default AS default, c.is_identity = 'YES' AS identity
FROM information_schema.columns c
JOIN pg_namespace n ON n.nspname = c.table_schema
JOIN pg_class t ON t.relnamespace = n.oid AND t.relname = c.table_name
WHERE c.table_schema = $1 AND t.relkind IN ('r', 'p') AND NOT t.relispartition
ORDER BY c.table_name, c.ordinal_position
"""
# Primary keys and plain unique constraints; partial and expression unique indexes (e.g.
# fraud_alerts_active) have no Tortoise equivalent and are named in their model's docstring.
UNIQUE_KEYS = """
SELECT t.relname AS table_name, ix.indisprimary AS is_primary,
       ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(n, i)
             JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.n WHERE k.i <= ix.indnkeyatts) AS columns
FROM pg_index ix JOIN pg_class t ON t.oid = ix.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = $1 AND ix.indisunique AND ix.indpred IS NULL AND ix.indexprs IS NULL AND NOT t.relispartition
"""


@dataclass(frozen=True)
class Column:
    name: str
    udt: str
    sql_type: str  # udt with its length or precision: varchar(64), bpchar(3), numeric(24,12)
    nullable: bool
    default: str | None  # the default expression as PostgreSQL prints it
    identity: bool


@dataclass
class Table:
    name: str
    columns: dict[str, Column] = field(default_factory=dict)
    primary_key: frozenset[str] = frozenset()
    unique: set[frozenset[str]] = field(default_factory=set)  # the primary key included


async def migrated_tables(conn: asyncpg.Connection, schema: str = "public") -> dict[str, Table]:
    """Base tables and partitioned parents of `schema` (never their partitions)."""
    tables: dict[str, Table] = {}
    for row in await conn.fetch(COLUMNS, schema):
        table = tables.setdefault(row["table_name"], Table(row["table_name"]))
        table.columns[row["column_name"]] = Column(
            row["column_name"], row["udt_name"], _catalog_type(row), row["nullable"], row["default"], row["identity"]
        )
    for row in await conn.fetch(UNIQUE_KEYS, schema):
        key = frozenset(row["columns"])
        tables[row["table_name"]].unique.add(key)
        if row["is_primary"]:
            tables[row["table_name"]].primary_key = key
    return tables


def _catalog_type(row: Mapping[str, Any]) -> str:
    if row["length"] is not None:
        return f"{row['udt_name']}({row['length']})"
    if row["udt_name"] == "numeric" and row["precision"] is not None:
        return f"numeric({row['precision']},{row['scale']})"
    return row["udt_name"]


def registered_models() -> list[type[Model]]:
    """The models Tortoise loaded from MODEL_MODULES: a model outside them does not count."""
    assert Tortoise.apps is not None, "Tortoise is not initialised"
    return list(Tortoise.apps.get_models_iterable())


async def model_drift(
    conn: asyncpg.Connection, models: Iterable[type[Model]], tables: Mapping[str, Table], without_models: Mapping[str, str]
) -> list[str]:
    """Every difference between the models and the migrated tables, one line each."""
    by_table: dict[str, type[Model]] = {}
    problems = []
    for model in models:
        name = model._meta.db_table
        if name in by_table:
            problems.append(f"{name}: two models, {by_table[name].__name__} and {model.__name__}")
        by_table[name] = model
    problems += [f"{name}: a migrated table without a model (add one in models/, its module in MODEL_MODULES)"
                 for name in sorted(set(tables) - set(by_table) - set(without_models))]  # fmt: skip
    problems += [f"{name}: model {by_table[name].__name__} has no migrated table" for name in sorted(set(by_table) - set(tables))]
    for name in sorted(set(by_table) & set(tables)):
        problems += await table_drift(conn, by_table[name], tables[name])
    return problems


async def table_drift(conn: asyncpg.Connection, model: type[Model], table: Table) -> list[str]:
    fields_by_column = {column: model._meta.fields_map[name] for name, column in model._meta.fields_db_projection.items()}
    problems = [f"{table.name}.{c}: a column model {model.__name__} lacks" for c in table.columns if c not in fields_by_column]
    problems += [f"{table.name}.{c}: model {model.__name__} has a column the table lacks" for c in fields_by_column if c not in table.columns]
    for name in [c for c in table.columns if c in fields_by_column]:
        problems += await column_drift(conn, table.name, table.columns[name], fields_by_column[name])
    return problems + key_drift(model, table)


async def column_drift(conn: asyncpg.Connection, table: str, column: Column, model_field: fields.Field) -> list[str]:
    where = f"{table}.{column.name}"
    to_sql = SQL_TYPE_OF_FIELD.get(type(model_field))
    problems = []
    if to_sql is None:
        problems.append(f"{where}: no SQL type known for {type(model_field).__name__} (add it to SQL_TYPE_OF_FIELD)")
    elif to_sql(model_field) != column.sql_type:
        problems.append(f"{where}: the model says {to_sql(model_field)}, the table is {column.sql_type}")
    if model_field.null != column.nullable:
        problems.append(f"{where}: the model says null={model_field.null}, the table is {'NULL' if column.nullable else 'NOT NULL'}")
    if model_field.generated != column.identity:
        problems.append(f"{where}: the model says generated={model_field.generated}, the table {'is' if column.identity else 'is not'} an identity column")
    problem = await default_drift(conn, where, column, model_field)
    return problems + ([problem] if problem else [])


async def default_drift(conn: asyncpg.Connection, where: str, column: Column, model_field: fields.Field) -> str | None:
    """The model's `db_default` must be the table's DEFAULT: the ORM leaves such columns out
    of its INSERT, so a missing one would insert NULL where the table would fill a value."""
    has_default = model_field.has_db_default()
    if column.default is None:
        return f"{where}: the model says db_default={model_field.db_default!r}, the table has no default" if has_default else None
    if not has_default:
        return f"{where}: the table defaults to {column.default}, the model has no db_default"
    if await _same_default(conn, column, model_field):
        return None
    return f"{where}: the table defaults to {column.default}, the model to {model_field.db_default!r}"


async def _same_default(conn: asyncpg.Connection, column: Column, model_field: fields.Field) -> bool:
    """Same expression (now(), clock_timestamp()), or the same value once cast to the column's type."""
    value = model_field.db_default
    if isinstance(value, SqlDefault):
        sql, args = value.get_sql(dialect="postgres"), []
        if "".join(sql.lower().split()) == "".join(column.default.lower().split()):
            return True
    else:
        sql, args = "$1::text", [str(model_field.to_db_value(value, model_field.model))]
    try:
        return await conn.fetchval(f"SELECT ({column.default})::{column.udt} IS NOT DISTINCT FROM ({sql})::{column.udt}", *args)
    except asyncpg.PostgresError:
        return False


def key_drift(model: type[Model], table: Table) -> list[str]:
    """The Tortoise primary key is one column of the table's key, and the model's unique sets
    (unique fields, `unique_together`, the primary key when no unique_together holds it) are
    the table's primary key and unique constraints."""
    meta = model._meta
    pk = meta.fields_db_projection[meta.pk_attr]
    problems = []
    if pk not in table.primary_key:
        problems.append(f"{table.name}: model {model.__name__}'s primary key {pk} is not in the table's primary key {_names(table.primary_key)}")
    keys = model_unique_keys(model)
    problems += [f"{table.name}: unique {_names(k)} in the table, not in model {model.__name__}" for k in table.unique - keys]
    problems += [f"{table.name}: model {model.__name__} says unique {_names(k)}, the table does not" for k in keys - table.unique]
    return sorted(problems)


def model_unique_keys(model: type[Model]) -> set[frozenset[str]]:
    meta = model._meta

    def column(name: str) -> str:
        model_field = meta.fields_map[name]
        return getattr(model_field, "source_field", None) or meta.fields_db_projection.get(name, name)

    together = {frozenset(column(n) for n in names) for names in meta.unique_together}
    pk = column(meta.pk_attr)
    singles = {frozenset({column(n)}) for n, f in meta.fields_map.items() if f.unique and not f.pk and n in meta.fields_db_projection}
    pk_alone = set() if any(pk in key for key in together) else {frozenset({pk})}
    return together | singles | pk_alone


def _names(columns: Iterable[str]) -> str:
    return "(" + ", ".join(sorted(columns)) + ")"


async def test_every_migrated_table_has_a_model_that_is_its_table(app):
    async with connection() as conn:
        tables = await migrated_tables(conn)
        problems = await model_drift(conn, registered_models(), tables, TABLES_WITHOUT_MODELS)
    assert problems == [], "models and migrated tables differ:\n" + "\n".join(problems)
    assert set(TABLES_WITHOUT_MODELS) <= set(tables), "TABLES_WITHOUT_MODELS names a table the migrations do not create"


async def test_the_comparison_reports_each_kind_of_drift(app):
    """A probe schema with a table a model gets wrong in every way, and a table without a model."""
    schema = f"models_probe_{uuid.uuid4().hex[:8]}"

    class Widget(Model):
        organization_id = fields.UUIDField()
        id = fields.BigIntField()  # the table's is an identity column
        code = fields.CharField(max_length=3, primary_key=True, db_default="ABC")  # char(3), not in the key
        name = fields.CharField(max_length=20)  # varchar(40), unique per organization
        note = fields.TextField()  # nullable in the table
        hits = fields.IntField(db_default=1)  # DEFAULT 0
        colour = fields.TextField()  # no such column; seen_at is missing

        class Meta:
            table = "widgets"
            unique_together = (("organization_id", "id"),)

    class Ghost(Model):
        id = fields.UUIDField(primary_key=True)

        class Meta:
            table = "ghosts"

    async with connection() as conn:
        await conn.execute(f"""
            CREATE SCHEMA {schema};
            CREATE TABLE {schema}.widgets (
                organization_id uuid NOT NULL,
                id bigint GENERATED ALWAYS AS IDENTITY,
                code char(3) NOT NULL DEFAULT 'ABC',
                name varchar(40) NOT NULL,
                note text,
                hits integer NOT NULL DEFAULT 0,
                seen_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (organization_id, id),
                UNIQUE (organization_id, name));
            CREATE TABLE {schema}.revocations (organization_id uuid NOT NULL, jti text NOT NULL,
                PRIMARY KEY (organization_id, jti));
        """)  # fmt: skip
        try:
            problems = await model_drift(conn, [Widget, Ghost], await migrated_tables(conn, schema), {})
        finally:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    assert sorted(problems) == sorted([
        "revocations: a migrated table without a model (add one in models/, its module in MODEL_MODULES)",
        "ghosts: model Ghost has no migrated table",
        "widgets.seen_at: a column model Widget lacks",
        "widgets.colour: model Widget has a column the table lacks",
        "widgets.id: the model says generated=False, the table is an identity column",
        "widgets.code: the model says varchar(3), the table is bpchar(3)",
        "widgets.name: the model says varchar(20), the table is varchar(40)",
        "widgets.note: the model says null=False, the table is NULL",
        "widgets.hits: the table defaults to 0, the model to 1",
        "widgets: model Widget's primary key code is not in the table's primary key (id, organization_id)",
        "widgets: unique (name, organization_id) in the table, not in model Widget",
        "widgets: model Widget says unique (code), the table does not",
    ])  # fmt: skip


async def test_the_models_read_and_write_what_the_tables_hold(tenant):
    """The ORM through the models: defaults come back from the insert, char(n) without its
    padding, inet as its text form, jsonb and text[] as Python values."""
    from models.fraud import FraudRule
    from models.ingestion import Event
    from models.organizations import Organization

    created = tenant.organization  # made by the organizations service through the ORM
    assert (created.status, created.duo_split_percent, created.ip_retention_days, created.event_retention_days) == ("active", 50, 90, 395)
    assert created.created_at is not None and created.reporting_currency is None
    read = await Organization.get(slug=created.slug)
    assert (read.currency, read.status) == ("USD", "active") and abs(read.gov_alert_threshold - 0.7) < 1e-6

    event_id = f"models-{uuid.uuid4().hex}"
    written = await Event.create(
        organization_id=created.id, occurred_at=datetime.now(UTC), event_id=event_id, type="page.viewed",
        ip="2001:db8::7", country="D", currency="EUR",
    )  # fmt: skip
    assert written.properties == {} and written.dnt is False and written.received_at is not None
    event = await Event.get(organization_id=created.id, event_id=event_id)
    assert (event.ip, event.country, event.currency, event.properties) == ("2001:db8::7", "D", "EUR", {})
    async with connection() as conn:
        stored = await conn.fetchrow("SELECT host(ip) AS ip, country FROM events WHERE organization_id = $1 AND event_id = $2", created.id, event_id)
    assert (stored["ip"], stored["country"]) == ("2001:db8::7", "D ")  # the table pads char(2)

    rules = await FraudRule.filter(organization_id=created.id).order_by("name")
    assert len(rules) == 5 and all(isinstance(rule.params, dict) and rule.enabled for rule in rules)
