"""Hours from start/end-of-day events: pauses, local midnight, the month's edges, open shifts, lateness."""

from __future__ import annotations

from datetime import date, datetime

from widget_server.models import Portal
from widget_server.payroll import payroll_csv, payroll_statement

from ..reports.clinic_data import MSK


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=MSK)  # type: ignore[misc]


def _op(rt, portal, month: str = "2026-03") -> dict:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return payroll_statement(s, s.get(Portal, portal.id), month)["operators"][0]


def test_a_pause_is_not_paid(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова")
    staff.events(
        op,
        (_at(2026, 3, 2, 9), "on_shift"),
        (_at(2026, 3, 2, 13), "paused"),
        (_at(2026, 3, 2, 13, 45), "on_shift"),
        (_at(2026, 3, 2, 18, 7, 59), "off"),
    )
    doc = _op(rt, portal)
    assert doc["minutes"]["worked"] == 4 * 60 + 4 * 60 + 22  # seconds are floored, never paid up
    assert doc["shifts"] == [
        {"started_at": "2026-03-02T09:00+03:00", "ended_at": "2026-03-02T18:07+03:00", "minutes": 502}
    ]


def test_a_night_shift_is_split_at_local_midnight_and_the_month_gets_its_own_part(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова")
    staff.schedule(op, date(2026, 3, 31), start="20:00", hours=8)
    staff.work(op, _at(2026, 3, 31, 20), _at(2026, 4, 1, 4))
    march, april = _op(rt, portal, "2026-03"), _op(rt, portal, "2026-04")
    assert march["days"] == [{"date": "2026-03-31", "scheduled_minutes": 240, "worked_minutes": 240}]
    assert april["days"] == [{"date": "2026-04-01", "scheduled_minutes": 240, "worked_minutes": 240}]
    assert march["minutes"]["base"] == april["minutes"]["base"] == 240


def test_a_shift_open_at_month_end_is_listed_and_never_guessed(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова")
    staff.work(op, _at(2026, 3, 30, 9), _at(2026, 3, 30, 17))
    staff.events(op, (_at(2026, 3, 31, 9), "on_shift"))  # «Завершить рабочий день» never pressed
    with rt.db.transaction() as s:
        statement = payroll_statement(s, s.get(Portal, portal.id), "2026-03")
    doc = statement["operators"][0]
    assert doc["minutes"]["worked"] == 8 * 60
    assert doc["open_shifts"] == [
        {"started_at": "2026-03-31T09:00+03:00", "reason": "не завершена: часы не считаются"}
    ]
    assert "Открытая смена" in payroll_csv(statement)


def test_late_starts_and_missed_days_are_listed(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова")
    staff.schedule(op, date(2026, 3, 2))
    staff.schedule(op, date(2026, 3, 3))
    staff.schedule(op, date(2026, 3, 4))
    staff.work(op, _at(2026, 3, 2, 8, 55), _at(2026, 3, 2, 17))
    staff.work(op, _at(2026, 3, 3, 9, 17), _at(2026, 3, 3, 17))
    late = _op(rt, portal)["late_starts"]
    assert late == [
        {"date": "2026-03-03", "scheduled_start": "2026-03-03T09:00+03:00",
         "started_at": "2026-03-03T09:17+03:00", "minutes_late": 17},
        {"date": "2026-03-04", "scheduled_start": "2026-03-04T09:00+03:00", "started_at": None,
         "minutes_late": None},
    ]  # fmt: skip


def test_a_visit_without_booked_by_goes_to_the_deal_responsible(rt, portal, staff, clinic) -> None:  # type: ignore[no-untyped-def]
    from widget_server.models import DistributionAssignment

    op = staff.operator("Ольга Иванова")
    with rt.db.transaction() as s:
        s.add(
            DistributionAssignment(portal_id=portal.id, deal_id="D77", user_id=op, state="taken", trigger="t")
        )
    clinic.visit(clinic.patient("Без записавшего"), _at(2026, 3, 5, 10), deal_id="D77")
    clinic.visit(clinic.patient("Другая сделка"), _at(2026, 3, 5, 11), deal_id="D78")
    doc = _op(rt, portal)
    assert [a["deal_id"] for a in doc["appointments"]] == ["D77"]
    assert {line["code"]: line["amount"] for line in doc["lines"]}["conversion"] == "150.00"


def test_each_line_is_rounded_half_up_to_kopecks(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    # 0.30 ₽/h × 1 min = 0.005 ₽: half up is 0.01 (banker's rounding would pay 0.00).
    op = staff.operator("Ольга Иванова", hourly_rate="0.30", overtime_rate="0.90")
    staff.schedule(op, date(2026, 3, 2), start="09:00", hours=1 / 60)
    staff.work(op, _at(2026, 3, 2, 9), _at(2026, 3, 2, 9, 2))
    lines = {line["code"]: line for line in _op(rt, portal)["lines"]}
    assert (lines["base"]["minutes"], lines["base"]["amount"]) == (1, "0.01")
    assert (lines["overtime"]["minutes"], lines["overtime"]["amount"]) == (1, "0.02")  # 0.015 → 0.02
