"""A rate that changes mid-month: every line kind is split at the change, hours by the local day they were
worked in (a night shift across the change is cut at local midnight), bonuses by the visit's local date."""

from __future__ import annotations

import csv
import io
from datetime import date
from decimal import Decimal

from sqlalchemy import delete

from widget_server.models import PayrollRate, Portal
from widget_server.payroll import RateInput, payroll_csv, payroll_statement, save_rates

from ..reports.clinic_data import msk
from .staff_data import SEED_RATES

FROM_16TH = {
    "hourly_rate": "270.00",
    "overtime_rate": "405.50",
    "primary_bonus": "160.00",
    "waiting_list_bonus": "110.00",
}


def _rate(rt, portal, user_id: int, since: date, amounts: dict, basis: str = "day") -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        entry = RateInput(user_id, since, amounts, basis, ("Иванова О.",))
        save_rates(s, s.get(Portal, portal.id), [entry], actor="test")


def _statement(rt, portal, month: str = "2026-03") -> dict:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as s:
        return payroll_statement(s, s.get(Portal, portal.id), month)


def test_a_mid_month_change_splits_every_line_at_local_midnight(rt, portal, staff, clinic) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова", basis="day")  # 250.00 / 375.00 / 150.00 / 100.00 from 01.01
    _rate(rt, portal, op, date(2026, 3, 16), FROM_16TH)
    staff.schedule(op, date(2026, 3, 13))  # 09:00–17:00
    staff.work(op, msk(2026, 3, 13, 9), msk(2026, 3, 13, 17, 20))  # 20 min over, old rate
    staff.schedule(op, date(2026, 3, 15), start="22:00")  # a night shift until 06:00 on the 16th
    staff.work(op, msk(2026, 3, 15, 22), msk(2026, 3, 16, 6, 7))  # 2 h old, 6 h + 7 min over new
    staff.schedule(op, date(2026, 3, 17))
    staff.work(op, msk(2026, 3, 17, 9), msk(2026, 3, 17, 16, 13))  # 7 h 13 min, short
    for at, status in [
        (msk(2026, 3, 10, 12), "completed"),
        (msk(2026, 3, 10, 13), "completed"),
        # 01:00 in Moscow is still the 15th in UTC: the local date puts it at the new bonus.
        (msk(2026, 3, 16, 1), "completed"),
        (msk(2026, 3, 20, 12), "completed"),
        (msk(2026, 3, 20, 13), "completed"),
        (msk(2026, 3, 20, 14), "completed"),
        (msk(2026, 3, 20, 15), "no_show"),
    ]:
        clinic.visit(clinic.patient(f"Пациент {at:%d %H}"), at, status=status, booked_by="Иванова О.")
    for at in (msk(2026, 3, 14, 12), msk(2026, 3, 25, 12), msk(2026, 3, 25, 13)):
        clinic.visit(clinic.patient(f"Ожидающий {at:%d %H}"), at, booked_by="Иванова О.", waiting_list=True)

    statement = _statement(rt, portal)
    (row,) = statement["operators"]
    got = [(ln["code"], ln["from"], ln["quantity"], ln["rate"], ln["amount"]) for ln in row["lines"]]
    assert got == [
        ("base", "2026-03-01", "10:00", "250.00", "2500.00"),  # 8 h on the 13th + 2 h on the 15th
        ("base", "2026-03-16", "13:13", "270.00", "3568.50"),  # 6 h on the 16th + 7 h 13 min on the 17th
        ("overtime", "2026-03-01", "0:20", "375.00", "125.00"),
        ("overtime", "2026-03-16", "0:07", "405.50", "47.31"),  # 47.308… half up
        ("conversion", "2026-03-01", "2", "150.00", "300.00"),
        ("conversion", "2026-03-16", "4", "160.00", "640.00"),
        ("waiting_list", "2026-03-01", "1", "100.00", "100.00"),
        ("waiting_list", "2026-03-16", "2", "110.00", "220.00"),
    ]
    for line in row["lines"]:
        minutes = line.get("minutes")
        quantity = Decimal(minutes) / 60 if minutes is not None else Decimal(line["quantity"])
        exact = quantity * Decimal(line["rate"])
        assert abs(exact - Decimal(line["amount"])) <= Decimal("0.005")
    assert [line["to"] for line in row["lines"][:2]] == ["2026-03-15", "2026-03-31"]
    assert "(01.03–15.03)" in row["lines"][0]["title"] and "(16.03–31.03)" in row["lines"][1]["title"]
    assert "пришли 4 из 5 (доведение 80,0 %)" in row["lines"][5]["title"]
    assert row["conversion"] == {"booked": 7, "came": 6, "pct": "85.7"}
    assert [(r["from"], r["to"], r["hourly_rate"]) for r in row["rates"]] == [
        ("2026-03-01", "2026-03-15", "250.00"),
        ("2026-03-16", "2026-03-31", "270.00"),
    ]
    assert row["total"] == statement["total"] == "7500.81"

    rows = list(csv.reader(io.StringIO(payroll_csv(statement).removeprefix("\ufeff")), delimiter=";"))
    money = [Decimal(r[7].replace(",", ".")) for r in rows[1:] if r[1] == "Начисление"]
    assert len(money) == 8
    assert sum(money) == Decimal("7500.81")
    assert rows[-1][-1] == "7500,81"


def test_the_month_basis_compares_each_periods_own_totals(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова", basis="month")
    _rate(rt, portal, op, date(2026, 3, 16), FROM_16TH, basis="month")
    for day in (date(2026, 3, 13), date(2026, 3, 17)):
        staff.schedule(op, day)
    staff.work(op, msk(2026, 3, 13, 9), msk(2026, 3, 13, 15))  # 2 h short before the change
    staff.work(op, msk(2026, 3, 17, 9), msk(2026, 3, 17, 19))  # 2 h over after it: not offset
    (row,) = _statement(rt, portal)["operators"]
    lines = {(line["code"], line["from"]): line["amount"] for line in row["lines"]}
    assert lines[("base", "2026-03-01")] == "1500.00"  # 6 h × 250
    assert lines[("base", "2026-03-16")] == "2160.00"  # 8 h × 270
    assert lines[("overtime", "2026-03-16")] == "811.00"  # 2 h × 405.50


def test_days_before_the_first_rate_pay_nothing(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова")
    other = staff.operator("Новый оператор", crm_user_id="502")
    with rt.db.transaction() as s:
        # The fixture's 01.01 row is replaced by a start on the 16th for the newcomer.
        s.execute(delete(PayrollRate).where(PayrollRate.user_id == other))
    _rate(rt, portal, other, date(2026, 3, 16), SEED_RATES, basis="month")
    for user in (op, other):
        staff.work(user, msk(2026, 3, 10, 9), msk(2026, 3, 10, 17))
        staff.work(user, msk(2026, 3, 20, 9), msk(2026, 3, 20, 17))
    by_name = {o["name"]: o for o in _statement(rt, portal)["operators"]}
    assert by_name["Ольга Иванова"]["minutes"]["worked"] == 16 * 60
    newcomer = by_name["Новый оператор"]
    assert newcomer["minutes"]["worked"] == 8 * 60
    assert [d["date"] for d in newcomer["days"]] == ["2026-03-20"]
    assert {line["code"]: line["amount"] for line in newcomer["lines"]}["overtime"] == "3000.00"
    assert newcomer["rates"] == [{**newcomer["rate"], "from": "2026-03-16", "to": "2026-03-31"}]
