"""The invoice kinds, as a registry: a fifth kind is one `register_kind` call and a template, no migration.

The seed names four settlements: patient ↔ clinic, clinic ↔ insurer and/or assistance company, clinic ↔
partner clinics, and payments out to counterparties for services to our patients. Each kind says which
counterparties it may address, which way money moves, how VAT is counted, which header fields issuing
needs and which requisites the counterparty must have by then.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KINDS", "InvoiceKind", "get_kind", "register_kind"]


@dataclass(frozen=True)
class InvoiceKind:
    code: str
    series: str
    """Number prefix: numbers run per (portal, series, year)."""
    title_ru: str
    title_en: str
    direction: str
    """"in": the counterparty pays us (receivable); "out": we pay it (payable)."""
    counterparty_kinds: tuple[str, ...]
    vat_mode: str
    """"included": the price contains VAT (× r/(100+r)); "on_top": VAT is added (× r/100)."""
    required_details: tuple[str, ...] = ()
    required_requisites_ru: tuple[str, ...] = ()
    required_requisites_foreign: tuple[str, ...] = ()
    template: str = ""
    """Jinja template in invoices/templates; empty: `invoice_{code}.html`, else the plain `base.html`."""


KINDS: dict[str, InvoiceKind] = {}


def register_kind(kind: InvoiceKind) -> InvoiceKind:
    if kind.direction not in ("in", "out"):
        raise ValueError(f"direction must be 'in' or 'out', got {kind.direction!r}")
    if kind.vat_mode not in ("included", "on_top"):
        raise ValueError(f"vat_mode must be 'included' or 'on_top', got {kind.vat_mode!r}")
    if any(k.series == kind.series and k.code != kind.code for k in KINDS.values()):
        raise ValueError(f"series {kind.series!r} is already used")
    KINDS[kind.code] = kind
    return kind


def get_kind(code: str) -> InvoiceKind | None:
    return KINDS.get(code)


CREDIT_NOTE_SERIES = "КН"

register_kind(
    InvoiceKind(
        code="patient",
        series="СЧ",
        title_ru="Счёт на оплату",
        title_en="Invoice",
        direction="in",
        counterparty_kinds=("payer", "corporate"),
        vat_mode="included",
    )
)
register_kind(
    InvoiceKind(
        code="insurer",
        series="СК",
        title_ru="Счёт страховой компании",
        title_en="Invoice to the insurer",
        direction="in",
        counterparty_kinds=("insurer",),
        vat_mode="included",
        required_details=(
            "policy_no",
            "gop_no",
            "gop_date",
            "insured_name",
            "case_no",
            "period_from",
            "period_to",
        ),
        required_requisites_ru=("inn", "kpp", "address"),
        required_requisites_foreign=("country", "address"),
    )
)
register_kind(
    InvoiceKind(
        code="assistance",
        series="АК",
        title_ru="Счёт ассистирующей компании",
        title_en="Invoice to the assistance company",
        direction="in",
        counterparty_kinds=("assistance",),
        vat_mode="on_top",
        required_details=("case_no", "insurer_name", "insured_name"),
        required_requisites_ru=("inn", "kpp", "address"),
        required_requisites_foreign=("country", "address"),
    )
)
register_kind(
    InvoiceKind(
        code="partner_clinic",
        series="ПК",
        title_ru="Заявка на оплату счёта клиники-партнёра",
        title_en="Payment request: partner clinic invoice",
        direction="out",
        counterparty_kinds=("partner_clinic",),
        vat_mode="included",
        required_details=("partner_invoice_no", "partner_invoice_date", "patient_name"),
        required_requisites_ru=("inn", "kpp", "bik", "account"),
        required_requisites_foreign=("country", "swift", "iban"),
    )
)
