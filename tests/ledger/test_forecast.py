"""The stay calculator as pure arithmetic."""

from __future__ import annotations

from datetime import date

import pytest

from widget_server.forecast import forecast_stay

D = date.fromisoformat


@pytest.mark.parametrize(
    ("available", "schedule", "first", "paid_through", "covered", "debt"),
    [
        (35_000_00, [(D("2026-12-01"), 3_500_00)], D("2026-12-01"), D("2026-12-10"), 10, 0),
        (
            34_999_99,
            [(D("2026-12-01"), 3_500_00)],
            D("2026-12-01"),
            D("2026-12-09"),
            9,
            0,
        ),  # a partial day is not paid
        (0, [(D("2026-12-01"), 3_500_00)], D("2026-12-04"), D("2026-12-03"), 0, 0),
        (-3_500_00, [(D("2026-12-01"), 3_500_00)], D("2026-12-04"), D("2026-12-02"), 0, 1),
        (-3_500_01, [(D("2026-12-01"), 3_500_00)], D("2026-12-04"), D("2026-12-01"), 0, 2),
        # 3 500 until 5 Dec, then 5 000: 24 500 = 3 500 (4 Dec) + 4 × 5 000 + 1 000 left over.
        (
            24_500_00,
            [(D("2026-12-01"), 3_500_00), (D("2026-12-05"), 5_000_00)],
            D("2026-12-04"),
            D("2026-12-08"),
            5,
            0,
        ),
        # Free days in between are covered whatever the balance.
        (
            1_000_00,
            [(D("2026-12-01"), 0), (D("2026-12-10"), 1_000_00)],
            D("2026-12-01"),
            D("2026-12-10"),
            10,
            0,
        ),
        # Across a year boundary.
        (7_000_00, [(D("2026-12-01"), 1_000_00)], D("2026-12-29"), D("2027-01-04"), 7, 0),
    ],
)
def test_paid_through(available, schedule, first, paid_through, covered, debt):
    result = forecast_stay(available, schedule, first)
    assert (result.paid_through, result.days_covered, result.days_of_debt) == (paid_through, covered, debt)
    assert result.unlimited is False


def test_zero_rate_from_now_on_is_unlimited():
    result = forecast_stay(10, [(D("2026-12-01"), 3_500_00), (D("2026-12-03"), 0)], D("2026-12-03"))
    assert (
        result.unlimited is True and result.paid_through is None and result.days_left(D("2026-12-03")) is None
    )


def test_money_that_runs_out_before_a_free_period_is_not_unlimited():
    result = forecast_stay(10, [(D("2026-12-01"), 3_500_00), (D("2026-12-03"), 0)], D("2026-12-01"))
    assert result.unlimited is False and result.paid_through == D("2026-11-30")


def test_a_later_zero_rate_is_unlimited_once_reached():
    result = forecast_stay(7_000_00, [(D("2026-12-01"), 3_500_00), (D("2026-12-03"), 0)], D("2026-12-01"))
    assert result.unlimited is True


def test_no_tariff_at_all_is_unlimited():
    assert forecast_stay(0, [], D("2026-12-01")).unlimited is True


def test_days_left_counts_from_today():
    result = forecast_stay(35_000_00, [(D("2026-12-01"), 3_500_00)], D("2026-12-01"))
    assert result.days_left(D("2026-12-01")) == 9
