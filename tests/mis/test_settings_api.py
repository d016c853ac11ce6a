"""MIS settings over HTTP: templates, validation naming the setting, the doctor map, the IDENT key once."""

from __future__ import annotations

import pytest

from widget_server.appointments.settings import SEED002_TEMPLATE, validate_mis_settings
from widget_server.errors import DomainError
from widget_server.models import Portal


@pytest.fixture
def api(make_api, portal):
    return make_api(portal, "admin")


def test_a_template_is_applied_and_read_back(api):
    response = api.put("/api/v1/mis/settings", json={"template": "seed004", "ident_format": "xml"})
    assert response.status_code == 200, response.get_json()
    settings = api.get("/api/v1/mis/settings").get_json()["settings"]
    assert settings["stage_map"]["waiting_list"]["completed"] == {
        "pipeline_id": "Лист ожидания",
        "stage_id": "Визит состоялся",
    }
    assert settings["primary_after_gap_months"] == 6 and settings["ident_format"] == "xml"


def test_the_ident_key_is_shown_once_and_kept_hashed(rt, api, portal):
    first = api.put("/api/v1/mis/settings", json={"template": "seed002", "rotate_ident_key": True}).get_json()
    assert first["ident_key"].startswith("cbi_") and first["ident_key_set"] is True
    again = api.get("/api/v1/mis/settings").get_json()
    assert "ident_key" not in again and again["ident_key_set"] is True
    api.put("/api/v1/mis/settings", json={"no_show_reasons": ["8", "12"]})
    with rt.db.transaction() as s:
        mis = s.get(Portal, portal.id).settings["mis"]
    assert mis["ident_key_sha256"] and first["ident_key"] not in str(mis)
    assert mis["no_show_reasons"] == ["8", "12"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"stage_map": {"vip": {}}}, "stage_map.vip"),
        ({"stage_map": {"primary": {"visited": {}}}}, "stage_map.primary.visited"),
        (
            {"stage_map": {"primary": {"completed": {"pipeline_id": "P"}}}},
            "stage_map.primary.completed.stage_id",
        ),
        (
            {
                "stage_map": {
                    "primary": {"completed": {"pipeline_id": "P", "stage_id": "S", "loss_reason": "x"}}
                }
            },
            "stage_map.primary.completed.loss_reason",
        ),
        ({"primary_after_gap_months": 0}, "primary_after_gap_months"),
        ({"ident_format": "yaml"}, "ident_format"),
        ({"doctor_map": {"17": {}}}, "doctor_map.17.specialty"),
        ({"field_map": {"doctor_phone": "901"}}, "field_map.doctor_phone"),
        ({"mirror_from": "31.02.2026"}, "mirror_from"),
        ({"colour": "red"}, "colour"),
        ({"template": "seed999"}, "template"),
    ],
)
def test_a_bad_setting_is_422_naming_it_and_nothing_changes(rt, api, portal, body, field):
    api.put("/api/v1/mis/settings", json={"template": "seed002"})
    with rt.db.transaction() as s:
        before = s.get(Portal, portal.id).settings
    response = api.put("/api/v1/mis/settings", json=body)
    assert response.status_code == 422
    assert field in response.get_json()["error"]["fields"]
    with rt.db.transaction() as s:
        assert s.get(Portal, portal.id).settings == before


def test_targets_are_checked_against_the_crms_pipelines():
    pipelines = [{"id": "Первичный приём", "stages": [{"id": "Записан на приём"}, {"id": "Посетил клинику"}]}]
    doc = {**SEED002_TEMPLATE, "stage_map": {"primary": SEED002_TEMPLATE["stage_map"]["primary"]}}
    assert validate_mis_settings(doc, pipelines)["stage_map"]["primary"]["cancelled"]["stage_id"] == "lost"
    with pytest.raises(DomainError) as err:
        validate_mis_settings(SEED002_TEMPLATE, pipelines)
    assert err.value.field == "stage_map.repeat.booked.pipeline_id"
    wrong = [{"id": "Первичный приём", "stages": [{"id": "Записан на приём"}]}]
    with pytest.raises(DomainError) as err:
        validate_mis_settings(doc, wrong)
    assert err.value.field == "stage_map.primary.completed.stage_id"


def test_only_an_admin_sees_or_changes_mis_settings(make_api, portal):
    staff = make_api(portal, "staff")
    assert staff.get("/api/v1/mis/settings").status_code == 403
    assert staff.put("/api/v1/mis/settings", json={"template": "seed002"}).status_code == 403


