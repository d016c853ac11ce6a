"""The demo panel served for real, for the panel bench and the screenshots command. Not a bench itself.

A throw-away SQLite database and instance folder, `REDIS_URL=memory://` (jobs in-process), the demo
sandbox portal (`clinicbridge demo`'s data), and the app on a free 127.0.0.1 port: in this process
(werkzeug, threaded) for screenshots, or `gunicorn -w 2 --threads 4` in its own processes for the bench,
so the browser driver and the server do not share one interpreter. Debian's headless Chromium through
Playwright.
"""

from __future__ import annotations

import http.client
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from werkzeug.serving import make_server

from widget_server import create_app
from widget_server.cli.demo import ensure_demo
from widget_server.local_redis import free_port
from widget_server.migrations import upgrade
from widget_server.models import StayAccount

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "DemoServer", "demo_server"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@dataclass
class DemoServer:
    origin: str
    api_key: str
    in_stay_deal: str

    def shell_url(self, shell: str, *, lang: str = "ru", view: str = "") -> str:
        page = {"amocrm": "amocrm.html", "bitrix24": "bitrix24.html"}[shell]
        extra = f"&view={view}" if view else ""
        query = f"deal={self.in_stay_deal}&lang={lang}{extra}"
        return f"{self.origin}/static/widget/demo/{page}?{query}#key={self.api_key}"


ROOT = Path(__file__).resolve().parents[1]


def _gunicorn(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    binary = shutil.which("gunicorn", path=str(ROOT / ".venv" / "bin")) or "gunicorn"
    argv = [binary, "-w", "2", "--threads", "4", "-b", f"127.0.0.1:{port}", "widget_server.wsgi:app"]
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"gunicorn did not come up; see {log}")


@contextmanager
def demo_server(*, gunicorn: bool = False) -> Iterator[DemoServer]:
    with tempfile.TemporaryDirectory(prefix="cb-panel-") as tmp:
        state: dict = {}

        def dispatch(environ, start_response):  # type: ignore[no-untyped-def]
            return state["app"](environ, start_response)

        port = free_port() if gunicorn else 0
        server = None if gunicorn else make_server("127.0.0.1", 0, dispatch, threaded=True)
        origin = f"http://127.0.0.1:{port if gunicorn else server.server_port}"  # type: ignore[union-attr]
        database = f"sqlite:///{Path(tmp) / 'panel.sqlite3'}"
        upgrade(database)
        env = {
            "DATABASE_URL": database,
            "REDIS_URL": "memory://",
            "CLINICBRIDGE_INSTANCE_PATH": tmp,
            "PUBLIC_BASE_URL": origin,
            "LOG_LEVEL": "WARNING",
        }
        app = create_app(env)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        state["app"] = app
        rt = app.extensions["clinicbridge"]
        info = ensure_demo(rt)
        with rt.db.transaction() as session:
            deal = session.scalars(
                select(StayAccount.deal_id).where(StayAccount.portal_id == info["portal_id"]).limit(1)
            ).one()
        if gunicorn:
            proc = _gunicorn(env, port, Path(tmp) / "gunicorn.log")
            try:
                yield DemoServer(origin, info["api_key"], deal)
            finally:
                proc.terminate()
                proc.wait(timeout=20)
            return
        assert server is not None
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield DemoServer(origin, info["api_key"], deal)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
