"""The deal tab framed by a Bitrix24 page of another origin, in Debian's headless Chromium.

The portal page (https://clinic.bitrix24.ru/…) and BX24.js (https://api.bitrix24.com/api/v1/) are served by
Playwright routes, our app is reached at its public https address (https://cb.example.ru) through a route
that forwards to the live app on 127.0.0.1, so the browser applies the real headers: our CSP
`frame-ancestors https://clinic.bitrix24.ru` must let the portal frame the tab. The portal page POSTs the
recorded placement form into a 320 px iframe, as Bitrix24 does; app.info goes to the fake OAuth server.
"""

from __future__ import annotations

import html
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from werkzeug.serving import make_server

from tests.bitrix24.conftest import FIXTURES, FRAME_QUERY
from tests.support.fake_bitrix24 import FakeBitrix24
from widget_server import clock, create_app
from widget_server.models import Portal, PortalUser

CHROMIUM = "/usr/bin/chromium"
PUBLIC = "https://cb.example.ru"
PORTAL_PAGE = "https://clinic.bitrix24.ru/crm/deal/details/3473/"
BX24_STUB = """
window.__bx = {inits: 0, fits: 0};
window.BX24 = {
  init(cb) { window.__bx.inits += 1; setTimeout(cb, 0); },
  fitWindow() { window.__bx.fits += 1; },
  resizeWindow() {}, installFinish() {}, placement: {info() { return {placement: 'CRM_DEAL_DETAIL_TAB'}; }},
};
"""


@pytest.fixture
def live_app(rt: Any, installed: int, make_api: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    app = create_app(rt.settings, rt=rt)
    with rt.db.transaction() as session:
        session.add(PortalUser(portal_id=installed, crm_user_id="7", name="Мария", roles=["finance"]))
        portal = session.get(Portal, installed)
        session.expunge(portal)
    api = make_api(portal, "admin")
    tariff = api.post("/api/v1/tariffs", json={"name": "Стандарт", "daily_rate": "3500.00"})
    assert tariff.status_code == 201, tariff.get_json()
    stay = api.post(
        "/api/v1/deals/3473/stay",
        json={
            "admission_date": clock.local_today("Europe/Moscow").isoformat(),
            "tariff_id": tariff.get_json()["id"],
            "deposit": {"amount": "35000.00", "method": "transfer", "payer": "Орлова Е. С."},
        },
    )
    assert stay.status_code == 201, stay.get_json()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _portal_page() -> str:
    pairs = parse_qsl((FIXTURES / "incoming" / "placement_deal_tab.form").read_text("utf-8"))
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in pairs
    )
    action = f"{PUBLIC}/bitrix24/placement/deal-tab?{FRAME_QUERY}"
    return f"""<!doctype html><html><body>
<iframe name="tab" id="tab" style="width:320px;height:700px;border:0"></iframe>
<form id="f" method="post" target="tab" action="{action}">{inputs}</form>
<script>document.getElementById('f').submit();</script>
</body></html>"""


def test_the_tab_is_framed_by_the_portal_and_shows_the_panel_at_320px(
    live_app: str, portal_fake: FakeBitrix24
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium, as scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-quic"]
        )
        try:
            context = browser.new_context(viewport={"width": 400, "height": 800}, locale="ru-RU")
            context.set_default_timeout(10_000)
            context.route(
                PORTAL_PAGE, lambda route: route.fulfill(body=_portal_page(), content_type="text/html")
            )
            context.route(
                "https://api.bitrix24.com/**",
                lambda route: route.fulfill(body=BX24_STUB, content_type="application/javascript"),
            )

            def forward(route: Any) -> None:
                request = route.request
                response = route.fetch(url=live_app + request.url.removeprefix(PUBLIC))
                route.fulfill(response=response)

            context.route(f"{PUBLIC}/**", forward)
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(PORTAL_PAGE)
            frame = page.frame_locator("#tab")
            panel = frame.locator("#clinicbridge-panel")
            panel.wait_for(state="visible")
            frame.locator(".cbp").first.wait_for(state="visible")
            box = panel.bounding_box()
            assert box is not None and 0 < box["width"] <= 320
            inner = page.frame(name="tab")
            assert inner is not None and inner.url.startswith(f"{PUBLIC}/bitrix24/placement/deal-tab")
            bx = inner.evaluate("window.__bx")
            assert bx["inits"] == 1 and bx["fits"] >= 1
            balance = frame.locator(".cbp-balance")
            balance.wait_for(state="visible")
            assert (
                " ".join(balance.inner_text().split()).replace("\u202f", " ").replace("\xa0", " ")
                == "35 000,00 ₽"
            )
        finally:
            browser.close()
    assert [e for e in errors if "favicon" not in e] == [], json.dumps(errors, ensure_ascii=False)


def test_another_site_cannot_frame_the_tab(live_app: str, portal_fake: FakeBitrix24) -> None:
    """The same page on a foreign https origin: the browser refuses to show our answer (frame-ancestors)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium, as scripts/test.sh does)")
    from playwright.sync_api import sync_playwright

    foreign = "https://evil.example/deal/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu", "--disable-quic"]
        )
        try:
            context = browser.new_context(viewport={"width": 400, "height": 800})
            context.set_default_timeout(10_000)
            context.route(foreign, lambda route: route.fulfill(body=_portal_page(), content_type="text/html"))
            context.route(
                f"{PUBLIC}/**",
                lambda route: route.fulfill(
                    response=route.fetch(url=live_app + route.request.url.removeprefix(PUBLIC))
                ),
            )
            page = context.new_page()
            with page.expect_response(lambda r: "/bitrix24/placement/deal-tab" in r.url) as answered:
                page.goto(foreign)
            assert answered.value.status == 200  # our server answered; the browser must not show it
            page.wait_for_timeout(1000)
            inner = page.frame(name="tab")
            shown = inner.evaluate("document.querySelectorAll('#clinicbridge-panel').length") if inner else 0
            assert shown == 0
        finally:
            browser.close()
