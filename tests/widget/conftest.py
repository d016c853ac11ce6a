"""Browser fixtures for the deal-card panel: the app on a real port, Debian's headless Chromium.

The app is served for real (werkzeug, threaded) on 127.0.0.1; the stub amo page (tests/widget/amo_stub)
and the widget files from `build_widget_zip(origin)` are served under `/__stub/` of the same origin, so
the widget's `$authorizedAjax` calls reach the API without CORS (the cross-origin preflight from an
installed amo origin is covered by tests/http/test_amocrm_install.py). The common panel module is loaded
from the app's own `/static/widget/…` route, as in production. Each amo user's `X-Auth-Token` is a real
amo widget JWT (HS256 over the integration secret), so auth, roles and money visibility are the
production code paths.

Chromium is Debian's (`/usr/bin/chromium`, installed by scripts/test.sh); Playwright's own browser
download is not used. Outside CI the browser tests are skipped when that binary is absent.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import re
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from joserfc import jwt
from joserfc.jwk import OctKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from widget_server import clock, create_app
from widget_server.apikeys import issue_api_key
from widget_server.models import Portal, PortalUser
from widget_server.widget_package import build_widget_zip

CHROMIUM = "/usr/bin/chromium"
HAVE_CHROMIUM = Path(CHROMIUM).exists() or bool(os.environ.get("CI"))
STUB_DIR = Path(__file__).resolve().parent / "amo_stub"
JQUERY = Path("/usr/share/javascript/jquery/jquery.js")  # Debian's libjs-jquery (scripts/test.sh installs it)
COMMON = Path(__file__).resolve().parents[2] / "static/widget/common"
RU = json.loads((COMMON / "i18n/ru.json").read_text("utf-8"))
EN = json.loads((COMMON / "i18n/en.json").read_text("utf-8"))
HOST = "clinic.amocrm.ru"
ACCOUNT_ID = 31415926
CLIENT_ID, CLIENT_SECRET = "4b1c5d0e-client-id", "amo-client-secret-0123456789abcdef0123"
FINANCE, STAFF, NO_ROLE, VIEWER, ADMIN = 7001, 7002, 7003, 7004, 7005
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 8_000


def plain(text: str) -> str:
    return re.sub(r"[\s\u00a0\u202f]+", " ", text).strip()


@dataclass
class LiveServer:
    origin: str
    portal_id: int = 0
    admin_key: str = ""
    ids: dict[str, Any] = field(default_factory=dict)
    failing: dict[str, bool] = field(default_factory=lambda: {"api": False})
    posts: list[str] = field(default_factory=list)
    client: Any = None

    def api(self, method: str, path: str, body: dict | None = None) -> Any:
        """Set-up calls as the portal's admin API key, straight into the app (not through the browser)."""
        response = self.client.open(
            path, method=method, json=body, headers={"Authorization": f"Bearer {self.admin_key}"}
        )
        assert response.status_code < 300, response.get_json()
        return response.get_json()

    def token(self, user_id: int) -> str:
        now = int(time.time())
        claims = {
            "iss": f"https://{HOST}",
            "aud": self.origin,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "nbf": now,
            "exp": now + 1800,
            "account_id": ACCOUNT_ID,
            "user_id": user_id,
            "subdomain": "clinic",
            "client_uuid": CLIENT_ID,
        }
        return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET))


def _stub_app(origin: str):  # type: ignore[no-untyped-def]
    """The amo page stand-in and the widget files exactly as `widget.zip` ships them for this origin."""
    with zipfile.ZipFile(io.BytesIO(build_widget_zip(origin))) as archive:
        widget = {name: archive.read(name) for name in archive.namelist()}

    @Request.application
    def app(request: Request) -> Response:
        path = request.path.lstrip("/") or "index.html"
        if path.startswith("widget/"):
            data = widget.get(path.removeprefix("widget/"))
        elif path == "index.html":
            data = (STUB_DIR / path).read_bytes()
            if request.args.get("jquery") == "1":
                # Debian's real jQuery 3 (libjs-jquery) ahead of the host, which then uses it instead of
                # its own jQuery subset.
                data = data.replace(b"<!--jquery-->", b'<script src="jquery.js"></script>', 1)
        elif path == "jquery.js" and JQUERY.exists():
            data = JQUERY.read_bytes()
        else:
            data = None
        if data is None:
            return Response("not found", status=404)
        mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return Response(data, mimetype=mime, headers={"Cache-Control": "no-store"})

    return app


def frozen_at(monkeypatch: pytest.MonkeyPatch, local: str) -> None:
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Moscow")).astimezone(UTC)
    monkeypatch.setattr(clock, "now_utc", lambda: moment)


