"""Request and response schemas of the widget API (they also generate the OpenAPI document)."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marshmallow import RAISE, Schema, ValidationError, validate
from marshmallow import fields as f

from ..models import OUTBOX_STATES, PORTAL_STATUSES, ROLES

__all__ = [
    "DealSchema",
    "ErrorSchema",
    "NoteRequestSchema",
    "OutboxJobSchema",
    "OutboxQuerySchema",
    "PortalSchema",
    "PortalSettingsSchema",
    "PortalUserSchema",
    "RolesRequestSchema",
]


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


class ErrorBodySchema(Schema):
    code = f.String(required=True)
    message = f.String(required=True)
    fields = f.Dict(keys=f.String(), values=f.List(f.String()))


class ErrorSchema(Schema):
    error = f.Nested(ErrorBodySchema, required=True)


def _timezone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"unknown IANA timezone {value!r}") from None


class DealFieldMapSchema(StrictSchema):
    """CRM custom-field ids our mirror writes to (empty = not mirrored)."""

    balance = f.String(validate=validate.Length(max=64), allow_none=True)
    daily_rate = f.String(validate=validate.Length(max=64), allow_none=True)
    paid_through = f.String(validate=validate.Length(max=64), allow_none=True)


class PortalSettingsSchema(StrictSchema):
    timezone = f.String(validate=_timezone)
    locale = f.String(validate=validate.OneOf(["ru_RU", "en_US"]))
    deal_fields = f.Nested(DealFieldMapSchema)


class PortalSchema(Schema):
    id = f.Integer()
    slug = f.String()
    kind = f.String()
    name = f.String()
    domain = f.String(allow_none=True)
    status = f.String(validate=validate.OneOf(PORTAL_STATUSES))
    timezone = f.String()
    currency = f.String()
    locale = f.String()
    settings = f.Dict()
    installed_at = f.DateTime()
    your_roles = f.List(f.String())


class PortalUserSchema(Schema):
    crm_user_id = f.String()
    name = f.String()
    email = f.String(allow_none=True)
    roles = f.List(f.String())
    active = f.Boolean()


class RolesRequestSchema(StrictSchema):
    roles = f.List(f.String(validate=validate.OneOf(ROLES)), required=True)


class StageSchema(Schema):
    pipeline_id = f.String()
    stage_id = f.String()


class DealSchema(Schema):
    id = f.String()
    name = f.String()
    stage = f.Nested(StageSchema)
    responsible_user_id = f.String(allow_none=True)
    fields = f.Dict()
    contact_ids = f.List(f.String())
    is_closed = f.Boolean()


class NoteRequestSchema(StrictSchema):
    text = f.String(required=True, validate=validate.Length(min=1, max=20000))


class OutboxJobSchema(Schema):
    id = f.Integer()
    operation = f.String()
    deal_id = f.String(allow_none=True)
    state = f.String(validate=validate.OneOf(OUTBOX_STATES))
    attempts = f.Integer()
    next_attempt_at = f.DateTime()
    last_error = f.String(allow_none=True)
    created_at = f.DateTime()
    done_at = f.DateTime(allow_none=True)


class OutboxQuerySchema(StrictSchema):
    state = f.String(validate=validate.OneOf(OUTBOX_STATES))
    limit = f.Integer(load_default=50, validate=validate.Range(min=1, max=500))
