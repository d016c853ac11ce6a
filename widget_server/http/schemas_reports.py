"""Schemas of the reports, payroll and caller-lookup API. Types and shapes here; periods, months, amounts
and users are checked by the domain (reports.periods, payroll.rates, callers), which names the field."""

from __future__ import annotations

from marshmallow import fields as f
from marshmallow import validate

from ..models import OVERTIME_BASES
from ..models.payroll import PAYROLL_SCHEDULE_KINDS
from ..reports import GROUPS
from .schemas import StrictSchema

__all__ = [
    "CallerQuerySchema",
    "ClinicReportQuerySchema",
    "PayrollRatesSchema",
    "PayrollScheduleQuerySchema",
    "PayrollSchedulesSchema",
]


class ClinicReportQuerySchema(StrictSchema):
    from_ = f.Date(data_key="from", attribute="from", required=True)
    to = f.Date(required=True)
    group = f.String(load_default="month", validate=validate.OneOf(GROUPS))


class PayrollRateSchema(StrictSchema):
    user_id = f.Integer(required=True, strict=True)
    effective_from = f.Date(required=True)
    # Raw: the domain refuses a JSON number by name ("must be a decimal string"), as the money API does.
    hourly_rate = f.Raw(required=True)
    overtime_rate = f.Raw(required=True)
    primary_bonus = f.Raw(required=True)
    waiting_list_bonus = f.Raw(required=True)
    overtime_basis = f.String(load_default="month", validate=validate.OneOf(OVERTIME_BASES))
    mis_names = f.List(f.String(validate=validate.Length(min=1, max=200)), load_default=list)


class PayrollRatesSchema(StrictSchema):
    rates = f.List(f.Nested(PayrollRateSchema), load_default=list)
    head_user_id = f.Integer(strict=True, allow_none=True)


class PayrollOverrideSchema(StrictSchema):
    # Raw: payroll.schedule checks dates and HH:MM times and names the field with the reason.
    date = f.Raw(required=True)
    start = f.Raw(allow_none=True)
    end = f.Raw(allow_none=True)
    reason = f.String(validate=validate.Length(max=200))


class PayrollScheduleSchema(StrictSchema):
    user_id = f.Integer(required=True, strict=True)
    effective_from = f.Date(required=True)
    kind = f.String(required=True, validate=validate.OneOf(PAYROLL_SCHEDULE_KINDS))
    days = f.Raw()
    start = f.Raw()
    end = f.Raw()
    on_days = f.Raw()
    off_days = f.Raw()
    anchor = f.Raw()
    overrides = f.List(f.Nested(PayrollOverrideSchema), load_default=list)


class PayrollScheduleQuerySchema(StrictSchema):
    # Checked by payroll.month_bounds, which names `month`.
    month = f.String()


class PayrollSchedulesSchema(StrictSchema):
    schedules = f.List(f.Nested(PayrollScheduleSchema), required=True)


class CallerQuerySchema(StrictSchema):
    phone = f.String(required=True)
