"""Issue 6: headless Chromium renders the deal-card panel from the built `script.js` in a stub amo page.

The app is served for real (werkzeug, threaded) on 127.0.0.1; the stub amo page (tests/widget/amo_stub)
and the widget files from `build_widget_zip(origin)` are served under `/__stub/` of the same origin, so
the widget's `$authorizedAjax` calls reach the API without CORS (the cross-origin preflight from an
installed amo origin is covered by tests/http/test_amocrm_install.py). Each user's `X-Auth-Token` is a
real amo widget JWT (HS256 over the integration secret), so the API's auth, roles and money visibility
are the production code paths.

Chromium is Debian's (`/usr/bin/chromium`, installed by scripts/test.sh); Playwright's own browser
download is not used. Outside CI the module is skipped when that binary is absent.
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
if not Path(CHROMIUM).exists() and not os.environ.get("CI"):
    pytest.skip(
        f"{CHROMIUM} is missing (apt-get install -y chromium, as scripts/test.sh does); in CI this runs",
        allow_module_level=True,
    )

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright  # noqa: E402

STUB_DIR = Path(__file__).resolve().parent / "amo_stub"
RU = json.loads(
    (Path(__file__).resolve().parents[2] / "static/widget/amocrm/i18n/ru.json").read_text("utf-8")
)["panel"]
HOST = "clinic.amocrm.ru"
ACCOUNT_ID = 31415926
CLIENT_ID, CLIENT_SECRET = "4b1c5d0e-client-id", "amo-client-secret-0123456789abcdef0123"
FINANCE, STAFF, NO_ROLE, VIEWER = 7001, 7002, 7003, 7004
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 5_000


def _plain(text: str) -> str:
    return re.sub(r"[\s\u00a0\u202f]+", " ", text).strip()


@dataclass
class LiveServer:
    origin: str
    failing: dict[str, bool] = field(default_factory=lambda: {"api": False})

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
        elif path in {"index.html", "amo_stub.js"}:
            data = (STUB_DIR / path).read_bytes()
        else:
            data = None
        if data is None:
            return Response("not found", status=404)
        mime = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return Response(data, mimetype=mime, headers={"Cache-Control": "no-store"})

    return app


def _frozen_at(monkeypatch: pytest.MonkeyPatch, local: str) -> None:
    moment = datetime.fromisoformat(local).replace(tzinfo=ZoneInfo("Europe/Moscow")).astimezone(UTC)
    monkeypatch.setattr(clock, "now_utc", lambda: moment)


@pytest.fixture
def live(rt, make_portal, monkeypatch) -> Iterator[LiveServer]:  # type: ignore[no-untyped-def]
    """The app on a real port: an installed amo account, its users, and deal 501 admitted with 35 000."""
    state: dict = {}

    def dispatch(environ, start_response):  # type: ignore[no-untyped-def]
        if environ["PATH_INFO"].startswith("/__stub/"):
            environ["PATH_INFO"] = environ["PATH_INFO"].removeprefix("/__stub")
            return state["stub"](environ, start_response)
        if state["live"].failing["api"] and environ["PATH_INFO"].startswith("/api/"):
            return Response('{"error": {"message": "boom"}}', status=500, mimetype="application/json")(
                environ, start_response
            )
        return state["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, dispatch, threaded=True)
    origin = f"http://127.0.0.1:{server.server_port}"
    state["live"] = LiveServer(origin)
    settings = rt.settings.with_overrides(
        public_base_url=origin, amo_client_id=CLIENT_ID, amo_client_secret=CLIENT_SECRET
    )
    monkeypatch.setattr(rt, "settings", settings)
    app = create_app(settings, rt=rt)
    state["app"], state["stub"] = app, _stub_app(origin)

    _frozen_at(monkeypatch, "2026-12-01 10:00")
    portal = make_portal(kind="amocrm", slug="amo-clinic", external_id=str(ACCOUNT_ID), domain=HOST)
    with rt.db.transaction() as s:
        s.add_all(
            [
                PortalUser(portal_id=portal.id, crm_user_id=str(FINANCE), name="Анна", roles=["finance"]),
                PortalUser(portal_id=portal.id, crm_user_id=str(STAFF), name="Олег", roles=["staff"]),
                PortalUser(portal_id=portal.id, crm_user_id=str(NO_ROLE), name="Гость", roles=[]),
                PortalUser(portal_id=portal.id, crm_user_id=str(VIEWER), name="Вера", roles=["viewer"]),
            ]
        )
        key = issue_api_key(s, s.get(Portal, portal.id), role="admin", name="test admin").plaintext
    client = app.test_client()
    admin = {"Authorization": f"Bearer {key}"}
    tariff = client.post("/api/v1/tariffs", json={"name": "Стандарт", "daily_rate": "3500.00"}, headers=admin)
    assert tariff.status_code == 201, tariff.get_json()
    admitted = client.post(
        "/api/v1/deals/501/stay",
        json={
            "admission_date": "2026-12-01",
            "tariff_id": tariff.get_json()["id"],
            "deposit": {"amount": "35000.00", "method": "transfer", "payer": "ООО «Родня»"},
        },
        headers=admin,
    )
    assert admitted.status_code == 201, admitted.get_json()

    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state["live"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def open_card(browser: Browser, live: LiveServer) -> Iterator[Callable[..., Page]]:
    """Open the stub deal card as an amo user; the widget has been rendered, inited and bound on return."""
    contexts = []

    def open_(
        user_id: int,
        deal_id: int | None = 501,
        width: int = 800,
        before_goto: Callable[[BrowserContext], None] | None = None,
    ) -> Page:
        context = browser.new_context(viewport={"width": width, "height": 480}, locale="ru-RU")
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        if before_goto is not None:
            before_goto(context)
        page = context.new_page()
        config = {"token": live.token(user_id), "dealId": deal_id, "userId": user_id}
        page.add_init_script(f"window.__STUB_CONFIG = {json.dumps(config)};")
        page.goto(f"{live.origin}/__stub/index.html")
        page.wait_for_function("window.__widgetResults !== undefined || window.__stubErrors.length > 0")
        assert page.evaluate("window.__stubErrors") == []
        assert page.evaluate("window.__widgetResults") == {"render": True, "init": True, "bind_actions": True}
        return page

    try:
        yield open_
    finally:
        for context in contexts:
            context.close()


def _settled(page: Page, live: LiveServer) -> str:
    """The panel's final text (past «Загрузка…»), with no script errors and only calls to our server."""
    panel = page.locator(".cb-panel")
    expect(panel).not_to_have_text(RU["loading"])
    expect(panel).not_to_be_empty()
    assert page.evaluate("window.__stubErrors") == []
    calls = page.evaluate("window.__ajaxLog")
    assert calls and all(url.startswith(f"{live.origin}/api/v1/") for url in calls), calls
    return _plain(panel.inner_text())


