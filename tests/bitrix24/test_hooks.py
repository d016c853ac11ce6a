"""Events, robots and the deal tab: verification, inbox with dedupe, replays, bad input, jobs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tests.bitrix24.conftest import APP_TOKEN, FRAME_QUERY, form, post_form
from tests.support.fake_bitrix24 import FakeBitrix24
from widget_server.models import InboxEvent, Portal, PortalUser

EVENTS = ["oncrmdealadd", "oncrmdealupdate", "oncrmdealdelete", "oncrmdealmovetocategory", "onofflineevent"]
ROBOT_FORMS = [
    "robot_stay_status",
    "robot_patient_folder",
    "robot_notify",
    "robot_find_contact",
    "robot_distribute",
]


def _inbox(rt: Any) -> list[tuple[str, str, str]]:
    with rt.db.transaction() as session:
        return [
            (e.source, e.dedupe_key, e.outcome)
            for e in session.scalars(select(InboxEvent).order_by(InboxEvent.id))
        ]


def _queued(rt: Any) -> int:
    return sum(q.count for q in rt.queues.values())


@pytest.mark.parametrize("name", EVENTS)
def test_each_event_is_stored_once_and_acknowledged(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24, name: str
) -> None:
    first = post_form(client, "/bitrix24/events", form(name))
    replay = post_form(client, "/bitrix24/events", form(name))

    assert first.status_code == 200 and first.get_json()["status"] == "accepted"
    assert replay.status_code == 200 and replay.get_json()["status"] == "duplicate"
    [row] = _inbox(rt)
    assert row[0] == "bitrix24"
    assert portal_fake.log == []  # acknowledged with no outgoing call
    with rt.db.transaction() as session:
        raw = session.scalar(select(InboxEvent.raw_body))
    assert "user-access-7" not in raw and "admin-refresh-off" not in raw  # the user's tokens are not kept


@pytest.mark.parametrize("name", ROBOT_FORMS)
def test_each_robot_call_is_stored_by_event_token(client: Any, rt: Any, installed: int, name: str) -> None:
    robot = name.removeprefix("robot_")
    first = post_form(client, f"/bitrix24/robots/{robot}", form(name))
    replay = post_form(client, f"/bitrix24/robots/{robot}", form(name))
    assert (first.get_json()["status"], replay.get_json()["status"]) == ("accepted", "duplicate")
    [(source, key, _)] = _inbox(rt)
    assert source == "bitrix24_robot" and key.startswith("robot:55c1dc1c3f0d75.78875596|")


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/bitrix24/events", "%%%&&=", 400, "body"),
        ("/bitrix24/events", form("oncrmdealupdate", **{"auth[member_id]": ""}), 400, "auth[member_id]"),
        (
            "/bitrix24/events",
            form("oncrmdealupdate", **{"auth[member_id]": "f" * 32}),
            404,
            "auth[member_id]",
        ),
        (
            "/bitrix24/events",
            form("oncrmdealupdate", **{"auth[application_token]": "x" * 32}),
            401,
            "auth[application_token]",
        ),
        ("/bitrix24/events", form("oncrmdealupdate", **{"data[FIELDS][ID]": "abc"}), 400, "data[FIELDS][ID]"),
        ("/bitrix24/events", form("oncrmdealupdate", event=""), 400, "event"),
        (
            "/bitrix24/robots/notify",
            form("robot_notify", **{"document_id[2]": "LEAD_5"}),
            400,
            "document_id[2]",
        ),
        ("/bitrix24/robots/notify", form("robot_notify", event_token=""), 400, "event_token"),
        ("/bitrix24/robots/notify", form("robot_stay_status"), 400, "code"),
        (
            "/bitrix24/robots/notify",
            form("robot_notify", **{"auth[application_token]": "x"}),
            401,
            "auth[application_token]",
        ),
        (
            "/bitrix24/uninstall",
            form("onappuninstall", **{"auth[application_token]": "x"}),
            401,
            "auth[application_token]",
        ),
        (
            "/bitrix24/uninstall",
            form("onappuninstall", **{"auth[member_id]": "f" * 32}),
            404,
            "auth[member_id]",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_kept(
    client: Any,
    rt: Any,
    installed: int,
    portal_fake: FakeBitrix24,
    path: str,
    body: str,
    status: int,
    field: str,
) -> None:
    response = post_form(client, path, body)
    assert response.status_code == status, response.get_json()
    assert field in response.get_json()["error"]["fields"]
    assert _inbox(rt) == [] and _queued(rt) == 0 and portal_fake.log == []
    with rt.db.transaction() as session:
        assert session.get(Portal, installed).status == "active"


def test_an_unknown_robot_is_404(client: Any, installed: int) -> None:
    assert post_form(client, "/bitrix24/robots/nope", form("robot_notify")).status_code == 404


def test_a_portal_without_application_token_learns_it_from_a_proven_call(
    client: Any, rt: Any, portal_fake: FakeBitrix24
) -> None:
    from tests.bitrix24.conftest import stored_token
    from widget_server.bitrix24_install import record_install

    done = record_install(
        rt,
        member_id=portal_fake.member_id,
        domain=portal_fake.domain,
        token=stored_token(portal_fake),
        application_token=None,
    )
    forged = form("oncrmdealupdate", **{"auth[access_token]": "forged"})
    assert post_form(client, "/bitrix24/events", forged).status_code == 401
    assert post_form(client, "/bitrix24/events", form("oncrmdealupdate")).status_code == 200
    with rt.db.transaction() as session:
        assert session.get(Portal, done.portal_id).settings["bitrix24"]["app_token_sha256"]
    other = form("oncrmdealadd", **{"auth[application_token]": "y" * 32})
    assert post_form(client, "/bitrix24/events", other).status_code == 401


# --- robots through the job ---------------------------------------------------------------------------


def _robot_token(name: str) -> str:
    return f"55c1dc1c3f0d75.78875596|A51601_82584_96831_81132|{name}Hash"


def test_a_robot_call_gives_one_event_send_and_its_replay_none(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    deal = portal_fake.new_deal("Орлов В. Н.", id=759)
    portal_fake.deals[759] = deal
    portal_fake.valid_event_tokens.add(_robot_token("patient_folder"))

    post_form(client, "/bitrix24/robots/patient_folder", form("robot_patient_folder"))
    jobs()
    post_form(client, "/bitrix24/robots/patient_folder", form("robot_patient_folder"))
    jobs()

    [sent] = portal_fake.event_sends
    assert sent["EVENT_TOKEN"] == _robot_token("patient_folder")
    assert sent["RETURN_VALUES"]["ok"] == "Y" and sent["RETURN_VALUES"]["link"].startswith("https://")
    assert [f["NAME"] for f in portal_fake.folders.values()] == ["Пациент 759"]
    assert _inbox(rt)[0][2] == "handled"


def test_notify_robot_notifies_each_participant_once(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    portal_fake.users[7] = {
        "ID": "7",
        "ACTIVE": True,
        "NAME": "Мария",
        "LAST_NAME": "",
        "EMAIL": "",
        "IS_ONLINE": "Y",
    }
    portal_fake.users[9] = {
        "ID": "9",
        "ACTIVE": True,
        "NAME": "Игорь",
        "LAST_NAME": "",
        "EMAIL": "",
        "IS_ONLINE": "N",
    }
    portal_fake.valid_event_tokens.add(_robot_token("notify"))
    post_form(client, "/bitrix24/robots/notify", form("robot_notify"))
    jobs()
    assert {u: list(m.values()) for u, m in portal_fake.notifications.items()} == {
        7: ["Пациент поступил в палату 3"],
        9: ["Пациент поступил в палату 3"],
    }
    assert portal_fake.event_sends[0]["RETURN_VALUES"]["ok"] == "Y"


def test_find_contact_robot_links_the_existing_contact(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    portal_fake.deals[759] = portal_fake.new_deal("Орлов", id=759)
    contact = portal_fake.new_contact("Елена Орлова", ("+7 916 123-45-67",))
    portal_fake.valid_event_tokens.add(_robot_token("find_contact"))
    post_form(client, "/bitrix24/robots/find_contact", form("robot_find_contact"))
    jobs()
    assert portal_fake.deals[759]["contactIds"] == [int(contact["ID"])]
    assert portal_fake.event_sends[0]["RETURN_VALUES"]["contact_id"] == int(contact["ID"])


def test_a_refusal_answers_ok_n_so_the_process_never_hangs(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    portal_fake.deals[759] = portal_fake.new_deal("Орлов", id=759)
    portal_fake.valid_event_tokens.add(_robot_token("stay_status"))
    post_form(client, "/bitrix24/robots/stay_status", form("robot_stay_status"))  # no stay account
    jobs()
    [sent] = portal_fake.event_sends
    assert sent["RETURN_VALUES"]["ok"] == "N" and "stay account" in sent["RETURN_VALUES"]["error"]


def test_an_expired_event_token_marks_the_run_failed(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    portal_fake.deals[759] = portal_fake.new_deal("Орлов", id=759)
    post_form(client, "/bitrix24/robots/patient_folder", form("robot_patient_folder"))  # token not valid
    jobs()
    with rt.db.transaction() as session:
        event = session.scalar(select(InboxEvent))
        assert event.outcome == "failed" and "expired" in (event.error or "")


# --- not losing events --------------------------------------------------------------------------------


def _bind_offline(fake: FakeBitrix24) -> None:
    for event in ("ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE", "ONCRMDEALMOVETOCATEGORY"):
        fake.handlers.append(
            {
                "event": event,
                "handler": "",
                "event_type": "offline",
                "auth_connector": "clinicbridge",
                "options": None,
            }
        )


def _person_edits(fake: FakeBitrix24, deal_id: int, **fields: Any) -> None:
    # A person's edit in the CRM UI: no auth_connector, so the offline queue records it.
    fake.dispatch("crm.item.update", {"entityTypeId": 2, "id": deal_id, "fields": fields})


def test_an_event_lost_online_is_recovered_by_the_offline_drain(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    _bind_offline(portal_fake)
    deal = portal_fake.new_deal("Орлов")
    _person_edits(portal_fake, deal["id"], UF_CRM_TEXT="Палата 4")  # the online event never arrives
    with rt.db.transaction() as session:
        session.get(Portal, installed).settings = {
            **session.get(Portal, installed).settings,
            "bitrix24": {**session.get(Portal, installed).settings["bitrix24"], "offline_extended": True},
        }

    post_form(client, "/bitrix24/events", form("onofflineevent"))  # the push that says "look"
    jobs()

    keys = [key for _, key, _ in _inbox(rt)]
    assert any(k.startswith("offline:") for k in keys)
    [clear] = portal_fake.calls("event.offline.clear")
    assert len(clear["message_id"]) == 1
    assert portal_fake.offline == [] and all(not v for v in portal_fake.reserved.values())
    with rt.db.transaction() as session:
        raw = session.scalar(select(InboxEvent.raw_body).where(InboxEvent.dedupe_key.startswith("offline:")))
    assert f"data%5BFIELDS%5D%5BID%5D={deal['id']}" in raw


def test_offline_off_an_event_lost_is_recovered_by_reconciliation(
    rt: Any, installed: int, portal_fake: FakeBitrix24
) -> None:
    from widget_server.bitrix24_sync import reconcile

    portal_fake.offline_extended = False
    deal = portal_fake.new_deal("Орлов")
    _person_edits(portal_fake, deal["id"], UF_CRM_TEXT="Палата 4")

    first = reconcile(rt, installed)
    second = reconcile(rt, installed)  # the overlap lists it again; the dedupe key keeps one copy

    assert first == {"seen": 1, "stored": 1} and second["stored"] == 0
    [(source, key, _)] = _inbox(rt)
    assert source == "bitrix24" and key.startswith(f"reconcile:{deal['id']}:")


def test_our_writes_echo_does_nothing(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24, jobs: Any
) -> None:
    from widget_server.registry import crm_for

    _bind_offline(portal_fake)
    portal_fake.deals[759] = portal_fake.new_deal("Орлов", id=759)
    with rt.db.transaction() as session:
        portal = session.get(Portal, installed)
        session.expunge(portal)
    crm_for(portal, rt).update_deal_fields("759", {"UF_CRM_TEXT": "Палата 3"})
    assert portal_fake.offline == []  # auth_connector: the offline queue skipped our own write

    post_form(client, "/bitrix24/events", form("oncrmdealupdate"))  # its online echo
    jobs()
    assert _inbox(rt)[0][2] == "own_write"

    _person_edits(portal_fake, 759, UF_CRM_TEXT="Палата 5")  # then a person's edit is theirs
    post_form(client, "/bitrix24/events", form("oncrmdealupdate", ts="1732392999"))
    jobs()
    assert _inbox(rt)[1][2] != "own_write"


# --- the deal tab ---------------------------------------------------------------------------------------


def test_deal_tab_renders_the_panel_with_a_session_token(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24
) -> None:
    with rt.db.transaction() as session:
        session.add(PortalUser(portal_id=installed, crm_user_id="7", name="Мария", roles=["staff"]))
    response = post_form(client, "/bitrix24/placement/deal-tab", form("placement_deal_tab"), FRAME_QUERY)
    html = response.get_data(as_text=True)

    assert response.status_code == 200
    assert "X-Frame-Options" not in response.headers
    assert response.headers["Content-Security-Policy"] == "frame-ancestors https://clinic.bitrix24.ru"
    assert 'data-shell="bitrix24"' in html and 'data-deal-id="3473"' in html and 'data-locale="ru"' in html
    assert 'data-api-base="https://cb.example.ru/api/v1"' in html
    assert 'src="https://cb.example.ru/static/widget/bitrix24/tab.js"' in html
    assert "api.bitrix24.com/api/v1" in html
    assert "Set-Cookie" not in response.headers
    token = html.split('data-session-token="', 1)[1].split('"', 1)[0]
    assert token.startswith("cbw_")

    me = client.get("/api/v1/portal", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200, me.get_json()
    assert client.get("/api/v1/portal", headers={"Authorization": "Bearer cbw_forged"}).status_code == 401


def test_deal_tab_for_a_user_without_a_role_gives_a_token_that_is_refused(
    client: Any, installed: int, portal_fake: FakeBitrix24
) -> None:
    html = post_form(
        client, "/bitrix24/placement/deal-tab", form("placement_deal_tab"), FRAME_QUERY
    ).get_data(as_text=True)
    token = html.split('data-session-token="', 1)[1].split('"', 1)[0]
    response = client.get("/api/v1/portal", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "no_role"


@pytest.mark.parametrize(
    ("replace", "query", "status", "field"),
    [
        ({"PLACEMENT_OPTIONS": "not json"}, FRAME_QUERY, 400, "PLACEMENT_OPTIONS"),
        ({"PLACEMENT_OPTIONS": '{"ID":"x"}'}, FRAME_QUERY, 400, "PLACEMENT_OPTIONS"),
        ({"AUTH_ID": "forged"}, FRAME_QUERY, 401, "AUTH_ID"),
        ({}, "DOMAIN=evil.bitrix24.ru&LANG=ru", 401, "DOMAIN"),
        ({"APPLICATION_TOKEN": "z" * 32}, FRAME_QUERY, 401, "APPLICATION_TOKEN"),
    ],
)
def test_deal_tab_refuses_unproven_frames(
    client: Any, rt: Any, installed: int, replace: dict[str, str], query: str, status: int, field: str
) -> None:
    response = post_form(client, "/bitrix24/placement/deal-tab", form("placement_deal_tab", **replace), query)
    assert response.status_code == status
    assert field in response.get_json()["error"]["fields"]
    assert not any(k.startswith(b"cb:b24w:") for k in rt.redis.keys("cb:b24w:*"))


def test_app_token_in_a_tab_that_matches_is_accepted(client: Any, installed: int) -> None:
    body = form("placement_deal_tab", APPLICATION_TOKEN=APP_TOKEN)
    assert post_form(client, "/bitrix24/placement/deal-tab", body, FRAME_QUERY).status_code == 200


def test_nothing_counted_without_inbox(rt: Any) -> None:
    with rt.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(InboxEvent)) == 0


def test_distribute_robot_hands_the_call_to_lead_distribution(
    client: Any,
    rt: Any,
    installed: int,
    portal_fake: FakeBitrix24,
    jobs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import widget_server.jobs.distribution as distribution

    seen: list[Any] = []

    def fake_distribute(portal: Any, crm: Any, event: Any) -> dict[str, str]:
        seen.append((portal.id, event.deal_id, event.params["rule_id"]))
        return {"user_id": "7", "decision_id": "12", "queued": "N"}

    monkeypatch.setattr(distribution, "distribute_robot", fake_distribute)
    portal_fake.valid_event_tokens.add(_robot_token("distribute"))
    assert post_form(client, "/bitrix24/robots/distribute", form("robot_distribute")).status_code == 200
    jobs()
    assert seen == [(installed, "759", "3")]
    [sent] = portal_fake.event_sends
    assert sent["RETURN_VALUES"] == {
        "user_id": "7",
        "decision_id": "12",
        "queued": "N",
        "ok": "Y",
        "error": "",
    }
