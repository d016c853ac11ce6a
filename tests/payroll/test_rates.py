from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select

from widget_server.models import PayrollRate, Portal
from widget_server.payroll import PayrollInvalid, RateInput, month_bounds, rates_in_effect, save_rates

from .staff_data import SEED_RATES


@pytest.mark.parametrize(
    ("value", "reason"),
    [(250, "must be a decimal string"), ("-1.00", "must not be negative"), ("2.505", "at most 2 decimal")],
)
def test_a_bad_rate_names_its_field_and_writes_nothing(rt, portal, staff, value, reason) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова")
    with rt.db.transaction() as s:
        before = s.scalar(select(func.count()).select_from(PayrollRate))
    good = RateInput(op, date(2026, 5, 1), SEED_RATES)
    bad = RateInput(op, date(2026, 6, 1), {**SEED_RATES, "overtime_rate": value})
    with pytest.raises(PayrollInvalid) as caught, rt.db.transaction() as s:
        save_rates(s, s.get(Portal, portal.id), [good, bad], actor="t")
    assert caught.value.field == "rates[1].overtime_rate"
    assert reason in caught.value.reason
    with rt.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(PayrollRate)) == before


def test_rates_are_effective_dated(rt, portal, staff) -> None:  # type: ignore[no-untyped-def]
    op = staff.operator("Ольга Иванова")  # 250.00 from 01.01.2026
    with rt.db.transaction() as s:
        april = RateInput(op, date(2026, 4, 1), {**SEED_RATES, "hourly_rate": "300.00"})
        save_rates(s, s.get(Portal, portal.id), [april], actor="t")
        assert str(rates_in_effect(s, portal.id, date(2026, 3, 31))[op].hourly_rate) == "250.00"
        assert str(rates_in_effect(s, portal.id, date(2026, 4, 30))[op].hourly_rate) == "300.00"


@pytest.mark.parametrize("text", ["2026-3", "2026-13", "03-2026", "", "2026-03-01"])
def test_a_month_must_be_yyyy_mm(text: str) -> None:
    with pytest.raises(PayrollInvalid) as caught:
        month_bounds(text)
    assert caught.value.field == "month"
    assert month_bounds("2024-02") == (date(2024, 2, 1), date(2024, 2, 29))
