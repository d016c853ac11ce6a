"""Schemas of the invoices and counterparties API. Amounts and quantities are decimal strings; values are
checked by the domain (which names the field), shapes and types here."""

from __future__ import annotations

from marshmallow import Schema, validate
from marshmallow import fields as f

from ..models import COUNTERPARTY_KINDS
from ..models.invoices import INVOICE_PAYMENT_METHODS
from .schemas import StrictSchema

__all__ = [
    "CounterpartyCreateSchema",
    "CounterpartyPatchSchema",
    "CounterpartyPaymentSchema",
    "CounterpartySchema",
    "CreditNoteRequestSchema",
    "DocumentRequestSchema",
    "InvoiceCreateSchema",
    "InvoicePatchSchema",
    "InvoicePaymentSchema",
    "InvoiceSchema",
    "PaymentReversalSchema",
    "PdfQuerySchema",
    "RateQuerySchema",
]


class RequisitesSchema(StrictSchema):
    legal_name = f.String(validate=validate.Length(max=500), allow_none=True)
    address = f.String(validate=validate.Length(max=1000), allow_none=True)
    country = f.String(validate=validate.Length(max=2), allow_none=True)
    inn = f.String(validate=validate.Length(max=20), allow_none=True)
    kpp = f.String(validate=validate.Length(max=20), allow_none=True)
    ogrn = f.String(validate=validate.Length(max=20), allow_none=True)
    bank_name = f.String(validate=validate.Length(max=500), allow_none=True)
    bik = f.String(validate=validate.Length(max=20), allow_none=True)
    account = f.String(validate=validate.Length(max=30), allow_none=True)
    corr_account = f.String(validate=validate.Length(max=30), allow_none=True)
    iban = f.String(validate=validate.Length(max=42), allow_none=True)
    swift = f.String(validate=validate.Length(max=11), allow_none=True)
    bank_address = f.String(validate=validate.Length(max=1000), allow_none=True)


class CounterpartyCreateSchema(StrictSchema):
    kind = f.String(required=True, validate=validate.OneOf(COUNTERPARTY_KINDS))
    name = f.String(required=True, validate=validate.Length(min=1, max=300))
    crm_company_id = f.String(validate=validate.Length(max=64), allow_none=True)
    language = f.String(validate=validate.OneOf(["ru", "en"]))
    currency = f.String(validate=validate.Length(max=8))
    payment_terms_days = f.Integer(strict=True, validate=validate.Range(min=0, max=365))
    requisites = f.Nested(RequisitesSchema)


class CounterpartyPatchSchema(CounterpartyCreateSchema):
    kind = f.String(validate=validate.OneOf(COUNTERPARTY_KINDS))
    name = f.String(validate=validate.Length(min=1, max=300))


class CounterpartySchema(Schema):
    id = f.Integer()
    kind = f.String()
    name = f.String()
    crm_company_id = f.String(allow_none=True)
    language = f.String()
    currency = f.String()
    payment_terms_days = f.Integer()
    requisites_version = f.Integer()
    requisites = f.Dict()
    requisites_history = f.List(f.Dict())


class LineSchema(StrictSchema):
    name = f.String(required=True, validate=validate.Length(min=1, max=500))
    code = f.String(validate=validate.Length(max=64), allow_none=True)
    service_date = f.Date(allow_none=True)
    quantity = f.Raw(required=True, metadata={"type": "string", "example": "1.5"})
    unit_price = f.Raw(required=True, metadata={"type": "string", "example": "1500.00"})
    vat_category = f.String(load_default="exempt", validate=validate.OneOf(["exempt", "taxed"]))


class InvoiceCreateSchema(StrictSchema):
    kind = f.String(required=True, validate=validate.Length(max=32))
    counterparty_id = f.Integer(required=True, strict=True)
    invoice_currency = f.String(validate=validate.Length(max=8))
    price_currency = f.String(validate=validate.Length(max=8))
    issue_date = f.Date(allow_none=True)
    due_date = f.Date(allow_none=True)
    details = f.Dict(keys=f.String(), values=f.Raw())
    lines = f.List(f.Nested(LineSchema), validate=validate.Length(max=500))
    issue = f.Boolean(load_default=False, metadata={"description": "issue at once"})


class InvoicePatchSchema(InvoiceCreateSchema):
    kind = f.String(validate=validate.Length(max=32))
    counterparty_id = f.Integer(strict=True)


class InvoiceSchema(Schema):
    id = f.Integer()
    deal_id = f.String()
    kind = f.String()
    status = f.String()
    number = f.String(allow_none=True)
    counterparty_id = f.Integer()
    issue_date = f.Date(allow_none=True)
    due_date = f.Date(allow_none=True)
    price_currency = f.String()
    invoice_currency = f.String()
    total = f.String()
    vat = f.String()
    credited = f.String()
    paid = f.String()
    outstanding = f.String()
    rate = f.String(allow_none=True)
    rate_date = f.Date(allow_none=True)
    rate_text = f.String(allow_none=True)
    total_in_words = f.String(allow_none=True)
    details = f.Dict()
    lines = f.List(f.Dict())
    credit_notes = f.List(f.Dict())
    payments = f.List(f.Dict())
    documents = f.List(f.Dict())


class CreditNoteRequestSchema(StrictSchema):
    reason = f.String(required=True, validate=validate.Length(min=1, max=2000))
    line_ids = f.List(f.Integer(strict=True), allow_none=True)


class AllocationSchema(StrictSchema):
    invoice_id = f.Integer(required=True, strict=True)
    amount = f.Raw(required=True, metadata={"type": "string", "example": "1500.00"})


class InvoicePaymentSchema(StrictSchema):
    payment_date = f.Date(required=True)
    amount = f.Raw(required=True, metadata={"type": "string", "example": "1500.00"})
    currency = f.String(validate=validate.Length(max=8))
    method = f.String(load_default="transfer", validate=validate.OneOf(INVOICE_PAYMENT_METHODS))
    bank_reference = f.String(validate=validate.Length(max=100), allow_none=True)


class CounterpartyPaymentSchema(InvoicePaymentSchema):
    currency = f.String(required=True, validate=validate.Length(max=8))
    allocations = f.List(f.Nested(AllocationSchema), required=True, validate=validate.Length(min=1, max=500))


class PaymentReversalSchema(StrictSchema):
    reason = f.String(required=True, validate=validate.Length(min=1, max=2000))


class DocumentRequestSchema(StrictSchema):
    pass


class PdfQuerySchema(StrictSchema):
    version = f.Integer(validate=validate.Range(min=1))


class RateQuerySchema(StrictSchema):
    date = f.Date(required=True)
    currency = f.String(required=True, validate=validate.Length(max=8))
    to = f.String(load_default="RUB", validate=validate.Length(max=8))
