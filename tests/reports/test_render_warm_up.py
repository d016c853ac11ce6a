"""matplotlib is loaded only where charts are drawn: not by importing the app, the jobs or the CLI (rq
workers and cron pay nothing for it), but by a web worker's post-fork hook or the first PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
    )
    return done.stdout.strip()


def test_the_app_jobs_and_cli_do_not_import_matplotlib() -> None:
    code = (
        "import sys, widget_server.wsgi, widget_server.jobs.schedule, widget_server.jobs.payroll, "
        "widget_server.cli; print('matplotlib' in sys.modules)"
    )
    assert _run(code) == "False"


def test_the_web_workers_hook_loads_matplotlib_and_its_font(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The hook also starts the worker's SQLite checkpoint thread, on a runtime built from the environment.
    env = {
        **os.environ,
        "CLINICBRIDGE_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    code = (
        "import sys, importlib; conf = importlib.import_module('widget_server.gunicorn_conf'); "
        "conf.post_worker_init(None); "
        "from widget_server.reports import render; "
        "print('matplotlib' in sys.modules, render._matplotlib.cache_info().currsize)"
    )
    assert _run(code, env) == "True 1"