def test_the_doctor_map_joins_the_timetable_and_feeds_the_note(rt, api, client):
    from pathlib import Path

    from widget_server.jobs.mis.notes import appointment_note

    key = api.put("/api/v1/mis/settings", json={"template": "seed002", "rotate_ident_key": True}).get_json()
    timetable = (Path(__file__).parent.parent / "fixtures" / "ident" / "timetable.json").read_bytes()
    client.post(
        "/mis/ident/clinic-a/PostTimeTable",
        data=timetable,
        content_type="application/json",
        headers={"IDENT-Integration-Key": key["ident_key"]},
    )
    api.put("/api/v1/mis/settings", json={"doctor_map": {"21": {"specialty": "ортодонтия"}}})
    view = api.get("/api/v1/mis/settings").get_json()
    assert view["doctors"] == [
        {"id": "17", "name": "Смирнов Игорь Петрович", "specialty": None},
        {"id": "21", "name": "Орлова Мария Андреевна", "specialty": "ортодонтия"},
    ]
    assert view["timetable"]["stale"] is False and view["timetable"]["intervals"] == 3
    doc = {
        "starts_at": "2026-03-12T09:00:00+00:00",
        "doctor_id": "21",
        "doctor_name": "Орлова Мария Андреевна",
    }
    note = appointment_note(doc, "booked", "Europe/Moscow", view["settings"]["doctor_map"])
    assert note == "Запись 12.03.2026 12:00, Орлова М. А. (ортодонтия): Записан на приём"


def test_on_amocrm_the_stage_map_must_name_the_accounts_real_pipelines_and_stages(  # type: ignore[no-untyped-def]
    rt, make_api, monkeypatch
):
    import json
    from pathlib import Path

    import responses

    from tests.support.fake_amocrm import FakeAmo
    from widget_server.amocrm_install import complete_install

    fixture = Path(__file__).resolve().parents[1] / "fixtures/amocrm/oauth/token__ok.json"
    token = json.loads(fixture.read_text())
    secret = "client-secret-0123456789"
    overrides = {"amo_client_id": "cid", "amo_client_secret": secret}
    monkeypatch.setattr(rt, "settings", rt.settings.with_overrides(**overrides))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.post("https://clinic.amocrm.ru/oauth2/access_token", json=token)
        fake = FakeAmo(rsps, token=token["access_token"], rate_limit=None)
        installed = complete_install(rt, "clinic.amocrm.ru", "auth-code")
        with rt.db.transaction() as s:
            portal = s.get(Portal, installed.portal_id)
        api = make_api(portal, "admin")
        pipeline = fake.pipelines[0]
        stage = pipeline["_embedded"]["statuses"][1]
        real = {"pipeline_id": str(pipeline["id"]), "stage_id": str(stage["id"])}

        wrong = api.put(
            "/api/v1/mis/settings",
            json={"stage_map": {"primary": {"booked": {**real, "stage_id": "Записан на приём"}}}},
        )
        assert wrong.status_code == 422
        assert list(wrong.get_json()["error"]["fields"]) == ["stage_map.primary.booked.stage_id"]
        with rt.db.transaction() as s:
            assert "mis" not in (s.get(Portal, installed.portal_id).settings or {})

        right = api.put("/api/v1/mis/settings", json={"stage_map": {"primary": {"booked": real}}})
        assert right.status_code == 200, right.get_json()
        assert right.get_json()["settings"]["stage_map"]["primary"]["booked"] == real


def test_saving_settings_keeps_the_ident_database_and_its_cursor(rt, api, portal):
    from widget_server.jobs.mis.ident import ident_reader, set_ident_dsn

    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        set_ident_dsn(row, "DRIVER={ODBC Driver 18 for SQL Server};SERVER=ident;UID=cb;PWD=secret")
        row.settings = {**row.settings, "mis": {**row.settings["mis"], "ident_cursor": "2026-11-23T10:00:00"}}
    assert api.put("/api/v1/mis/settings", json={"template": "seed002"}).status_code == 200
    assert api.put("/api/v1/mis/settings", json={"no_show_reasons": ["8", "9"]}).status_code == 200
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        assert row.settings["mis"]["ident_cursor"] == "2026-11-23T10:00:00"
        assert row.settings["mis"]["no_show_reasons"] == ["8", "9"]
        assert ident_reader(row) is not None  # the DSN is still there, still decryptable
