"""gunicorn settings of the web process: the Procfile's `web:` line and `clinicbridge run` both load this
module (`--config python:widget_server.gunicorn_conf`); command-line options still override it."""

from __future__ import annotations

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"

# One sync worker per core unless WEB_CONCURRENCY (Heroku's and gunicorn's name) says otherwise. The
# request path is CPU-bound: on the 2-core bench machine 2 workers served 368 charges/s (SQLite) and 334
# (PostgreSQL), 5 workers (gunicorn's "2 × cores + 1") 310 and 286, each extra worker adding context
# switches and, on SQLite, another writer queueing at the gate.
workers = int(os.environ.get("WEB_CONCURRENCY") or os.cpu_count() or 1)

# The worker heartbeat is a file touched on every loop; on tmpfs that costs no disk (gunicorn's advice
# for containers, whose /tmp is often an overlay). /healthz measured 2 650 → 2 810 req/s.
# gunicorn creates the file itself with mkstemp (private, unlinked at once), so a shared tmpfs is safe.
_SHM = "/dev/shm"  # noqa: S108
if os.path.isdir(_SHM):
    worker_tmp_dir = _SHM

# No access log of gunicorn's own: the app writes one structured JSON line per request (method, path,
# status, duration, request id, portal, actor, caller's address); a second, unstructured line per request
# would double the logging cost of the busiest endpoints and say less.
accesslog = None


def post_worker_init(worker: object) -> None:
    # Report PNGs: matplotlib and its font load in each web worker after fork, before its first request
    # (a first 12-month PNG stays under 1 s); rq workers and the CLI, which never draw, skip it (≈ 0.16 s).
    from widget_server import background_redis, runtime, sqlite_writer_gate
    from widget_server.reports.render import warm_up

    warm_up()
    # Outbox wake-ups and API throttle counts leave the request for a thread of the worker's own.
    background_redis.start()
    # Requests run on this thread: it waits for SQLite's writer gate in the kernel (handed over at once).
    sqlite_writer_gate.wait_blocking()
    # WAL checkpoints (a copy and two fsyncs, every ~75 charges) leave the requests' COMMITs for a thread.
    runtime.current().db.checkpoint_in_background()


def worker_exit(server: object, worker: object) -> None:
    # What the thread has not sent yet goes now (a wake-up lost otherwise waits for the outbox sweep).
    from widget_server import background_redis

    background_redis.stop()
