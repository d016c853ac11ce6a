"""Schemas of the stay-ledger API. Amounts are decimal strings ("1500.00"); a JSON number is refused."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, validate, validates_schema
from marshmallow import fields as f

from ..ledger.purchases import CONSENT_CHANNELS
from ..models import ENTRY_KINDS, PAYMENT_METHODS
from .schemas import StrictSchema

__all__ = [
    "AdmitSchema",
    "AmountField",
    "ApproveSchema",
    "ArticleSchema",
    "ChargeSchema",
    "DepositSchema",
    "DischargeSchema",
    "EntrySchema",
    "ForecastQuerySchema",
    "PurchaseRequestSchema",
    "PurchaseSchema",
    "RejectSchema",
    "ReversalSchema",
    "StatementQuerySchema",
    "StaySummarySchema",
    "TariffChangeSchema",
    "TariffSchema",
]

_DECIMAL = re.compile(r"^\d{1,16}(\.\d{1,2})?$")


class AmountField(f.Field):
    """A positive decimal string with at most two decimals; converted to minor units by the view with
    the portal's currency."""

    default_error_messages = {  # noqa: RUF012 - marshmallow's own convention
        "type": 'must be a decimal string like "1500.00", not a JSON number',
        "format": 'not a decimal amount with at most 2 decimals, e.g. "1500.00"',
        "positive": "must be greater than zero",
        "large": "is unrealistically large",
    }

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if not isinstance(value, str):
            raise self.make_error("type")
        text = value.strip()
        if text.startswith("-"):
            raise self.make_error("positive")
        if not _DECIMAL.match(text):
            raise self.make_error("format")
        if Decimal(text) == 0:
            raise self.make_error("positive")
        return text

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return value

    def _jsonschema_type_mapping(self) -> dict[str, Any]:
        return {"type": "string", "pattern": _DECIMAL.pattern, "example": "1500.00"}


class RepresentativeSchema(StrictSchema):
    name = f.String(required=True, validate=validate.Length(min=1, max=200))
    phone = f.String(validate=validate.Length(max=32))


class OpeningDepositSchema(StrictSchema):
    amount = AmountField(required=True)
    method = f.String(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    payer = f.String(validate=validate.Length(max=200))


class AdmitSchema(StrictSchema):
    admission_date = f.Date(required=True)
    tariff_id = f.Integer(required=True, strict=True)
    representative = f.Nested(RepresentativeSchema)
    deposit = f.Nested(OpeningDepositSchema)


class DepositSchema(StrictSchema):
    amount = AmountField(required=True)
    method = f.String(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    payer = f.String(validate=validate.Length(max=200))


class ChargeSchema(StrictSchema):
    amount = AmountField(required=True)
    article_id = f.Integer(required=True, strict=True)
    reason = f.String(validate=validate.Length(max=2000))
    override = f.Boolean(load_default=False)


class PurchaseSchema(StrictSchema):
    amount = AmountField(required=True)
    article_id = f.Integer(strict=True, allow_none=True)
    description = f.String(required=True, validate=validate.Length(min=1, max=2000))
    override = f.Boolean(load_default=False)


class ConsentSchema(StrictSchema):
    given_by = f.String(required=True, validate=validate.Length(min=1, max=200))
    channel = f.String(required=True, validate=validate.OneOf(CONSENT_CHANNELS))
    given_at = f.AwareDateTime(required=True)


class ApproveSchema(StrictSchema):
    consent = f.Nested(ConsentSchema, required=True)


class RejectSchema(StrictSchema):
    note = f.String(validate=validate.Length(max=2000))


class ReversalSchema(StrictSchema):
    reason = f.String(required=True, validate=validate.Length(min=1, max=2000))


class TariffChangeSchema(StrictSchema):
    tariff_id = f.Integer(required=True, strict=True)
    effective_from = f.Date(required=True)


class DischargeSchema(StrictSchema):
    discharge_date = f.Date(required=True)
    refund_method = f.String(validate=validate.OneOf(PAYMENT_METHODS))


class ForecastQuerySchema(StrictSchema):
    purchase = AmountField()
    tariff_id = f.Integer()
    tariff_from = f.Date()


class StatementQuerySchema(StrictSchema):
    kind = f.String()

    @validates_schema
    def _kinds(self, data: dict[str, Any], **_kwargs: Any) -> None:
        for kind in (data.get("kind") or "").split(","):
            if kind and kind not in ENTRY_KINDS:
                raise ValidationError(f"unknown kind {kind!r}; use {', '.join(ENTRY_KINDS)}", "kind")


class TariffSchema(StrictSchema):
    id = f.Integer(dump_only=True)
    name = f.String(required=True, validate=validate.Length(min=1, max=200))
    daily_rate = AmountField(required=True)
    active = f.Boolean(load_default=True)


class ArticleSchema(StrictSchema):
    id = f.Integer(dump_only=True)
    name = f.String(required=True, validate=validate.Length(min=1, max=200))
    code = f.String(validate=validate.Length(max=32), allow_none=True)
    active = f.Boolean(load_default=True)


class EntrySchema(Schema):
    id = f.Integer()
    seq = f.Integer()
    kind = f.String()
    amount = f.String()
    direction = f.String()
    entry_date = f.Date()
    service_date = f.Date(allow_none=True)
    method = f.String(allow_none=True)
    payer = f.String(allow_none=True)
    article_id = f.Integer(allow_none=True)
    reason = f.String(allow_none=True)
    reverses_entry_id = f.Integer(allow_none=True)
    actor = f.String()
    source = f.String()
    created_at = f.DateTime()


class PurchaseRequestSchema(Schema):
    id = f.Integer()
    amount = f.String()
    description = f.String()
    article_id = f.Integer(allow_none=True)
    status = f.String()
    requested_by = f.String()
    requested_at = f.DateTime()
    expires_at = f.DateTime()
    consent_by = f.String(allow_none=True)
    consent_channel = f.String(allow_none=True)
    consent_at = f.DateTime(allow_none=True)
    entry_id = f.Integer(allow_none=True)


class ForecastSchema(Schema):
    unlimited = f.Boolean()
    days_covered = f.Integer(allow_none=True)
    paid_through = f.Date(allow_none=True)
    days_left = f.Integer(allow_none=True)
    days_of_debt = f.Integer()


class StaySummarySchema(Schema):
    deal_id = f.String()
    status = f.String()
    admission_date = f.Date()
    discharge_date = f.Date(allow_none=True)
    today = f.Date()
    representative = f.Dict(allow_none=True)
    forecast = f.Nested(ForecastSchema)
    low_balance = f.Boolean()
    money_visible = f.Boolean()
    currency = f.String()
    balance = f.String(allow_none=True)
    balance_display = f.String(allow_none=True)
    holds = f.String(allow_none=True)
    available = f.String(allow_none=True)
    daily_rate = f.String(allow_none=True)
    pending_purchases = f.List(f.Nested(PurchaseRequestSchema), allow_none=True)
    recent_entries = f.List(f.Nested(EntrySchema), allow_none=True)
