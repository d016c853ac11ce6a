"""Invoice refusals. Each names the field and the reason, and carries the HTTP status it maps to."""

from __future__ import annotations

from ..errors import DomainError

__all__ = ["InvoiceConflict", "InvoiceError", "InvoiceNotFound", "RateUnavailable"]


class InvoiceError(DomainError):
    """A request the invoice domain refuses; nothing was written."""

    status = 422
    code = "invoice_rejected"


class InvoiceConflict(InvoiceError):
    """Valid, but the invoice's state does not allow it (issued, payments standing …)."""

    status = 409
    code = "invoice_conflict"


class InvoiceNotFound(InvoiceError):
    status = 404
    code = "not_found"


class RateUnavailable(InvoiceError):
    """The CBR rate for the day could not be had; the invoice stays a draft."""

    code = "rate_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__("rate", reason)
