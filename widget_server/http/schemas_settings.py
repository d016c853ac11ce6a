"""Schemas of the settings screen's API: the versioned settings document, the CRM catalogue, the inbox."""

from __future__ import annotations

from babel.numbers import list_currencies
from marshmallow import Schema, validate
from marshmallow import fields as f

from ..models import INBOX_OUTCOMES
from ..portal_settings import PIPELINE_FEATURES, STAGE_FEATURES
from .schemas import DealFieldMapSchema, StrictSchema, _timezone

__all__ = [
    "CatalogueSchema",
    "InboxEventSchema",
    "InboxQuerySchema",
    "SettingsDocumentSchema",
    "SettingsPutSchema",
    "SettingsVersionSchema",
]

_DECIMAL = r"^\d{1,16}(\.\d{1,2})?$"
_CURRENCIES = sorted(list_currencies())


class StageRefSchema(StrictSchema):
    pipeline_id = f.String(required=True, validate=validate.Length(min=1, max=64))
    stage_id = f.String(required=True, validate=validate.Length(min=1, max=64))


class LedgerSettingsSchema(StrictSchema):
    overdraft = f.String(
        validate=validate.Regexp(_DECIMAL, error='a decimal amount like "0.00" or "5000.00"')
    )
    purchase_threshold = f.String(
        validate=validate.Regexp(_DECIMAL, error='a decimal amount like "0.00" or "5000.00"')
    )
    purchase_hold_hours = f.Integer(strict=True, validate=validate.Range(min=1, max=24 * 30))
    low_balance_days = f.Integer(strict=True, validate=validate.Range(min=0, max=60))
    charge_discharge_day = f.Boolean()


StagesSchema = StrictSchema.from_dict(
    {name: f.Nested(StageRefSchema, allow_none=True) for name in STAGE_FEATURES}, name="StagesSchema"
)
PipelinesSchema = StrictSchema.from_dict(
    {name: f.String(allow_none=True, validate=validate.Length(max=64)) for name in PIPELINE_FEATURES},
    name="PipelinesSchema",
)


class SettingsChangesSchema(StrictSchema):
    timezone = f.String(validate=_timezone)
    currency = f.String(validate=validate.OneOf(_CURRENCIES, error="not an ISO 4217 currency code"))
    locale = f.String(validate=validate.OneOf(["ru_RU", "en_US"]))
    ledger = f.Nested(LedgerSettingsSchema)
    deal_fields = f.Nested(DealFieldMapSchema)
    stages = f.Nested(StagesSchema)
    pipelines = f.Nested(PipelinesSchema)
    # Role names are checked by the domain, so the refusal names the user's setting ("roles.<id>").
    roles = f.Dict(keys=f.String(validate=validate.Length(min=1, max=64)), values=f.List(f.String()))


class SettingsPutSchema(SettingsChangesSchema):
    version = f.Integer(required=True, strict=True, validate=validate.Range(min=0))


class SettingsDocumentSchema(Schema):
    version = f.Integer()
    settings = f.Dict()


class SettingsVersionSchema(Schema):
    version = f.Integer()
    changed_by = f.String()
    changed_at = f.DateTime()
    changes = f.Dict()


class CatalogueSchema(Schema):
    supported = f.Dict(keys=f.String(), values=f.Boolean())
    deal_fields = f.List(f.Dict())
    pipelines = f.List(f.Dict())
    users = f.List(f.Dict())
    timezones = f.List(f.String())
    currencies = f.List(f.String())
    roles = f.List(f.String())


class InboxEventSchema(Schema):
    id = f.Integer()
    source = f.String()
    event_type = f.String(allow_none=True)
    received_at = f.DateTime()
    processed_at = f.DateTime(allow_none=True)
    outcome = f.String()
    attempts = f.Integer()
    error = f.String(allow_none=True)


class InboxQuerySchema(StrictSchema):
    outcome = f.String(validate=validate.OneOf(INBOX_OUTCOMES))
    limit = f.Integer(load_default=50, validate=validate.Range(min=1, max=500))
