"""The demo panel served for real, for the panel bench and the screenshots command. Not a bench itself.

A throw-away SQLite database and instance folder, `REDIS_URL=memory://` (jobs in-process), the demo
sandbox portal (`clinicbridge demo`'s data), and the app on a free 127.0.0.1 port (werkzeug, threaded);
Debian's headless Chromium through Playwright.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from werkzeug.serving import make_server

from widget_server import create_app
from widget_server.cli.demo import ensure_demo
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
        return f"{self.origin}/static/widget/demo/{page}?deal={self.in_stay_deal}&lang={lang}{extra}#key={self.api_key}"


@contextmanager
def demo_server() -> Iterator[DemoServer]:
    with tempfile.TemporaryDirectory(prefix="cb-panel-") as tmp:
        state: dict = {}

        def dispatch(environ, start_response):  # type: ignore[no-untyped-def]
            return state["app"](environ, start_response)

        server = make_server("127.0.0.1", 0, dispatch, threaded=True)
        origin = f"http://127.0.0.1:{server.server_port}"
        database = f"sqlite:///{Path(tmp) / 'panel.sqlite3'}"
        upgrade(database)
        app = create_app(
            {
                "DATABASE_URL": database,
                "REDIS_URL": "memory://",
                "CLINICBRIDGE_INSTANCE_PATH": tmp,
                "PUBLIC_BASE_URL": origin,
                "LOG_LEVEL": "WARNING",
            }
        )
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        state["app"] = app
        rt = app.extensions["clinicbridge"]
        info = ensure_demo(rt)
        with rt.db.transaction() as session:
            deal = session.scalars(
                select(StayAccount.deal_id).where(StayAccount.portal_id == info["portal_id"]).limit(1)
            ).one()
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield DemoServer(origin, info["api_key"], deal)
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
