"""Tortoise ORM models, one module per domain (the same names as `app/services/`), each the
exact shape of a table the SQL migrations in `models/migrations/` create: partitioned tables,
BRIN and partial indexes need SQL, so tables are never made by `generate_schemas`.
`tests/test_models.py` compares every model with the migrated catalog.

Tortoise wants one primary-key column per model. Where a table's key has several columns,
the model's primary key is one of them, its docstring names the real key and
`Meta.unique_together` carries it: query by the whole key, since an instance's save() or
delete() goes by the one column.
"""

from __future__ import annotations

TABLES_WITHOUT_MODELS: dict[str, str] = {
    "schema_migrations": (
        "the migrator's own ledger of applied versions: app/database.py creates and reads it "
        "before any migration or model is involved, and nothing else touches it"
    ),
}
