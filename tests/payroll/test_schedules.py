"""Weekly and cyclic «Рабочие графики»: expanded to a month's scheduled days and hours in the clinic's zone
(clock changes included), with holiday overrides and the HR calendar taking precedence, feeding the
overtime basis; the admin API refuses a bad pattern by field and writes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from widget_server.models import Portal
from widget_server.models.payroll import PayrollSchedule
from widget_server.payroll import payroll_statement
from widget_server.payroll.schedule import ScheduleInput, save_schedules, scheduled_intervals

from ..reports.clinic_data import msk

WEEKDAYS_9_TO_18 = {"days": [1, 2, 3, 4, 5], "start": "09:00", "end": "18:00"}


def _save(rt, portal, *entries: ScheduleInput) -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        save_schedules(s, s.get(Portal, portal.id), entries, actor="hr")


def _operator(rt, portal, staff, basis: str = "day") -> int:  # type: ignore[no-untyped-def]
    return staff.operator("Ольга Иванова", basis=basis)


def _month(rt, portal, month: str = "2026-03") -> dict:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return payroll_statement(s, s.get(Portal, portal.id), month)["operators"][0]


def _scheduled(row: dict) -> dict[str, int]:
    return {d["date"]: d["scheduled_minutes"] for d in row["days"] if d["scheduled_minutes"]}


def test_a_2_2_cycle_in_a_31_day_month(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = _operator(rt, portal, staff)
    # On 28.02 and 01.03, off 02–03.03, on 04–05.03 …: the cycle runs on from February's anchor.
    spec = {"on_days": 2, "off_days": 2, "anchor": "2026-02-28", "start": "09:00", "end": "21:00"}
    _save(rt, portal, ScheduleInput(op, date(2026, 2, 1), "cyclic", spec))
    staff.work(op, msk(2026, 3, 4, 9), msk(2026, 3, 4, 22))  # a scheduled day, 1 h over
    staff.work(op, msk(2026, 3, 31, 10), msk(2026, 3, 31, 14))  # the 31st is a day off: all overtime
    row = _month(rt, portal)
    on = [1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29]
    assert _scheduled(row) == {f"2026-03-{d:02d}": 12 * 60 for d in on}
    minutes = {"worked": 17 * 60, "scheduled": 15 * 12 * 60, "base": 12 * 60, "overtime": 5 * 60}
    assert row["minutes"] == minutes
    assert {line["code"]: line["amount"] for line in row["lines"]}["overtime"] == "1875.00"  # 5 h × 375
    # Not having turned up on the other 14 scheduled days is listed, day by day.
    assert len(row["late_starts"]) == 14


def test_a_1_3_night_cycle_brings_the_eves_shift_into_the_month(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = _operator(rt, portal, staff)
    spec = {"on_days": 1, "off_days": 3, "anchor": "2026-02-28", "start": "20:00", "end": "08:00"}
    _save(rt, portal, ScheduleInput(op, date(2026, 1, 1), "cyclic", spec))
    scheduled = _scheduled(_month(rt, portal))
    assert scheduled["2026-03-01"] == 8 * 60  # 00:00–08:00 of February's last shift
    assert scheduled["2026-03-04"] == 4 * 60 and scheduled["2026-03-05"] == 8 * 60
    assert scheduled["2026-03-29"] == 8 * 60  # the 28th's shift, the month's last start
    assert sum(scheduled.values()) == (8 + 7 * 12) * 60


def test_a_weekly_pattern_with_a_holiday_a_short_day_and_a_calendar_entry(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = _operator(rt, portal, staff, basis="month")
    overrides = [
        {"date": "2026-03-06", "start": "09:00", "end": "17:00", "reason": "предпраздничный"},
        {"date": "2026-03-09", "reason": "перенос 8 Марта"},
    ]
    _save(rt, portal, ScheduleInput(op, date(2026, 1, 1), "weekly", WEEKDAYS_9_TO_18, overrides))
    staff.schedule(op, date(2026, 3, 11), start="12:00", hours=4)  # HR's calendar beats the pattern
    staff.work(op, msk(2026, 3, 9, 10), msk(2026, 3, 9, 13))  # worked on the holiday
    row = _month(rt, portal)
    scheduled = _scheduled(row)
    assert len(scheduled) == 21  # 22 weekdays in March 2026 less the 9th
    assert "2026-03-09" not in scheduled
    assert scheduled["2026-03-06"] == 8 * 60
    assert scheduled["2026-03-11"] == 4 * 60
    assert "2026-03-07" not in scheduled and "2026-03-08" not in scheduled
    assert row["minutes"]["scheduled"] == (19 * 9 + 8 + 4) * 60
    # The month basis: 3 h worked against 183 h scheduled, no overtime even on the holiday.
    assert (row["minutes"]["base"], row["minutes"]["overtime"]) == (180, 0)


def test_a_new_pattern_from_mid_month_takes_over_from_its_date(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = _operator(rt, portal, staff)
    cycle = {"on_days": 2, "off_days": 2, "anchor": "2026-03-16", "start": "08:00", "end": "20:00"}
    _save(
        rt, portal,
        ScheduleInput(op, date(2026, 1, 1), "weekly", WEEKDAYS_9_TO_18),
        ScheduleInput(op, date(2026, 3, 16), "cyclic", cycle),
    )  # fmt: skip
    scheduled = _scheduled(_month(rt, portal))
    assert max(d for d, m in scheduled.items() if m == 9 * 60) == "2026-03-13"
    assert sorted(d for d, m in scheduled.items() if m == 12 * 60) == [
        f"2026-03-{d}" for d in (16, 17, 20, 21, 24, 25, 28, 29)
    ]


def test_clock_changes_last_what_the_wall_clock_says() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    row = PayrollSchedule(
        user_id=1, effective_from=date(2026, 1, 1), kind="weekly", overrides=[],
        spec={"days": [6, 7], "start": "22:00", "end": "06:00"},
    )  # fmt: skip
    intervals = scheduled_intervals([row], [], berlin, date(2026, 3, 28), date(2026, 3, 29))
    (sat, sun) = [(end - begin) for begin, end in intervals]
    assert sat == timedelta(hours=7)  # the night of 28→29 March loses an hour
    assert sun == timedelta(hours=8)
    assert intervals[0][0] == datetime(2026, 3, 28, 21, tzinfo=UTC)
    autumn = scheduled_intervals([row], [], berlin, date(2026, 10, 24), date(2026, 10, 24))
    assert autumn[0][1] - autumn[0][0] == timedelta(hours=9)


# --- API ---------------------------------------------------------------------------------------------------


def _count(rt) -> int:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return s.scalar(select(func.count()).select_from(PayrollSchedule))


def test_schedules_round_trip_and_feed_the_statement(rt, make_api, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = _operator(rt, portal, staff)
    admin = make_api(portal, "admin")
    body = {"schedules": [{
        "user_id": op, "effective_from": "2026-03-01", "kind": "weekly", **WEEKDAYS_9_TO_18,
        "overrides": [{"date": "2026-03-09"}],
    }]}  # fmt: skip
    response = admin.put("/api/v1/payroll/schedules", json=body)
    assert response.status_code == 200, response.json
    assert response.json == {"schedules": [{
        "user_id": op, "effective_from": "2026-03-01", "kind": "weekly", **WEEKDAYS_9_TO_18,
        "overrides": [{"date": "2026-03-09"}],
    }]}  # fmt: skip
    assert admin.get("/api/v1/payroll/schedules").json == response.json
    # The same date again replaces that row instead of adding one.
    body["schedules"][0]["days"] = [1, 2, 3, 4]
    assert admin.put("/api/v1/payroll/schedules", json=body).json["schedules"][0]["days"] == [1, 2, 3, 4]
    assert _count(rt) == 1
    minutes = admin.get("/api/v1/payroll/2026-03").json["operators"][0]["minutes"]
    assert minutes["scheduled"] == 17 * 9 * 60  # Mon–Thu in March 2026 less the 9th


def test_roles(make_api, portal) -> None:  # type: ignore[no-untyped-def]
    finance = make_api(portal, "finance")
    assert finance.get("/api/v1/payroll/schedules").status_code == 403
    assert finance.put("/api/v1/payroll/schedules", json={"schedules": []}).status_code == 403


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"days": [1, 8]}, "schedules[0].days"),
        ({"days": []}, "schedules[0].days"),
        ({"days": [1, 1]}, "schedules[0].days"),
        ({"days": "пн-пт"}, "schedules[0].days"),
        ({"start": "9:00"}, "schedules[0].start"),
        ({"end": "24:00"}, "schedules[0].end"),
        ({"end": "09:00"}, "schedules[0].end"),
        ({"kind": "monthly"}, "schedules[0].kind"),
        ({"user_id": 999999}, "schedules[0].user_id"),
        ({"effective_from": "01.03.2026"}, "schedules[0].effective_from"),
        ({"overrides": [{"date": "2026-02-30"}]}, "schedules[0].overrides[0].date"),
        ({"overrides": [{"date": "2026-03-09"}, {"date": "2026-03-09"}]}, "schedules[0].overrides[1].date"),
        ({"overrides": [{"date": "2026-03-06", "start": "09:00"}]}, "schedules[0].overrides[0].end"),
        ({"overrides": [{"date": "2026-02-20"}]}, "schedules[0].overrides[0].date"),
        ({"kind": "cyclic", "on_days": 2, "off_days": 0, "anchor": "2026-03-01"}, "schedules[0].off_days"),
        ({"kind": "cyclic", "on_days": "2", "off_days": 2, "anchor": "2026-03-01"}, "schedules[0].on_days"),
        ({"kind": "cyclic", "on_days": 2, "off_days": 2, "anchor": "1 марта"}, "schedules[0].anchor"),
        ({"kind": "cyclic", "on_days": 2, "off_days": 2}, "schedules[0].anchor"),
        ({"weeks": 2}, "schedules[0].weeks"),
    ],
)
def test_a_bad_pattern_is_a_422_naming_the_field(rt, make_api, portal, staff, change, field) -> None:  # type: ignore[no-untyped-def]
    op = _operator(rt, portal, staff)
    good = {"user_id": op, "effective_from": "2026-01-01", "kind": "weekly", **WEEKDAYS_9_TO_18}
    bad = {"user_id": op, "effective_from": "2026-03-01", "kind": "weekly", **WEEKDAYS_9_TO_18, **change}
    response = make_api(portal, "admin").put("/api/v1/payroll/schedules", json={"schedules": [good, bad]})
    assert response.status_code == 422, response.json
    assert field.replace("schedules[0]", "schedules[1]") in response.json["error"]["fields"], response.json
    assert _count(rt) == 0


def test_the_month_preview_shows_what_payroll_will_count(rt, make_api, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = _operator(rt, portal, staff)
    spec = {"on_days": 2, "off_days": 2, "anchor": "2026-02-27", "start": "20:00", "end": "08:00"}
    _save(rt, portal, ScheduleInput(op, date(2026, 1, 1), "cyclic", spec))
    admin = make_api(portal, "admin")
    document = admin.get("/api/v1/payroll/schedules?month=2026-03").json
    (mine,) = document["scheduled"]
    days = {d["date"]: d["minutes"] for d in mine["days"]}
    # 27–28.02 on: the 28th's night ends at 08:00 on 01.03; then 03–04.03 on …
    assert days["2026-03-01"] == 8 * 60 and "2026-03-02" not in days
    assert days["2026-03-03"] == 4 * 60 and days["2026-03-04"] == 12 * 60
    first = {"starts_at": "2026-02-28T20:00+03:00", "ends_at": "2026-03-01T08:00+03:00"}
    assert mine["intervals"][0] == first
    assert mine["minutes"] == sum(days.values())
    assert mine["minutes"] == _month(rt, portal)["minutes"]["scheduled"]
    bad = admin.get("/api/v1/payroll/schedules?month=2026-3")
    assert bad.status_code == 422 and "month" in bad.json["error"]["fields"]
