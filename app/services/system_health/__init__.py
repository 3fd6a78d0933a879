"""System health: API performance recorded by every API process and merged from PostgreSQL,
database pools and slowest statements, and their Prometheus exposition."""
