"""A 12-month report of each kind, in-process (no HTTP), over 100 000 patients and 300 000 visits: where
the time of `build_report` goes.

Run: .venv/bin/python bench/reports_year_bench.py [--postgres] [--db PATH] [--patients 100000]
     [--visits 300000] [--runs 3] [--profile]

Setup (not timed): the data of `callers_lookup_bench.build_clinic` (a temp SQLite file; --db keeps and
reuses one; --postgres a throw-away PostgreSQL 15 cluster). Timed: `build_report` for the last 12 months
grouped by month, then its CSV, and the primary report's PNG, --runs times each; printed min and max
against the issue's floor (≤ 1 s), with this process's CPU time beside the wall time (the machine may be
shared). --profile: cProfile of one primary report. Nothing is asserted.

First, in fresh interpreters (best of 3): what importing the app, the jobs and the CLI costs every process
(web, rq worker, cron, CLI) and whether that loads matplotlib, then what the web worker's post-fork
warm-up (gunicorn_conf.post_worker_init → reports.render.warm_up) takes. The PNGs are timed after that
warm-up, as a web worker draws them; the first run is in the max.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _support import PgCluster
from callers_lookup_bench import FLOOR_REPORT_S, NOW, REPORTS, build_clinic

from widget_server.db import Database
from widget_server.models import Portal
from widget_server.reports import build_report, make_period, render, report_csv, report_png

__all__ = ["main"]


def _time(label: str, runs: int, work) -> float:  # type: ignore[no-untyped-def]
    """Wall and CPU time of each run: on a shared machine the CPU time (this process; SQLite runs in it)
    is what the code costs, the wall time what a user would have waited here."""
    walls, cpus = [], []
    for _ in range(runs):
        started, cpu = time.perf_counter(), time.process_time()
        work()
        walls.append(time.perf_counter() - started)
        cpus.append(time.process_time() - cpu)
    print(
        f"  {label:34s} wall min {min(walls) * 1000:6.0f} ms  max {max(walls) * 1000:6.0f} ms   "
        f"CPU min {min(cpus) * 1000:6.0f} ms"
    )
    return max(walls)


_STARTUP = """
import sys, time
started = time.perf_counter()
import widget_server.wsgi, widget_server.jobs.schedule, widget_server.cli
imported = time.perf_counter() - started
loaded = "matplotlib" in sys.modules
started = time.perf_counter()
from widget_server.reports import render
getattr(render, "warm_up", lambda: None)()
print(imported, loaded, time.perf_counter() - started)
"""


def _startup() -> None:
    root = Path(__file__).resolve().parents[1]
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", _STARTUP], cwd=root, capture_output=True, text=True, check=True
        ).stdout.split()
        runs.append((float(out[0]), out[1] == "True", float(out[2])))
    imported, loaded, warm = min(r[0] for r in runs), runs[0][1], min(r[2] for r in runs)
    print(
        f"  process start (app + jobs + CLI imports) {imported * 1000:6.0f} ms, matplotlib "
        f"{'loaded' if loaded else 'not loaded'}; web worker warm-up after fork {warm * 1000:6.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--db", type=Path, help="an SQLite file to keep (built once, reused after)")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--visits", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    _startup()
    with tempfile.TemporaryDirectory(prefix="bench-reports-") as workdir:
        cluster = PgCluster() if args.postgres else None
        try:
            if cluster is not None:
                url = cluster.url
            else:
                path = args.db or Path(workdir) / "bench.sqlite3"
                url = f"sqlite:///{path}"
            label = "postgresql" if cluster else "sqlite"
            if cluster is not None or not (args.db and args.db.exists()):
                print(f"[{label}] setup: {args.patients} patients, {args.visits} visits ...", flush=True)
                build_clinic(url, args.patients, args.visits)
            db = Database(url)
            to = NOW.date()
            since = date(to.year - 1, to.month, to.day) + timedelta(days=1)
            worst = 0.0
            with db.transaction() as s:
                portal = s.scalar(Portal.__table__.select().with_only_columns(Portal.id).limit(1))
                period = make_period(since, to, "month", "Europe/Moscow")
                print(f"[{label}] {since} … {to} by month, {args.runs} runs each")
                for name in REPORTS:
                    document = lambda n=name: build_report(s, portal, n, period).document()  # noqa: E731
                    worst = max(worst, _time(f"{name} (JSON document)", args.runs, document))
                csv = lambda: report_csv(build_report(s, portal, "primary", period))  # noqa: E731
                png = lambda: report_png(build_report(s, portal, "primary", period))  # noqa: E731
                getattr(render, "warm_up", lambda: None)()  # as gunicorn's post_worker_init does
                worst = max(worst, _time("primary.csv", args.runs, csv))
                worst = max(worst, _time("primary.png", args.runs, png))
                verdict = "meets" if worst <= FLOOR_REPORT_S else "MISSES"
                print(f"[{label}] slowest {worst * 1000:.0f} ms {verdict} the ≤ {FLOOR_REPORT_S:g} s floor")
                if args.profile:
                    profiler = cProfile.Profile()
                    profiler.enable()
                    build_report(s, portal, "primary", period)
                    profiler.disable()
                    pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
            db.dispose()
        finally:
            if cluster is not None:
                cluster.stop()


if __name__ == "__main__":
    main()