def test_finance_user_sees_balance_and_paid_through(open_card, live):
    page = open_card(FINANCE)
    expect(page.locator(".cb-paid-through")).to_be_visible()
    text = _settled(page, live)
    assert _plain(page.locator(".cb-balance").inner_text()) == "35 000,00 ₽"
    assert f"{RU['balance']} 35 000,00 ₽" in text
    assert f"{RU['paid_through']} 10.12.2026" in text  # 35 000 / 3 500 a day from 1 Dec
    assert RU["days_left"] in text
    assert page.locator(".cb-debt").count() == 0
    calls = page.evaluate("window.__ajaxLog")
    assert calls == [f"{live.origin}/api/v1/widget/session", f"{live.origin}/api/v1/deals/501/stay"]


def test_staff_user_sees_the_date_but_no_money(open_card, live):
    page = open_card(STAFF)
    expect(page.locator(".cb-paid-through")).to_be_visible()
    text = _settled(page, live)
    assert f"{RU['paid_through']} 10.12.2026" in text
    assert page.locator(".cb-balance").count() == 0
    assert RU["balance"] not in text
    assert "₽" not in text and "35" not in text and "000" not in text


def test_user_without_a_role_is_told_to_ask_for_one(open_card, live):
    page = open_card(NO_ROLE)
    expect(page.locator(".cb-panel")).to_have_text(RU["no_role"])
    _settled(page, live)
    assert page.locator(".cb-paid-through").count() == 0
    assert page.locator(".cb-retry").count() == 0  # retrying cannot give a role


def test_deal_without_a_stay_says_the_account_is_not_open(open_card, live):
    page = open_card(FINANCE, deal_id=999)
    expect(page.locator(".cb-panel")).to_have_text(RU["no_stay"])
    _settled(page, live)
    assert page.locator(".cb-error").count() == 0


@pytest.mark.parametrize("outage", ["http-500", "unreachable"])
def test_outage_shows_an_error_and_retry_recovers(open_card, live, outage):
    api = f"{live.origin}/api/**"

    def refuse(route):  # type: ignore[no-untyped-def]
        route.abort("connectionrefused")

    def cut_off(context):  # type: ignore[no-untyped-def]
        context.route(api, refuse)  # the API only: the stub page itself still loads

    if outage == "http-500":
        live.failing["api"] = True
    page = open_card(FINANCE, before_goto=cut_off if outage == "unreachable" else None)
    expect(page.locator(".cb-error")).to_have_text(RU["error"])
    retry = page.get_by_role("button", name=RU["retry"])
    expect(retry).to_be_visible()
    assert page.locator(".cb-balance").count() == 0

    if outage == "http-500":
        live.failing["api"] = False
    else:
        page.context.unroute(api, refuse)
    retry.click()
    expect(page.locator(".cb-balance")).to_be_visible()
    assert _plain(page.locator(".cb-balance").inner_text()) == "35 000,00 ₽"
    assert page.locator(".cb-error").count() == 0
    assert page.evaluate("window.__stubErrors") == []


def test_panel_is_usable_at_280_px(open_card, live, tmp_path):
    page = open_card(FINANCE, width=280)
    expect(page.locator(".cb-balance")).to_be_visible()
    _settled(page, live)
    panel = page.locator(".cb-panel")
    widths = panel.evaluate("el => ({scroll: el.scrollWidth, client: el.clientWidth})")
    assert widths["scroll"] <= 280 and widths["scroll"] <= widths["client"], widths
    assert page.evaluate("document.documentElement.scrollWidth") <= 280
    box = panel.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 280
    shot = tmp_path / "amocrm_panel_280.png"
    page.locator(".card-widgets__widget").screenshot(path=str(shot))
    assert shot.stat().st_size > 1000


def test_viewer_without_staff_role_is_told_about_access_not_a_network_error(open_card, live):
    page = open_card(VIEWER)
    expect(page.locator(".cb-panel")).to_contain_text(RU["no_role"])
    assert page.locator(".cb-error").count() == 0 and page.locator(".cb-retry").count() == 0
