#!/usr/bin/env bash
# Run the whole test suite: installs requirements-test.lock into .venv on first use. Uses
# DATABASE_URL (a fresh database is created on that server) or an embedded PostgreSQL;
# broadcast tests also run against Redis when REDIS_URL is set.
# Extra arguments go to pytest, e.g. ./test.sh -k ingestion
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv requirements-test.lock
exec .venv/bin/python -m pytest "$@"
