# Shared by run.sh and test.sh: create .venv and install a lock file (exact versions, checked
# against their hashes) and then the project itself, again whenever the lock or pyproject.toml
# changes. The lock files come from scripts/lock.sh.
ensure_venv() {
  local lock="$1"  # requirements.lock (run) or requirements-test.lock (test)
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "pulsegraph needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    exit 1
  fi
  if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
  fi
  local stamp=".venv/.installed-${lock}"
  local inputs
  inputs="$(cat "$lock" pyproject.toml | "$python" -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$inputs" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet --require-hashes -r "$lock"
    .venv/bin/python -m pip install --quiet --no-deps -e .
    if ! .venv/bin/python -m pip check >/dev/null; then
      .venv/bin/python -m pip check >&2 || true
      echo "unmet requirements (above): if pulsegraph's are among them, $lock is out of date with" \
        "pyproject.toml: regenerate it with scripts/lock.sh" >&2
      exit 1
    fi
    echo "$inputs" >"$stamp"
  fi
}
