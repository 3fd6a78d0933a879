"""Tortoise ORM models, one module per domain. Tables are created by the SQL migrations in
`models/migrations/` (partitioned tables and BRIN indexes need SQL), never by
`generate_schemas`."""
