"""Operator payroll (seed 004): the rate directory, hours from shift events and the monthly calendar, and
the month's statement with a line per component and a row per counted item."""

from .hours import DayMinutes, LateStart, Shift, late_starts, minutes_by_day, shifts_from_events
from .rates import (
    AMOUNT_FIELDS,
    PayrollInvalid,
    RateInput,
    RatePeriod,
    head_user_id,
    rate_periods,
    rates_in_effect,
    save_rates,
)
from .statement import month_bounds, month_schedule, payroll_csv, payroll_statement

__all__ = [
    "AMOUNT_FIELDS",
    "DayMinutes",
    "LateStart",
    "PayrollInvalid",
    "RateInput",
    "RatePeriod",
    "Shift",
    "head_user_id",
    "late_starts",
    "minutes_by_day",
    "month_bounds",
    "month_schedule",
    "payroll_csv",
    "payroll_statement",
    "rate_periods",
    "rates_in_effect",
    "save_rates",
    "shifts_from_events",
]
