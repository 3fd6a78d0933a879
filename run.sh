#!/usr/bin/env bash
# Run pulsegraph: installs itself into .venv on first use (dependencies from requirements.lock),
# starts an embedded PostgreSQL unless DATABASE_URL is set, migrates, seeds the demo data once,
# serves GraphQL on http://127.0.0.1:8000/graphql with the worker in the same process.
# Extra arguments go to `pulsegraph serve`, e.g. ./run.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")"
source scripts/venv.sh
ensure_venv requirements.lock
exec .venv/bin/pulsegraph serve "$@"
