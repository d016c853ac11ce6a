"""Schemas of the lead-distribution API. Types and ranges here; what needs the database (known, active,
unrepeated users; pipelines and stages; percentages summing to 100; overlapping shifts) in the domain."""

from __future__ import annotations

from marshmallow import fields as f
from marshmallow import validate

from ..distribution.strategies import STRATEGIES
from ..models import OPERATOR_STATES, SHIFT_KINDS
from .schemas import StrictSchema, _timezone

__all__ = [
    "AssignSchema",
    "DecisionQuerySchema",
    "ReportQuerySchema",
    "RuleSchema",
    "ShiftSchema",
    "SimulateSchema",
    "StatusSchema",
]

_HHMM = validate.Regexp(r"^([01]\d|2[0-3]):[0-5]\d$", error="must be HH:MM (00:00-23:59)")


class MemberSchema(StrictSchema):
    user_id = f.Integer(required=True, strict=True)
    weight = f.Integer(strict=True, load_default=1, validate=validate.Range(min=0, error="must be ≥ 0"))
    max_open = f.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, error="must be > 0"))
    max_per_day = f.Integer(strict=True, allow_none=True, validate=validate.Range(min=1, error="must be > 0"))


class MatchSchema(StrictSchema):
    pipelines = f.List(f.String(validate=validate.Length(min=1, max=64)))
    stages = f.List(f.String(validate=validate.Length(min=1, max=64)))
    sources = f.List(f.String(validate=validate.Length(min=1, max=120)))
    tags = f.List(f.String(validate=validate.Length(min=1, max=120)))


class WindowSchema(StrictSchema):
    days = f.List(
        f.Integer(strict=True, validate=validate.Range(min=1, max=7)), validate=validate.Length(min=1)
    )
    from_ = f.String(data_key="from", attribute="from", required=True, validate=_HHMM)
    to = f.String(required=True, validate=_HHMM)


class MirrorSchema(StrictSchema):
    responsible = f.Boolean()
    task = f.Boolean()
    note = f.Boolean()
    contact = f.Boolean()
    company = f.Boolean()
    open_tasks = f.Boolean()


class RuleSchema(StrictSchema):
    name = f.String(required=True, validate=validate.Length(min=1, max=200))
    pool = f.String(validate=validate.Length(min=1, max=120))
    priority = f.Integer(strict=True, load_default=100)
    active = f.Boolean(load_default=True)
    strategy = f.String(load_default="round_robin", validate=validate.OneOf(STRATEGIES))
    weights_mode = f.String(load_default="coefficients", validate=validate.OneOf(["coefficients", "percent"]))
    members = f.List(
        f.Nested(MemberSchema), required=True, validate=validate.Length(min=1, error="no members")
    )
    match = f.Nested(MatchSchema, load_default=dict)
    window = f.Nested(WindowSchema, allow_none=True)
    timezone = f.String(validate=_timezone)
    outside_hours = f.String(load_default="queue", validate=validate.OneOf(["queue", "user"]))
    outside_user_id = f.Integer(strict=True, allow_none=True)
    take_within_min = f.Integer(strict=True, load_default=15, validate=validate.Range(min=1, max=24 * 60))
    task_text = f.String(validate=validate.Length(min=1, max=500))
    mirror = f.Nested(MirrorSchema)
    supervisor_user_ids = f.List(f.Integer(strict=True))


class ActivateSchema(StrictSchema):
    active = f.Boolean(load_default=True)


class ShiftSchema(StrictSchema):
    user_id = f.Integer(required=True, strict=True)
    kind = f.String(required=True, validate=validate.OneOf(SHIFT_KINDS))
    days = f.List(f.Integer(strict=True, validate=validate.Range(min=1, max=7)))
    start = f.String(validate=_HHMM)
    end = f.String(validate=_HHMM)
    on_days = f.Integer(strict=True, validate=validate.Range(min=1, max=31))
    off_days = f.Integer(strict=True, validate=validate.Range(min=0, max=31))
    anchor = f.Date()
    starts_at = f.AwareDateTime()
    ends_at = f.AwareDateTime()
    timezone = f.String(validate=_timezone)
    reason = f.String(validate=validate.Length(max=200))


class StatusSchema(StrictSchema):
    state = f.String(required=True, validate=validate.OneOf(OPERATOR_STATES))
    minutes = f.Integer(strict=True, validate=validate.Range(min=1, max=24 * 60))
    reason = f.String(validate=validate.Length(max=200))


class AssignSchema(StrictSchema):
    rule_id = f.Integer(strict=True)
    force = f.Boolean(load_default=False)
    pipeline_id = f.String(validate=validate.Length(max=64))
    stage_id = f.String(validate=validate.Length(max=64))
    source = f.String(validate=validate.Length(max=120))
    tags = f.List(f.String(validate=validate.Length(max=120)))
    sticky_crm_user_ids = f.List(
        f.String(validate=validate.Length(max=64)),
        metadata={
            "description": "CRM user ids to prefer, in order; omitted: read from the CRM (the contact's,"
            " its company's, its other open deals' responsible); [] means none"
        },
    )


class DecisionQuerySchema(StrictSchema):
    deal_id = f.String(validate=validate.Length(max=64))
    user_id = f.Integer()
    from_ = f.AwareDateTime(data_key="from", attribute="from")
    to = f.AwareDateTime()


class ReportQuerySchema(StrictSchema):
    pool = f.String(required=True)
    from_ = f.AwareDateTime(data_key="from", attribute="from", required=True)
    to = f.AwareDateTime(required=True)
    format = f.String(load_default="json", validate=validate.OneOf(["json", "csv"]))


class SimulateSchema(StrictSchema):
    rules = f.List(f.Nested(RuleSchema), required=True, validate=validate.Length(min=1))
    days = f.Integer(strict=True, load_default=30, validate=validate.Range(min=1, max=90))
