"""Seed 004's payroll for March 2026, exactly as issue 11 lists it, and the breakdown that proves it."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, timedelta
from decimal import Decimal

from widget_server.models import Portal
from widget_server.payroll import payroll_csv, payroll_statement

from ..reports.clinic_data import MSK, Clinic
from .staff_data import Staff


def _weekdays(n: int) -> list[date]:
    days, day = [], date(2026, 3, 1)
    while len(days) < n:
        if day.isoweekday() <= 5:
            days.append(day)
        day += timedelta(days=1)
    return days


def _at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=MSK)


def _march(staff, clinic, *, basis: str = "month", short_day: bool = False) -> int:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова", basis=basis)
    days = _weekdays(20)
    for day in days:
        staff.schedule(op, day)
    long_day = days[7]
    short = days[3] if short_day else None
    for day in days:
        if day == long_day:
            staff.work(op, _at(day, 9), _at(day, 21, 30))  # 12 h 30 min
        elif day == short:
            staff.work(op, _at(day, 9), _at(day, 15))  # 2 h short
        else:
            staff.work(op, _at(day, 9), _at(day, 17))
    staff.work(op, _at(date(2026, 3, 14), 10), _at(date(2026, 3, 14), 14))  # an unscheduled Saturday
    # 40 primary patients booked by her (the MIS writes «Иванова О.»), 28 came; 12 waiting-list visits.
    for i in range(40):
        patient = clinic.patient(f"Пациент {i}")
        status = "completed" if i < 28 else "no_show"
        clinic.visit(patient, _at(days[i % 20], 12), status=status, booked_by="Иванова О.")
    for i in range(12):
        patient = clinic.patient(f"Ожидающий {i}")
        clinic.visit(patient, _at(days[i], 13), booked_by="Иванова О.", waiting_list=True)
    # Not hers: booked by someone else, and a visit in April.
    clinic.visit(clinic.patient("Чужой"), _at(days[0], 15), booked_by="Петрова А.")
    clinic.visit(clinic.patient("Апрель"), _at(date(2026, 4, 1), 10), booked_by="Иванова О.")
    return op


def _statement(rt, portal) -> dict:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return payroll_statement(s, s.get(Portal, portal.id), "2026-03")


def test_seed004_payroll_march(rt, portal, staff, clinic) -> None:  # type: ignore[no-untyped-def]
    _march(staff, clinic)
    statement = _statement(rt, portal)
    (op,) = statement["operators"]
    amounts = {line["code"]: line["amount"] for line in op["lines"]}
    assert amounts == {
        "base": "40000.00", "overtime": "3187.50", "conversion": "4200.00", "waiting_list": "1200.00",
    }  # fmt: skip
    assert op["total"] == statement["total"] == "48587.50"
    assert op["total_text"] == "48\u00a0587,50\u00a0₽"
    assert op["minutes"] == {
        "worked": 168 * 60 + 30,
        "scheduled": 160 * 60,
        "base": 160 * 60,
        "overtime": 510,
    }
    assert op["conversion"] == {"booked": 40, "came": 28, "pct": "70.0"}
    lines = {line["code"]: line for line in op["lines"]}
    base = lines["base"]
    assert (base["quantity"], base["minutes"], base["rate"]) == ("160:00", 9600, "250.00")
    assert (lines["overtime"]["quantity"], lines["overtime"]["rate"]) == ("8:30", "375.00")
    assert "пришли 28 из 40 (доведение 70,0 %)" in lines["conversion"]["title"]
    # Every counted item is listed: 21 shifts, 40 + 12 visits of hers (the April and the foreign one not).
    assert len(op["shifts"]) == 21
    assert len(op["appointments"]) == 52
    assert sum(1 for a in op["appointments"] if a["counted"]) == 40

    rows = list(csv.reader(io.StringIO(payroll_csv(statement).removeprefix("\ufeff")), delimiter=";"))
    money = [Decimal(r[7].replace(",", ".")) for r in rows[1:] if r[1] == "Начисление"]
    assert sum(money) == Decimal("48587.50")
    assert rows[-1] == ["Всего", "Итого", "", "", "", "", "", "48587,50"]
    assert sum(1 for r in rows if r[1] == "Смена") == 21


def test_two_hours_short_moves_the_overtime_bases_apart_by_two_hours(rt, portal, staff, clinic, make_portal):  # type: ignore[no-untyped-def]
    _march(staff, clinic, basis="month", short_day=True)
    monthly = _statement(rt, portal)["operators"][0]
    other = make_portal(slug="clinic-b")
    _march(Staff(rt, other), Clinic(rt, other), basis="day", short_day=True)
    daily = _statement(rt, other)["operators"][0]
    assert monthly["minutes"]["overtime"] == 6 * 60 + 30  # 166 h 30 worked − 160 scheduled
    assert daily["minutes"]["overtime"] == 8 * 60 + 30  # the 4 h 30 long day + the 4 h Saturday
    assert daily["minutes"]["overtime"] - monthly["minutes"]["overtime"] == 120
    assert monthly["minutes"]["base"] - daily["minutes"]["base"] == 120
    assert {line["code"]: line["amount"] for line in monthly["lines"]}["overtime"] == "2437.50"
    assert {line["code"]: line["amount"] for line in daily["lines"]}["base"] == "39500.00"
