"""Seed 004's reports: primary patients (first visit ever or after six months), specialisations, sources,
conversion and no-shows, and JSON, CSV and PNG carrying the same numbers."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime
from decimal import Decimal

import pytest
from PIL import Image

from widget_server.models import MisLead
from widget_server.reports import build_report, make_period

from .clinic_data import msk


def _march(clinic, group: str = "month"):  # type: ignore[no-untyped-def]
    return make_period(date(2026, 3, 1), date(2026, 3, 31), group, clinic.portal.timezone)


def _story(clinic) -> dict[str, int]:  # type: ignore[no-untyped-def]
    a = clinic.patient("Андреева Анна")
    b = clinic.patient("Борисов Борис")
    c = clinic.patient("Власова Вера")
    d = clinic.patient("Громов Глеб")
    # A: back after 7 months → primary again; B: back after 5 → repeat; C: first visit ever; D: no-show.
    clinic.visit(a, msk(2025, 8, 10, 12), specialty="терапия")
    clinic.visit(a, msk(2026, 3, 12, 10), specialty="терапия", branch="Центр", doctor_name="Смирнов")
    clinic.visit(b, msk(2025, 10, 10, 12), specialty="хирургия")
    clinic.visit(b, msk(2026, 3, 12, 11), specialty="хирургия", branch="Центр", doctor_name="Петров")
    c1 = clinic.visit(c, msk(2026, 3, 20, 9), specialty=None, branch="Север", doctor_name="Смирнов")
    clinic.visit(c, msk(2026, 3, 27, 9), specialty="терапия", branch="Север", doctor_name="Смирнов")
    clinic.visit(d, msk(2026, 3, 14, 9), status="no_show", branch="Центр", doctor_name="Смирнов")
    # A no-show is no history: D's next booking is still primary; a void visit is no booking at all.
    clinic.visit(d, msk(2026, 3, 30, 9), status="void")
    return {"a": a, "b": b, "c": c, "c1": c1, "d": d}


def test_return_after_seven_months_is_primary_after_five_is_not(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    _story(clinic)
    with rt.db.transaction() as s:
        report = build_report(s, clinic.portal.id, "primary", _march(clinic))
    total = report.document()["totals"][0]
    # A (7 months) and C (first ever) are primary, B (5 months) a repeat; C's 2nd visit does not count twice.
    assert (total["primary"], total["repeat"], total["total"]) == (2, 1, 3)
    assert (total["primary_pct"], total["repeat_pct"]) == ("66.7", "33.3")


def test_six_months_to_the_day_is_primary_again(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    p = clinic.patient("Дмитриев Денис")
    q = clinic.patient("Егорова Ева")
    clinic.visit(p, msk(2025, 9, 12, 12))
    clinic.visit(p, msk(2026, 3, 12, 9))
    clinic.visit(q, msk(2025, 9, 13, 12))
    clinic.visit(q, msk(2026, 3, 12, 9))
    with rt.db.transaction() as s:
        total = build_report(s, clinic.portal.id, "primary", _march(clinic)).document()["totals"][0]
    assert (total["primary"], total["repeat"]) == (1, 1)


def test_local_date_decides_the_bucket(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    p = clinic.patient("Жуков Жан")
    # 31.03 23:30 UTC is already 01.04 in Moscow: an April visit.
    clinic.visit(p, msk(2026, 4, 1, 2, 30))
    with rt.db.transaction() as s:
        march = build_report(s, clinic.portal.id, "primary", _march(clinic)).document()
        april_period = make_period(date(2026, 4, 1), date(2026, 4, 30), "day", "Europe/Moscow")
        april = build_report(s, clinic.portal.id, "primary", april_period).document()
    assert march["totals"][0]["total"] == 0
    assert april["rows"][0] == {
        "period": "2026-04-01", "primary": 1, "primary_pct": "100.0", "repeat": 0, "repeat_pct": "0.0",
        "total": 1,
    }  # fmt: skip
    assert len(april["rows"]) == 30


def test_specialisations_sources_conversion_and_no_shows(rt, clinic) -> None:  # type: ignore[no-untyped-def]
    ids = _story(clinic)
    with rt.db.transaction() as s:
        s.add(MisLead(portal_id=clinic.portal.id, deal_id="L1", lead_created_at=msk(2026, 3, 19, 9), name="В",
                      attribution={"utm_source": "yandex"}, appointment_id=ids["c1"]))  # fmt: skip
        for deal_id, created in (("L2", msk(2026, 3, 1, 9)), ("L3", msk(2026, 2, 27, 9))):
            s.add(MisLead(portal_id=clinic.portal.id, deal_id=deal_id, lead_created_at=created, name="Х"))
        period = _march(clinic)
        spec = build_report(s, clinic.portal.id, "specialisations", period).document()
        sources = build_report(s, clinic.portal.id, "sources", period).document()
        conv = build_report(s, clinic.portal.id, "conversion", period).document()
        shows = build_report(s, clinic.portal.id, "no-shows", period).document()
    assert [(r["specialty"], r["count"], r["pct"]) for r in spec["totals"]] == [
        ("терапия", 2, "50.0"), ("Не указана", 1, "25.0"), ("хирургия", 1, "25.0"),
    ]  # fmt: skip
    # Primary people: A (no lead, no channel) and C (the lead that became C's first visit).
    assert [(r["source"], r["count"]) for r in sources["totals"]] == [("yandex", 1), ("Не указан", 1)]
    # Calls: the two March leads; booked primary: A, C ×1 (C's 2nd is a repeat) and D's no-show; 2 of 3 came.
    total = conv["totals"][0]
    assert (total["calls"], total["booked"], total["completed"], total["completed_pct"]) == (2, 3, 2, "66.7")
    by_doctor = {
        (r["branch"], r["doctor"]): (r["completed"], r["no_show"], r["no_show_pct"]) for r in shows["totals"]
    }
    assert by_doctor[("Центр", "Смирнов")] == (1, 1, "50.0")
    assert by_doctor[("Север", "Смирнов")] == (2, 0, "0.0")


def test_json_csv_and_png_carry_the_same_numbers(rt, clinic, make_api) -> None:  # type: ignore[no-untyped-def]
    _story(clinic)
    api = make_api(clinic.portal, "finance")
    query = "from=2026-03-01&to=2026-03-31&group=week"
    doc = api.get(f"/api/v1/reports/primary?{query}")
    assert doc.status_code == 200, doc.json
    body = doc.json
    csv_response = api.get(f"/api/v1/reports/primary.csv?{query}")
    assert csv_response.mimetype == "text/csv"
    raw = csv_response.data
    assert raw.startswith("\ufeff".encode())
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8-sig")), delimiter=";"))
    assert lines[0] == ["Период", "Первичные", "Первичные, %", "Повторные", "Повторные, %", "Всего пациентов"]
    keys = [c["key"] for c in body["columns"]]
    expected = [[str(row[k]).replace(".", ",") for k in keys] for row in [*body["rows"], *body["totals"]]]
    assert lines[1:] == expected
    assert lines[-1][0] == "Итого"
    png_response = api.get(f"/api/v1/reports/primary.png?{query}")
    assert png_response.mimetype == "image/png"
    image = Image.open(io.BytesIO(png_response.data))
    image.load()
    assert image.size == (1200, 700)
    drawn = json.loads(image.text["Description"])
    assert drawn["labels"] == [row["period"] for row in body["rows"]]
    assert drawn["series"]["Первичные"] == [row["primary"] for row in body["rows"]]
    assert drawn["series"]["Повторные"] == [row["repeat"] for row in body["rows"]]
    assert sum(drawn["series"]["Первичные"]) == body["totals"][0]["primary"] == 2
    for row in body["rows"]:
        if row["total"]:
            assert Decimal(row["primary_pct"]) + Decimal(row["repeat_pct"]) == Decimal("100.0")


def test_days_follow_the_clinics_clock_across_daylight_saving(rt, make_portal) -> None:  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    from .clinic_data import Clinic

    berlin = ZoneInfo("Europe/Berlin")
    clinic = Clinic(rt, make_portal(slug="berlin", timezone="Europe/Berlin"))
    p = clinic.patient("Müller Anna")
    q = clinic.patient("Schmidt Jan")
    # 00:30 on the day the clocks go forward (23:30 UTC the day before), and 23:30 on the day they go back.
    clinic.visit(p, datetime(2026, 3, 29, 0, 30, tzinfo=berlin))
    clinic.visit(q, datetime(2026, 10, 25, 23, 30, tzinfo=berlin))
    with rt.db.transaction() as s:
        period = make_period(date(2026, 3, 28), date(2026, 10, 26), "day", "Europe/Berlin")
        rows = build_report(s, clinic.portal.id, "primary", period).document()["rows"]
    busy = {row["period"]: row["total"] for row in rows if row["total"]}
    assert busy == {"2026-03-29": 1, "2026-10-25": 1}


def test_half_hour_zones_are_counted_by_the_instant(rt, make_portal) -> None:  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    from .clinic_data import Clinic

    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+05:30: an hour's visits can fall on two local days
    clinic = Clinic(rt, make_portal(slug="kolkata", timezone="Asia/Kolkata"))
    p = clinic.patient("Sharma Anil")
    clinic.visit(p, datetime(2026, 3, 2, 0, 10, tzinfo=kolkata), specialty="терапия")  # 18:40 UTC on 1.03
    late = datetime(2026, 3, 1, 23, 50, tzinfo=kolkata)
    clinic.visit(p, late, status="no_show", branch="A", doctor_name="B")
    with rt.db.transaction() as s:
        period = make_period(date(2026, 3, 1), date(2026, 3, 2), "day", "Asia/Kolkata")
        spec = build_report(s, clinic.portal.id, "specialisations", period).document()
        shows = build_report(s, clinic.portal.id, "no-shows", period).document()
    assert [(r["period"], r["specialty"]) for r in spec["rows"]] == [("2026-03-02", "терапия")]
    assert [(r["period"], r["no_show"], r["completed"]) for r in shows["rows"]] == [
        ("2026-03-01", 1, 0), ("2026-03-02", 0, 1),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("group", "expected"),
    [
        ("day", {"2026-03-28": 1, "2026-03-29": 1, "2026-10-25": 2}),
        ("week", {"2026-W13": 2, "2026-W43": 2}),
        ("month", {"2026-03": 2, "2026-10": 2}),
    ],
)
def test_counted_reports_place_visits_by_the_clocks_of_their_day(rt, make_portal, group, expected) -> None:  # type: ignore[no-untyped-def]
    from zoneinfo import ZoneInfo

    from .clinic_data import Clinic

    berlin = ZoneInfo("Europe/Berlin")
    clinic = Clinic(rt, make_portal(slug="berlin", timezone="Europe/Berlin"))
    p = clinic.patient("Müller Anna")
    # Either side of each clock change, near midnight: one offset for the whole period would move two of
    # them to the neighbouring day (00:30 CEST on 25.10 is 22:30 UTC on 24.10).
    for at in [(2026, 3, 28, 23, 30), (2026, 3, 29, 3, 30), (2026, 10, 25, 0, 30), (2026, 10, 25, 23, 30)]:
        clinic.visit(p, datetime(*at, tzinfo=berlin), status="no_show", specialty="терапия")
        clinic.visit(p, datetime(*at, tzinfo=berlin), specialty="терапия", branch="Mitte", doctor_name="W")
    with rt.db.transaction() as s:
        period = make_period(date(2026, 3, 1), date(2026, 10, 31), group, "Europe/Berlin")
        spec = build_report(s, clinic.portal.id, "specialisations", period).document()
        shows = build_report(s, clinic.portal.id, "no-shows", period).document()
    assert {r["period"]: r["count"] for r in spec["rows"]} == expected
    assert {r["period"]: r["no_show"] for r in shows["rows"] if r["branch"] == "—"} == expected
    assert {r["period"]: r["completed"] for r in shows["rows"] if r["branch"] == "Mitte"} == expected
