#!/usr/bin/env bash
# Quick start: virtualenv, install, migrate, demo sandbox portal, Redis, web + worker + scheduler.
# Re-runnable. Extra arguments go to `clinicbridge up` (e.g. --port 8000, --check).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY' || { echo "ClinicBridge needs Python 3.11 or newer (set PYTHON=...)" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .

if ! command -v redis-server >/dev/null 2>&1 && [ -z "${REDIS_URL:-}" ]; then
  echo "note: redis-server not found (sudo apt-get install redis-server); falling back to in-process jobs" >&2
fi
exec .venv/bin/clinicbridge up "$@"
