"""IDENT's HTTP contract: key auth (401/403 in plain text), GetTickets paging and every 400, JSON and XML
giving the same tickets, PostTimeTable replacing the snapshot or keeping it on a bad body."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from defusedxml import ElementTree as SafeXml
from sqlalchemy import func, select

from widget_server.appointments.tickets import offer_lead
from widget_server.appointments.timetable import issue_ident_key, timetable_status
from widget_server.models import MisTimetable, Portal

from .conftest import MSK

FIXTURES = Path(__file__).parent.parent / "fixtures" / "ident"
WINDOW = {"dateTimeFrom": "2026-03-01T00:00:00+03:00", "dateTimeTo": "2026-03-31T23:59:59+03:00"}


@pytest.fixture
def ident_key(rt, clinic) -> str:
    with rt.db.transaction() as s:
        return issue_ident_key(s.get(Portal, clinic.id))


@pytest.fixture
def leads(rt, clinic) -> None:
    phones = ["+7 916 123-45-67", "+89261112233", "+7 (888) 888-88-88", "8 903 123-45-67"]
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        for i, phone in enumerate(phones, start=1):
            offer_lead(
                s,
                portal,
                deal_id=str(100 + i),
                created_at=datetime(2026, 3, 10, 9, i, tzinfo=MSK),
                name=f"Пациент {i}",
                phone=phone,
                form_name="Форма записи на сайте",
                attribution={"utm_source": "yandex"} if i == 1 else {},
            )


def _get(client, key, method="GetTickets", **params):
    headers = {} if key is None else {"IDENT-Integration-Key": key}
    return client.get(f"/mis/ident/dental/{method}", query_string=params, headers=headers)


def test_tickets_are_our_leads_with_offsets_and_one_e164_phone(client, ident_key, leads):
    response = _get(client, ident_key, **WINDOW, limit="500", offset="0")
    assert response.status_code == 200
    tickets = response.get_json()
    assert [t["Id"] for t in tickets] == ["cb-101", "cb-102", "cb-104"]  # cb-103's phone is invalid
    assert tickets[0] == {
        "Id": "cb-101",
        "DateAndTime": "2026-03-10T09:01:00+03:00",
        "ClientPhone": "+79161234567",
        "ClientFullName": "Пациент 1",
        "FormName": "Форма записи на сайте",
        "UtmSource": "yandex",
    }
    assert tickets[1]["ClientPhone"] == "+79261112233"  # `+89…` read as `89…`


def test_paging_with_offset_and_offSet_is_stable(client, ident_key, leads):
    first = _get(client, ident_key, **WINDOW, limit="2", offset="0").get_json()
    second = _get(client, ident_key, **WINDOW, limit="2", offSet="2").get_json()
    assert [t["Id"] for t in first + second] == ["cb-101", "cb-102", "cb-104"]
    again = client.get(
        "/mis/ident/dental/gettickets",
        query_string={
            "DATETIMEFROM": WINDOW["dateTimeFrom"],
            "datetimeto": WINDOW["dateTimeTo"],
            "LIMIT": "2",
        },
        headers={"IDENT-Integration-Key": ident_key},
    )
    assert [t["Id"] for t in again.get_json()] == ["cb-101", "cb-102"]


def test_offsets_without_a_colon_are_read(client, ident_key, leads):
    response = _get(
        client, ident_key, dateTimeFrom="2026-03-10T09:02:00+0300", dateTimeTo="2026-03-10T09:02:00+0300"
    )
    assert [t["Id"] for t in response.get_json()] == ["cb-102"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"dateTimeTo": WINDOW["dateTimeTo"]}, "dateTimeFrom is required"),
        ({"dateTimeFrom": WINDOW["dateTimeFrom"]}, "dateTimeTo is required"),
        ({**WINDOW, "dateTimeFrom": "вчера"}, "dateTimeFrom: not an ISO 8601"),
        ({**WINDOW, "dateTimeTo": "2026-03-31T10:00:00"}, "dateTimeTo: an offset"),
        (
            {"dateTimeFrom": WINDOW["dateTimeTo"], "dateTimeTo": WINDOW["dateTimeFrom"]},
            "dateTimeFrom is after",
        ),
        ({**WINDOW, "limit": "0"}, "limit: must be between 1 and 1000"),
        ({**WINDOW, "limit": "1001"}, "limit: must be between 1 and 1000"),
        ({**WINDOW, "limit": "ten"}, "limit: a non-negative integer"),
        ({**WINDOW, "offset": "-1"}, "offset: a non-negative integer"),
    ],
)
def test_a_missing_or_bad_parameter_is_400_naming_it(client, ident_key, params, named):
    response = _get(client, ident_key, **params)
    assert response.status_code == 400
    assert response.mimetype == "text/plain"
    assert named in response.get_data(as_text=True)


def test_auth_missing_is_401_and_wrong_other_or_inactive_is_403(rt, client, ident_key, make_portal):
    missing = _get(client, None, **WINDOW)
    assert (missing.status_code, missing.mimetype) == (401, "text/plain")
    assert "IDENT-Integration-Key" in missing.get_data(as_text=True)
    assert _get(client, "cbi_wrong", **WINDOW).status_code == 403
    other = make_portal(slug="other-clinic")
    with rt.db.transaction() as s:
        other_key = issue_ident_key(s.get(Portal, other.id))
    refused = _get(client, other_key, **WINDOW)
    assert (refused.status_code, refused.mimetype) == (403, "text/plain")
    with rt.db.transaction() as s:
        s.get(Portal, other.id).status = "blocked"
    blocked = client.get(
        "/mis/ident/other-clinic/GetTickets",
        query_string=WINDOW,
        headers={"IDENT-Integration-Key": other_key},
    )
    assert blocked.status_code == 403 and "blocked" in blocked.get_data(as_text=True)


def test_the_key_is_stored_hashed(rt, clinic, ident_key):
    with rt.db.transaction() as s:
        stored = json.dumps(s.get(Portal, clinic.id).settings)
    assert ident_key not in stored


def test_json_and_xml_give_the_same_tickets(rt, client, clinic, ident_key, leads):
    as_json = _get(client, ident_key, **WINDOW).get_json()
    with rt.db.transaction() as s:
        portal = s.get(Portal, clinic.id)
        portal.settings = {**portal.settings, "mis": {**portal.settings["mis"], "ident_format": "xml"}}
    response = _get(client, ident_key, **WINDOW)
    assert response.mimetype == "application/xml"
    root = SafeXml.fromstring(response.data)
    assert root.tag == "ArrayOfTicket"
    as_xml = [{field.tag: field.text for field in ticket} for ticket in root]
    assert as_xml == [{k: str(v) for k, v in t.items()} for t in as_json]


def test_telephony_methods_answer_an_empty_list(client, ident_key):
    for method in ("GetFinishedCalls", "GetOngoingCalls"):
        response = _get(client, ident_key, method, **WINDOW)
        assert (response.status_code, response.get_json()) == (200, [])


def _post(client, key, body: bytes, content_type="application/json"):
    return client.post(
        "/mis/ident/dental/PostTimeTable",
        data=body,
        content_type=content_type,
        headers={"IDENT-Integration-Key": key},
    )


def _snapshot(rt, clinic):
    with rt.db.transaction() as s:
        row = s.scalar(select(MisTimetable).where(MisTimetable.portal_id == clinic.id))
        return None if row is None else row.doc


def test_timetable_json_and_xml_replace_the_snapshot_alike(rt, client, clinic, ident_key):
    assert _post(client, ident_key, (FIXTURES / "timetable.json").read_bytes()).status_code == 200
    from_json = _snapshot(rt, clinic)
    assert [d["Name"] for d in from_json["Doctors"]] == ["Смирнов Игорь Петрович", "Орлова Мария Андреевна"]
    assert (
        _post(client, ident_key, (FIXTURES / "timetable.xml").read_bytes(), "application/xml").status_code
        == 200
    )
    assert _snapshot(rt, clinic) == from_json
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(MisTimetable)) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "body is not valid JSON or XML"),
        (b'{"Doctors": [], "Intervals": "x"}', "Intervals: a list is required"),
        (b'{"Doctors": [{"Id": 1}], "Intervals": []}', "Doctors[0].Name"),
        (
            b'{"Doctors": [{"Id": 1, "Name": "A"}], "Intervals": [{"DoctorId": 2, "StartDateTime":'
            b' "2026-03-12T10:00:00+03:00", "LengthInMinutes": 30, "IsBusy": true}]}',
            "Intervals[0].DoctorId: 2 is not in Doctors",
        ),
        (
            b'{"Doctors": [{"Id": 1, "Name": "A"}], "Intervals": [{"DoctorId": 1, "StartDateTime":'
            b' "2026-03-12T10:00:00", "LengthInMinutes": 30, "IsBusy": true}]}',
            "Intervals[0].StartDateTime: an offset",
        ),
        (b'<!DOCTYPE x [<!ENTITY a "b">]><TimeTable>&a;</TimeTable>', "body is not valid JSON or XML"),
    ],
)
def test_a_bad_timetable_is_400_and_the_old_snapshot_stays(rt, client, clinic, ident_key, body, reason):
    _post(client, ident_key, (FIXTURES / "timetable.json").read_bytes())
    before = _snapshot(rt, clinic)
    response = _post(client, ident_key, body)
    assert (response.status_code, response.mimetype) == (400, "text/plain")
    assert reason in response.get_data(as_text=True)
    assert _snapshot(rt, clinic) == before


def test_a_snapshot_over_six_hours_old_shows_stale(rt, client, clinic, ident_key, monkeypatch):
    _post(client, ident_key, (FIXTURES / "timetable.json").read_bytes())
    import widget_server.appointments.timetable as timetable

    real = timetable.now_utc()
    monkeypatch.setattr(timetable, "now_utc", lambda: real + timedelta(hours=5))
    with rt.db.transaction() as s:
        assert timetable_status(s, s.get(Portal, clinic.id))["stale"] is False
    monkeypatch.setattr(timetable, "now_utc", lambda: real + timedelta(hours=7))
    with rt.db.transaction() as s:
        assert timetable_status(s, s.get(Portal, clinic.id))["stale"] is True


def test_get_on_post_method_is_405_and_nothing_redirects(client, ident_key):
    assert _get(client, ident_key, "PostTimeTable").status_code == 405
    response = client.get(
        "/mis/ident/dental/GetTickets/", query_string=WINDOW, headers={"IDENT-Integration-Key": ident_key}
    )
    assert response.status_code == 200
