"""The migrated catalog, checked as a whole: every table is ready to be distributed by tenant
(or is a declared reference table)."""

from __future__ import annotations

import uuid

from app.database import connection
from models.tables import DISTRIBUTION_COLUMN, REFERENCE_TABLES

TABLES = """
SELECT c.oid, c.relname AS name,
       (SELECT a.attnotnull FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped) AS tenant_not_null
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $2 AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY c.relname
"""
UNIQUE_INDEXES = """
SELECT i.relname AS name, ix.indisprimary AS is_primary,
       ARRAY(SELECT a.attname FROM unnest(ix.indkey) WITH ORDINALITY AS k(n, i) JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.n WHERE k.i <= ix.indnkeyatts) AS columns
FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid
WHERE ix.indrelid = $1 AND ix.indisunique
"""
FOREIGN_KEYS = """
SELECT con.conname AS name, target.relname AS target,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) AS k(n) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n) AS columns,
       ARRAY(SELECT a.attname FROM unnest(con.confkey) AS k(n) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n) AS target_columns
FROM pg_constraint con JOIN pg_class target ON target.oid = con.confrelid
WHERE con.conrelid = $1 AND con.contype = 'f'
"""


async def catalog(schema: str = "public") -> dict[str, dict]:
    async with connection() as conn:
        tables = await conn.fetch(TABLES, DISTRIBUTION_COLUMN, schema)
        return {
            t["name"]: {
                "tenant_not_null": t["tenant_not_null"],
                "unique": [dict(r) for r in await conn.fetch(UNIQUE_INDEXES, t["oid"])],
                "foreign_keys": [dict(r) for r in await conn.fetch(FOREIGN_KEYS, t["oid"])],
            }
            for t in tables
        }


def distribution_problems(tables: dict[str, dict], reference: frozenset[str]) -> list[str]:
    """What keeps each non-reference table from being distributed by organization_id."""
    problems = []
    for name, table in tables.items():
        if name in reference:
            problems += [f"{name}.{fk['name']}: a reference table points into the distributed table {fk['target']}"
                         for fk in table["foreign_keys"] if fk["target"] not in reference]  # fmt: skip
            continue
        if not table["tenant_not_null"]:
            problems.append(f"{name}: no NOT NULL {DISTRIBUTION_COLUMN}")
        if not any(index["is_primary"] for index in table["unique"]):
            problems.append(f"{name}: no primary key")
        problems += [f"{name}.{index['name']}: unique on {index['columns']} without {DISTRIBUTION_COLUMN}"
                     for index in table["unique"] if DISTRIBUTION_COLUMN not in index["columns"]]  # fmt: skip
        for fk in table["foreign_keys"]:
            if fk["target"] in reference:
                continue
            pairs = list(zip(fk["columns"], fk["target_columns"], strict=True))
            if (DISTRIBUTION_COLUMN, DISTRIBUTION_COLUMN) not in pairs:
                problems.append(f"{name}.{fk['name']}: joins {fk['target']} without {DISTRIBUTION_COLUMN}")
    return problems


async def test_every_tenant_table_can_be_distributed_by_organization(app):
    tables = await catalog()
    assert distribution_problems(tables, REFERENCE_TABLES) == []
    assert REFERENCE_TABLES <= set(tables), "a reference table that the migrations do not create"


async def test_the_check_finds_what_would_stop_distribution(app):
    """The check itself: tables made to break each rule are each reported."""
    schema = f"catalog_probe_{uuid.uuid4().hex[:8]}"
    async with connection() as conn:
        await conn.execute(f"""
            CREATE SCHEMA {schema};
            CREATE TABLE {schema}.no_key (organization_id uuid NOT NULL, id int);
            CREATE TABLE {schema}.global_id (organization_id uuid NOT NULL, id int PRIMARY KEY);
            CREATE TABLE {schema}.nullable (organization_id uuid, id int NOT NULL, UNIQUE (organization_id, id));
            CREATE TABLE {schema}.child (organization_id uuid NOT NULL, id int, parent int, PRIMARY KEY (organization_id, id),
                CONSTRAINT tenant_fk FOREIGN KEY (organization_id, parent) REFERENCES {schema}.nullable (organization_id, id),
                CONSTRAINT global_fk FOREIGN KEY (parent) REFERENCES {schema}.global_id (id));
            CREATE TABLE {schema}.ref (organization_id uuid, id int PRIMARY KEY,
                CONSTRAINT ref_fk FOREIGN KEY (organization_id, id) REFERENCES {schema}.child (organization_id, id));
        """)  # fmt: skip
    try:
        problems = distribution_problems(await catalog(schema), frozenset({"ref"}))
    finally:
        async with connection() as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")
    assert sorted(problems) == sorted([
        "no_key: no primary key",
        "global_id.global_id_pkey: unique on ['id'] without organization_id",
        "nullable: no NOT NULL organization_id",
        "nullable: no primary key",
        "child.global_fk: joins global_id without organization_id",
        "ref.ref_fk: a reference table points into the distributed table child",
    ])  # fmt: skip
