"""gunicorn settings of the web process: the Procfile's `web:` line and `clinicbridge run` both load this
module (`--config python:widget_server.gunicorn_conf`); command-line options still override it."""

from __future__ import annotations

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# Sync workers spend part of every request waiting on the database and Redis; with one worker per core
# that wait leaves a core idle. gunicorn's own advice is 2 × cores + 1; WEB_CONCURRENCY (Heroku's and
# gunicorn's name for it) still decides where the platform sizes the dyno.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * (os.cpu_count() or 1) + 1)

# No access log of gunicorn's own: the app writes one structured JSON line per request (method, path,
# status, duration, request id, portal, actor, caller's address); a second, unstructured line per request
# would double the logging cost of the busiest endpoints and say less.
accesslog = None


def post_worker_init(worker: object) -> None:
    # Report PNGs: matplotlib and its font load in each web worker after fork, before its first request
    # (a first 12-month PNG stays under 1 s); rq workers and the CLI, which never draw, skip it (≈ 0.16 s).
    from widget_server.reports.render import warm_up

    warm_up()
