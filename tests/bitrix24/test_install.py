"""Install page and ONAPPINSTALL in either order, binds, installFinish, rebind, uninstall and reinstall."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.bitrix24.robots import ROBOTS
from tests.bitrix24.conftest import APP_TOKEN, FRAME_QUERY, form, post_form
from tests.support.fake_bitrix24 import FakeBitrix24
from widget_server.models import InboxEvent, OutboxJob, Portal, PortalUser


def _portals(rt: Any) -> list[Portal]:
    with rt.db.transaction() as session:
        rows = list(session.scalars(select(Portal).where(Portal.kind == "bitrix24")))
        for row in rows:
            session.expunge(row)
        return rows


def _registrations(fake: FakeBitrix24) -> tuple[int, int, int, int]:
    ours = [k for k in fake.fields if k.startswith("UF_CRM_CB_")]
    return len(fake.placements), len(fake.handlers), len(fake.robots), len(ours)


def _install_page(client: Any, **replace: str) -> Any:
    return post_form(client, "/bitrix24/install", form("install_page", **replace), FRAME_QUERY)


def test_install_page_then_callback_make_one_portal(
    client: Any, rt: Any, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    page = _install_page(client)
    assert page.status_code == 200
    assert "BX24.installFinish()" in page.get_data(as_text=True)
    assert _registrations(portal_fake) == (1, 10, len(ROBOTS), 4)

    callback = post_form(client, "/bitrix24/install", form("onappinstall"))
    assert callback.status_code == 200, callback.get_json()
    jobs()

    [portal] = _portals(rt)
    settings = portal.settings["bitrix24"]
    assert (portal.external_id, portal.domain, portal.status) == (
        portal_fake.member_id,
        "clinic.bitrix24.ru",
        "active",
    )
    assert settings["app_token_sha256"] and APP_TOKEN not in str(portal.settings)
    assert settings["install_state"] == "bound" and settings["storage_id"] == "17"
    assert portal.token_ciphertext and "admin-refresh-cb" not in portal.token_ciphertext
    assert rt.cipher.decrypt_token(portal.token_ciphertext).refresh_token == "admin-refresh-cb"
    assert _registrations(portal_fake) == (1, 10, len(ROBOTS), 4)  # the callback's rebind doubled nothing


def test_callback_then_install_page_make_one_portal(
    client: Any, rt: Any, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    assert post_form(client, "/bitrix24/install", form("onappinstall")).status_code == 200
    jobs()
    page = _install_page(client, APPLICATION_TOKEN=APP_TOKEN)
    assert "BX24.installFinish()" in page.get_data(as_text=True)
    [portal] = _portals(rt)
    assert portal.settings["bitrix24"]["app_version"] == "1"
    assert rt.cipher.decrypt_token(portal.token_ciphertext).access_token == "admin-access-1"
    assert _registrations(portal_fake) == (1, 10, len(ROBOTS), 4)


def test_robots_are_declared_with_subscription_and_return_properties(
    client: Any, portal_fake: FakeBitrix24
) -> None:
    _install_page(client)
    robot = portal_fake.robots["clinicbridge_stay_status"]
    assert robot["USE_SUBSCRIPTION"] == "Y"
    assert {"balance", "paid_through", "ok", "error"} <= set(robot["RETURN_PROPERTIES"])
    assert robot["HANDLER"] == "https://cb.example.ru/bitrix24/robots/stay_status"
    offline = [h for h in portal_fake.handlers if h["event_type"] == "offline"]
    assert {h["auth_connector"] for h in offline} == {"clinicbridge"} and len(offline) == 4


def test_a_failed_bind_withholds_install_finish_and_names_the_call(
    client: Any, rt: Any, portal_fake: FakeBitrix24
) -> None:
    portal_fake.fail_methods["bizproc.robot.add"] = "ERROR_ACTIVITY_VALIDATION_FAILURE"
    page = _install_page(client)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "installFinish" not in html
    assert "bizproc.robot.add" in html and "ERROR_ACTIVITY_VALIDATION_FAILURE" in html
    [portal] = _portals(rt)
    assert portal.settings["bitrix24"]["install_state"] == "failed"
    assert portal.settings["bitrix24"]["failed_call"] == "bizproc.robot.add"


def test_a_private_public_base_url_withholds_install_finish(
    client: Any, app: Any, portal_fake: FakeBitrix24, monkeypatch: pytest.MonkeyPatch
) -> None:
    from widget_server import runtime

    rt = runtime.current()
    monkeypatch.setattr(rt, "settings", rt.settings.with_overrides(public_base_url="http://127.0.0.1:5000"))
    html = _install_page(client).get_data(as_text=True)
    assert "installFinish" not in html and "PUBLIC_BASE_URL" in html
    assert portal_fake.placements == []


def test_a_version_bump_rebinds_without_duplicates(client: Any, rt: Any, portal_fake: FakeBitrix24) -> None:
    from widget_server.bitrix24_install import rebind

    _install_page(client)
    # What an older version left: an old tab URL, an event we no longer use, a retired robot.
    portal_fake.placements.append(
        {
            "placement": "CRM_DEAL_DETAIL_TAB",
            "handler": "https://cb.example.ru/old/tab",
            "title": "",
            "options": {},
        }
    )
    portal_fake.handlers.append(
        {
            "event": "ONCRMLEADADD",
            "handler": "https://cb.example.ru/bitrix24/events",
            "event_type": "online",
            "auth_connector": None,
            "options": None,
        }
    )
    portal_fake.robots["clinicbridge_retired"] = {"CODE": "clinicbridge_retired"}
    portal_fake.robots["other_vendor_robot"] = {"CODE": "other_vendor_robot"}
    [portal] = _portals(rt)

    report = rebind(rt, portal.id)

    assert [p["handler"] for p in portal_fake.placements] == [
        "https://cb.example.ru/bitrix24/placement/deal-tab"
    ]
    assert not any(h["event"] == "ONCRMLEADADD" for h in portal_fake.handlers)
    assert len(portal_fake.handlers) == 10
    assert set(portal_fake.robots) == {r.code for r in ROBOTS.values()} | {"other_vendor_robot"}
    assert len([k for k in portal_fake.fields if k.startswith("UF_CRM_CB_")]) == 4
    assert sorted(report.removed) == [
        "event:ONCRMLEADADD:online",
        "placement:CRM_DEAL_DETAIL_TAB",
        "robot:clinicbridge_retired",
    ]
    assert len(report.updated) == len(ROBOTS) and report.added == []


def test_uninstall_erases_tokens_and_reinstall_keeps_data(
    client: Any, rt: Any, portal_fake: FakeBitrix24
) -> None:
    _install_page(client)
    post_form(client, "/bitrix24/install", form("onappinstall"))
    [portal] = _portals(rt)
    with rt.db.transaction() as session:
        session.add(PortalUser(portal_id=portal.id, crm_user_id="7", name="Мария", roles=["staff"]))
        session.add(
            OutboxJob(
                portal_id=portal.id, operation="add_note", deal_id="759", payload={}, idempotency_key="n-1"
            )
        )

    gone = post_form(client, "/bitrix24/uninstall", form("onappuninstall", **{"data[CLEAN]": "1"}))
    assert gone.status_code == 200, gone.get_json()

    [portal] = _portals(rt)
    assert (portal.status, portal.token_ciphertext) == ("uninstalled", None)
    assert (
        "app_token_sha256" not in portal.settings["bitrix24"] and portal.settings["bitrix24"]["clean"] is True
    )
    with rt.db.transaction() as session:
        assert session.scalar(select(OutboxJob.state)) == "cancelled"
    # Events for the uninstalled portal are refused; a repeat uninstall is harmless.
    assert post_form(client, "/bitrix24/events", form("oncrmdealupdate")).status_code == 410
    assert post_form(client, "/bitrix24/uninstall", form("onappuninstall")).status_code == 200

    again = _install_page(client)
    assert "BX24.installFinish()" in again.get_data(as_text=True)
    [back] = _portals(rt)
    assert (back.id, back.status) == (portal.id, "active")
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(PortalUser)) == 1


@pytest.mark.parametrize(
    ("replace", "status", "field"),
    [
        ({"AUTH_ID": "forged"}, 401, "AUTH_ID"),
        ({"member_id": "b000000000000000000000000000000f"}, 401, "member_id"),
        ({"SERVER_ENDPOINT": "https://oauth.evil.example/rest/"}, 400, "SERVER_ENDPOINT"),
        ({"AUTH_ID": ""}, 400, "AUTH_ID"),
    ],
)
def test_an_unproven_install_page_is_refused(
    client: Any, rt: Any, portal_fake: FakeBitrix24, replace: dict[str, str], status: int, field: str
) -> None:
    response = _install_page(client, **replace)
    assert response.status_code == status
    assert field in response.get_json()["error"]["fields"]
    assert _portals(rt) == [] and portal_fake.log == []


def test_a_foreign_apps_token_is_refused(client: Any, rt: Any, portal_fake: FakeBitrix24) -> None:
    portal_fake.user_session("admin-access-cb", client_id="app.someone.else.1")
    response = post_form(client, "/bitrix24/install", form("onappinstall"))
    assert response.status_code == 401
    assert "AUTH_ID" in response.get_json()["error"]["fields"]
    assert _portals(rt) == []


def test_a_domain_mismatch_is_refused(client: Any, rt: Any, portal_fake: FakeBitrix24) -> None:
    response = post_form(client, "/bitrix24/install", form("install_page"), "DOMAIN=other.bitrix24.ru")
    assert response.status_code == 401 and "DOMAIN" in response.get_json()["error"]["fields"]
    assert _portals(rt) == []


def test_inbox_untouched_by_install(client: Any, rt: Any, portal_fake: FakeBitrix24) -> None:
    _install_page(client)
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == 0