@pytest.fixture
def live(rt, make_portal, monkeypatch) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The app on a real port: an installed amo account, its users, a tariff and an article; deal 501
    admitted on 1 Dec with 35 000,00 ₽ at 3 500,00 ₽ a day."""
    state: dict = {}

    def dispatch(environ, start_response):  # type: ignore[no-untyped-def]
        if environ["PATH_INFO"].startswith("/__stub/"):
            environ["PATH_INFO"] = environ["PATH_INFO"].removeprefix("/__stub")
            return state["stub"](environ, start_response)
        if environ["PATH_INFO"].startswith("/api/") and environ["REQUEST_METHOD"] == "POST":
            state["live"].posts.append(environ["PATH_INFO"])
        if state["live"].failing["api"] and environ["PATH_INFO"].startswith("/api/"):
            return Response('{"error": {"message": "boom"}}', status=500, mimetype="application/json")(
                environ, start_response
            )
        return state["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, dispatch, threaded=True)
    origin = f"http://127.0.0.1:{server.server_port}"
    live = state["live"] = LiveServer(origin)
    settings = rt.settings.with_overrides(
        public_base_url=origin, amo_client_id=CLIENT_ID, amo_client_secret=CLIENT_SECRET
    )
    monkeypatch.setattr(rt, "settings", settings)
    app = create_app(settings, rt=rt)
    state["app"], state["stub"] = app, _stub_app(origin)

    frozen_at(monkeypatch, "2026-12-01 10:00")
    portal = make_portal(kind="amocrm", slug="amo-clinic", external_id=str(ACCOUNT_ID), domain=HOST)
    with rt.db.transaction() as s:
        s.add_all(
            [
                PortalUser(portal_id=portal.id, crm_user_id=str(FINANCE), name="Анна", roles=["finance"]),
                PortalUser(portal_id=portal.id, crm_user_id=str(STAFF), name="Олег", roles=["staff"]),
                PortalUser(portal_id=portal.id, crm_user_id=str(NO_ROLE), name="Гость", roles=[]),
                PortalUser(portal_id=portal.id, crm_user_id=str(VIEWER), name="Вера", roles=["viewer"]),
                PortalUser(portal_id=portal.id, crm_user_id=str(ADMIN), name="Ирина", roles=["admin"]),
            ]
        )
        key = issue_api_key(s, s.get(Portal, portal.id), role="admin", name="test admin").plaintext
    client = app.test_client()
    live.portal_id, live.admin_key, live.client = portal.id, key, client
    admin = {"Authorization": f"Bearer {key}"}
    tariff = client.post("/api/v1/tariffs", json={"name": "Стандарт", "daily_rate": "3500.00"}, headers=admin)
    assert tariff.status_code == 201, tariff.get_json()
    better = client.post("/api/v1/tariffs", json={"name": "Люкс", "daily_rate": "5000.00"}, headers=admin)
    article = client.post("/api/v1/articles", json={"name": "Лекарства"}, headers=admin)
    assert better.status_code == 201 and article.status_code == 201
    live.ids.update(
        tariff=tariff.get_json()["id"], lux=better.get_json()["id"], article=article.get_json()["id"]
    )
    admitted = client.post(
        "/api/v1/deals/501/stay",
        json={
            "admission_date": "2026-12-01",
            "tariff_id": live.ids["tariff"],
            "deposit": {"amount": "35000.00", "method": "transfer", "payer": "ООО «Родня»"},
        },
        headers=admin,
    )
    assert admitted.status_code == 201, admitted.get_json()
    live.posts.clear()

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield live
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    if not HAVE_CHROMIUM:
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium, as scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def open_card(browser, live: LiveServer) -> Iterator[Callable[..., Any]]:  # type: ignore[no-untyped-def]
    """Open the stub deal card as an amo user; the widget has been rendered, inited and bound on return."""
    contexts = []

    def open_(
        user_id: int,
        deal_id: int | None = 501,
        width: int = 800,
        lang: str = "ru",
        before_goto: Callable[[Any], None] | None = None,
        jquery: bool = False,
        view: str = "",
    ):  # type: ignore[no-untyped-def]
        context = browser.new_context(
            viewport={"width": width, "height": 900}, locale="ru-RU" if lang == "ru" else "en-US"
        )
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        if before_goto is not None:
            before_goto(context)
        page = context.new_page()
        config = {
            "token": live.token(user_id),
            "dealId": deal_id,
            "userId": user_id,
            "lang": lang,
            "view": view,
        }
        page.add_init_script(f"window.__STUB_CONFIG = {json.dumps(config)};")
        page.goto(f"{live.origin}/__stub/index.html{'?jquery=1' if jquery else ''}")
        page.wait_for_function("window.__widgetResults !== undefined || window.__stubErrors.length > 0")
        assert page.evaluate("window.__stubErrors") == []
        # The flag decides which jQuery the widget runs on: Debian's real one, or the host's subset.
        assert page.evaluate("Boolean(window.jQuery && jQuery.fn && jQuery.fn.jquery)") is jquery
        expected = {"render": True, "init": True, "bind_actions": True}
        if view == "settings":
            expected["advancedSettings"] = True
        assert page.evaluate("window.__widgetResults") == expected
        return page

    try:
        yield open_
    finally:
        for context in contexts:
            context.close()
