"""Schemas of the in-patient API: buildings, admission, prescriptions, rounds, examinations, discharge."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, ValidationError, validate, validates_schema
from marshmallow import fields as f

from ..inpatient.catalogue import REASONS, TASK_ROLES
from ..inpatient.examinations import EXAMINATION_KINDS
from ..models import PAYMENT_METHODS
from .schemas import StrictSchema
from .schemas_ledger import AmountField

__all__ = [
    "AdmissionSchema",
    "ArrivalDocumentSchema",
    "ArrivalSchema",
    "BuildingSchema",
    "DischargeDocumentsSchema",
    "DischargeRequestSchema",
    "DueQuerySchema",
    "DueRoundSchema",
    "ExaminationSchema",
    "InpatientBusinessSchema",
    "InpatientStaySchema",
    "OccupancyQuerySchema",
    "PrescriptionSchema",
    "PrescriptionStopSchema",
    "RoundGivenSchema",
    "RoundNotGivenSchema",
    "RoundRecordSchema",
]

_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_ID = validate.Length(min=1, max=64)


class InpatientWardSchema(StrictSchema):
    id = f.Integer(dump_only=True)
    name = f.String(required=True, validate=validate.Length(min=1, max=64))
    beds = f.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))


class BuildingSchema(StrictSchema):
    id = f.Integer(dump_only=True)
    name = f.String(required=True, validate=validate.Length(min=1, max=200))
    pipeline_id = f.String(required=True, validate=_ID)
    admission_stage_id = f.String(required=True, validate=_ID)
    won_stage_id = f.String(required=True, validate=_ID)
    manager_user_id = f.String(required=True, validate=_ID)
    nurse_user_id = f.String(validate=_ID, allow_none=True)
    profiles = f.List(f.String(validate=validate.Length(min=1, max=64)), load_default=list)
    wards = f.List(f.Nested(InpatientWardSchema), required=True, validate=validate.Length(min=1, max=200))


class OccupancyQuerySchema(StrictSchema):
    date = f.Date(required=True)
    days = f.Integer(load_default=1, validate=validate.Range(min=1, max=92))
    building = f.Integer()


class ArrivalSchema(StrictSchema):
    arrival_date = f.Date(required=True)
    budget = AmountField()
    profile = f.String(validate=validate.Length(min=1, max=64))


class ExpectedArrivalSchema(Schema):
    arrival_date = f.Date()
    budget = f.String(allow_none=True)
    profile = f.String(allow_none=True)
    building_id = f.Integer(allow_none=True)
    building = f.String(allow_none=True)


class ArrivalDocumentSchema(Schema):
    """What the «Стационар» tab shows before admission: the arrival (null until given) and when the CRM's
    ready-to-sign stage asked for it (null if it never did)."""

    deal_id = f.String()
    asked_at = f.DateTime(allow_none=True)
    arrival = f.Nested(ExpectedArrivalSchema, allow_none=True)


class InpatientBusinessSchema(Schema):
    """Whether the card of a deal without a stay account opens on «Стационар», and why (asked, arrival,
    stay, building_pipeline, ready_stage; null: the ledger's screen)."""

    deal_id = f.String()
    inpatient = f.Boolean()
    reason = f.String(allow_none=True)


class InpatientRepresentativeSchema(StrictSchema):
    name = f.String(required=True, validate=validate.Length(min=1, max=200))
    relation = f.String(validate=validate.Length(max=64), allow_none=True)
    phone = f.String(validate=validate.Length(max=32), allow_none=True)
    email = f.Email(validate=validate.Length(max=255), allow_none=True)
    consent_to_inform = f.Boolean(load_default=False)


class AdmissionSchema(StrictSchema):
    building = f.Integer(strict=True)
    profile = f.String(validate=validate.Length(min=1, max=64))
    ward = f.Integer(required=True, strict=True)
    bed = f.Integer(required=True, strict=True)
    tariff = f.Integer(strict=True)
    admission_date = f.Date()
    representative = f.Nested(InpatientRepresentativeSchema, required=True)

    @validates_schema
    def _where(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if "building" not in data and "profile" not in data:
            raise ValidationError("name the building or the diagnosis profile", "building")


class PrescriptionSchema(StrictSchema):
    id = f.Integer(dump_only=True)
    drug = f.String(required=True, validate=validate.Length(min=1, max=200))
    dose = f.String(required=True, validate=validate.Length(min=1, max=100))
    times = f.List(
        f.String(validate=validate.Regexp(_TIME, error="not a time of day HH:MM")),
        required=True,
        validate=validate.Length(min=1, max=12),
    )
    start_date = f.Date(required=True)
    end_date = f.Date(allow_none=True)
    doctor_user_id = f.String(required=True, validate=_ID)
    doctor_name = f.String(dump_only=True)
    stopped_at = f.DateTime(dump_only=True)
    stopped_by = f.String(dump_only=True)
    stop_reason = f.String(dump_only=True)
    created_by = f.String(dump_only=True)


class PrescriptionStopSchema(StrictSchema):
    reason = f.String(validate=validate.Length(max=2000))


class DueQuerySchema(StrictSchema):
    building = f.Integer()
    deal = f.String(validate=validate.Length(min=1, max=64))
    at = f.AwareDateTime()


class DueRoundSchema(Schema):
    round_id = f.String()
    prescription_id = f.Integer()
    deal_id = f.String()
    building_id = f.Integer()
    ward = f.String()
    bed = f.Integer()
    drug = f.String()
    dose = f.String()
    due_at = f.DateTime()
    overdue = f.Boolean()


class RoundGivenSchema(StrictSchema):
    note = f.String(validate=validate.Length(max=2000))
    corrects = f.Integer(strict=True)


class RoundNotGivenSchema(RoundGivenSchema):
    reason = f.String(required=True, validate=validate.OneOf(list(REASONS)))


class RoundRecordSchema(Schema):
    id = f.Integer()
    round_id = f.String()
    prescription_id = f.Integer()
    due_at = f.DateTime()
    outcome = f.String()
    reason = f.String(allow_none=True)
    note = f.String(allow_none=True)
    next_step = f.String(allow_none=True)
    corrects_id = f.Integer(allow_none=True)
    actor = f.String()
    recorded_at = f.DateTime()


class ExaminationStepSchema(StrictSchema):
    text = f.String(required=True, validate=validate.Length(min=1, max=2000))
    role = f.String(required=True, validate=validate.OneOf(TASK_ROLES))
    due_date = f.Date()


class ExaminationSchema(StrictSchema):
    id = f.Integer(dump_only=True)
    kind = f.String(load_default="first", validate=validate.OneOf(list(EXAMINATION_KINDS)))
    doctor_user_id = f.String(required=True, validate=_ID)
    doctor_name = f.String(dump_only=True)
    examined_on = f.Date(required=True)
    results = f.String(load_default="", validate=validate.Length(max=20000))
    links = f.List(
        f.Url(schemes={"http", "https"}, validate=validate.Length(max=2000)),
        load_default=list,
        validate=validate.Length(max=50),
    )
    next_steps = f.List(f.Nested(ExaminationStepSchema), load_default=list, validate=validate.Length(max=20))


class DischargeRequestSchema(StrictSchema):
    discharge_date = f.Date(required=True)


class DischargeDocumentsSchema(StrictSchema):
    refund_method = f.String(validate=validate.OneOf(PAYMENT_METHODS))


class InpatientStaySchema(Schema):
    """General information: what everyone with a role may read (no money, no medical records)."""

    deal_id = f.String()
    status = f.String()
    building_id = f.Integer()
    building = f.String()
    ward_id = f.Integer()
    ward = f.String()
    bed = f.Integer()
    profile = f.String(allow_none=True)
    admission_date = f.Date()
    discharge_date = f.Date(allow_none=True)
    representative = f.Dict()
