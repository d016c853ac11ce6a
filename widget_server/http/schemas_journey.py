"""Schemas of the patient journey API. Shapes here; what needs the portal's CRM (stages, fields, users,
placeholders, loops) is checked by the domain's rule validator, naming the field."""

from __future__ import annotations

from typing import Any

from marshmallow import ValidationError, validate, validates_schema
from marshmallow import fields as f

from ..models import ANSWER_KINDS, FIRING_STATES
from .schemas import StrictSchema

__all__ = [
    "JourneyAnswerSchema",
    "JourneyFiringQuerySchema",
    "JourneyPreviewQuerySchema",
    "JourneyRulePatchSchema",
    "JourneyRuleSchema",
]


class JourneyRuleSchema(StrictSchema):
    name = f.String(required=True, validate=validate.Length(min=1, max=200))
    key = f.String(validate=validate.Length(min=1, max=64))
    enabled = f.Boolean(load_default=False)
    trigger = f.Dict(required=True)
    conditions = f.Dict(load_default=dict)
    actions = f.List(f.Dict(), required=True, validate=validate.Length(min=1, max=20))
    target = f.String(validate=validate.OneOf(["deal", "created"]))
    window_hours = f.Integer(strict=True, validate=validate.Range(min=1, max=24 * 366))


class JourneyRulePatchSchema(StrictSchema):
    name = f.String(validate=validate.Length(min=1, max=200))
    enabled = f.Boolean()
    trigger = f.Dict()
    conditions = f.Dict()
    actions = f.List(f.Dict(), validate=validate.Length(min=1, max=20))
    target = f.String(validate=validate.OneOf(["deal", "created"]))
    window_hours = f.Integer(strict=True, validate=validate.Range(min=1, max=24 * 366))


class JourneyPreviewQuerySchema(StrictSchema):
    days = f.Integer(load_default=7, validate=validate.Range(min=1, max=31))


class JourneyFiringQuerySchema(StrictSchema):
    deal_id = f.String(validate=validate.Length(min=1, max=64))
    rule_id = f.Integer()
    outcome = f.String(validate=validate.OneOf([*FIRING_STATES, "failed"]))
    limit = f.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


class JourneyAnswerSchema(StrictSchema):
    deal_id = f.String(required=True, validate=validate.Length(min=1, max=64))
    kind = f.String(required=True, validate=validate.OneOf(ANSWER_KINDS))
    # A score is a number or its text (a bot passes what the patient typed); checked per kind below.
    value = f.Raw(required=True)

    @validates_schema
    def _value(self, data: dict[str, Any], **_: Any) -> None:
        value, kind = data.get("value"), data.get("kind")
        if kind == "nps":
            text = str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else ""
            if not text.isdigit() or not 0 <= int(text) <= 10:
                raise ValidationError("a score is a whole number from 0 to 10", "value")
        elif not isinstance(value, str) or not value.strip():
            raise ValidationError("the patient's answer as text", "value")
