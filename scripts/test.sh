#!/usr/bin/env bash
# The whole test suite exactly as CI runs it: lint, architecture contract, then pytest on SQLite and on
# PostgreSQL (a throw-away cluster started here). Installs what it needs on Debian/Ubuntu when it can.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else return 1; fi; }

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need_apt+=(postgresql)
{ ls /usr/lib/*/libpangoft2-1.0.so.0 /usr/lib/*/libharfbuzz-subset.so.0 && fc-list :lang=ru | grep DejaVu &&
  command -v pdftotext; } >/dev/null 2>&1 ||
  need_apt+=(libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core poppler-utils)
# Report PNGs (matplotlib) are drawn in DejaVu Sans, which has Cyrillic.
fc-list | grep -q "DejaVu Sans" || need_apt+=(fonts-dejavu-core)
# The widget's browser test drives Debian's Chromium through Playwright (never Playwright's own download).
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
# The amo shell's transport is also checked over the real jQuery 3 that amo's $authorizedAjax wraps.
[ -f /usr/share/javascript/jquery/jquery.js ] || need_apt+=(libjs-jquery)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

echo "== ruff"
.venv/bin/ruff check .

echo "== pytest on SQLite"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"

echo "== pytest on PostgreSQL"
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
PGDATA=$(mktemp -d /tmp/clinicbridge-pg.XXXXXX)
PGPORT=$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres "$PGDATA"
cleanup() { run_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$PGDATA"; }
trap cleanup EXIT
run_pg "$PGBIN/initdb" -D "$PGDATA" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
run_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/log" -w start \
  -o "-p $PGPORT -k $PGDATA -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" >/dev/null
"$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -qc "CREATE DATABASE clinicbridge_test" >/dev/null
TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:$PGPORT/clinicbridge_test" \
  .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
echo "== all green (SQLite and PostgreSQL) in $ROOT"
