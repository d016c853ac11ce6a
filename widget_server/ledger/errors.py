"""Ledger refusals. Each names the field and the reason, and carries the HTTP status it maps to."""

from __future__ import annotations

from ..errors import DomainError

__all__ = ["LedgerConflict", "LedgerError", "LedgerForbidden", "LedgerNotFound"]


class LedgerError(DomainError):
    """A request the ledger refuses; nothing was written."""

    status = 422
    code = "ledger_rejected"


class LedgerConflict(LedgerError):
    """The request is valid but the account's state does not allow it (closed, already reversed …)."""

    status = 409
    code = "ledger_conflict"


class LedgerForbidden(LedgerError):
    status = 403
    code = "missing_role"


class LedgerNotFound(LedgerError):
    status = 404
    code = "not_found"
