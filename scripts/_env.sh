# Sourced by scripts/serve and scripts/test: make .venv with the locked dependencies.
# Usage: ensure_venv "" | ensure_venv "[dev]"
set -euo pipefail

find_python() {
  for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11 python; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "jobyard needs Python 3.11 or newer on PATH (or set PYTHON=/path/to/python3)" >&2
  return 1
}

ensure_venv() {
  local extra="$1"
  local py
  if [ ! -x .venv/bin/python ]; then
    py=$(find_python)
    echo "jobyard: creating .venv with $("$py" --version)" >&2
    "$py" -m venv .venv
  fi
  local stamp=".venv/.jobyard-installed${extra}"
  local want
  want=$(cat requirements.lock pyproject.toml | cksum)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "jobyard: installing dependencies from requirements.lock${extra:+ (with ${extra})}" >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
      -c requirements.lock -e ".${extra}" >&2
    echo "$want" > "$stamp"
  fi
}

# The job sandbox needs bubblewrap (Debian's package). As root with apt, install it when
# missing; elsewhere say that jobs will not be sandboxed (the sandbox tests then skip).
ensure_sandbox_tools() {
  command -v bwrap >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "jobyard: installing bubblewrap for job sandboxes (apt-get)" >&2
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q bubblewrap >/dev/null 2>&1; }; then
      return 0
    fi
  fi
  echo "jobyard: bubblewrap is not installed: jobs will not be sandboxed (docs/explanation/security.md)" >&2
}

# The dashboard's browser tests (tests/web) drive Debian's chromium (Playwright's own
# browser download cannot work here). As root with apt, install it when missing.
ensure_browser() {
  command -v chromium >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "jobyard: installing chromium for the dashboard's browser tests (apt-get)" >&2
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1; }; then
      return 0
    fi
  fi
  echo "jobyard: chromium is not installed: the browser tests (tests/web) will fail" >&2
}
