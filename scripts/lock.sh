#!/usr/bin/env bash
# Regenerate requirements-test.lock (runtime + the `test` extra) and requirements.lock (runtime)
# from pyproject.toml: exact versions with PyPI's sha256 hashes, resolved for CPython 3.11 on
# Linux x86_64, which run.sh, test.sh and CI install with `pip install --require-hashes`.
#
# Needs uv (`python3 -m pip install uv` or `pipx install uv`). Versions already in the lock files
# are kept while pyproject.toml allows them; extra arguments go to `uv pip compile`:
#   scripts/lock.sh                              # after editing pyproject.toml
#   scripts/lock.sh --upgrade-package starlette  # move one package to its newest allowed version
#   scripts/lock.sh --upgrade                    # move everything
set -euo pipefail
cd "$(dirname "$0")/.."
uv="${UV:-uv}"
common=(
  --python-version 3.11 --python-platform x86_64-unknown-linux-gnu
  --index-url https://pypi.org/simple --generate-hashes
  --custom-compile-command "scripts/lock.sh   (uv pip compile for CPython 3.11 on Linux x86_64; needs uv: pip install uv)" --quiet
)
# The test lock first; the runtime lock is held to its versions, so the tests run what ships.
"$uv" pip compile pyproject.toml --extra test "${common[@]}" "$@" --output-file requirements-test.lock
"$uv" pip compile pyproject.toml --constraint requirements-test.lock "${common[@]}" "$@" --output-file requirements.lock
