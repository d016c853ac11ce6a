"""Clinic reports (seed 004): primary patients, specialisations, sources, conversion and no-shows over any
local period, as JSON, CSV and PNG from one table. Reads the MIS sync's visits and leads; writes nothing."""

from .builders import REPORTS, Report, build_report
from .percent import ratio, shares
from .periods import GROUPS, MAX_DAYS, Period, ReportInvalid, add_months, make_period
from .render import PNG_SIZE, chart_table, report_csv, report_png
from .visits import PRIMARY_AFTER_MONTHS, Visit, period_visits

__all__ = [
    "GROUPS",
    "MAX_DAYS",
    "PNG_SIZE",
    "PRIMARY_AFTER_MONTHS",
    "REPORTS",
    "Period",
    "Report",
    "ReportInvalid",
    "Visit",
    "add_months",
    "build_report",
    "chart_table",
    "make_period",
    "period_visits",
    "ratio",
    "report_csv",
    "report_png",
    "shares",
]
