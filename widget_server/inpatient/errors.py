"""In-patient refusals: each names the field and the reason, and carries the HTTP status it maps to."""

from __future__ import annotations

from ..errors import DomainError

__all__ = ["InpatientConflict", "InpatientError", "InpatientNotFound"]


class InpatientError(DomainError):
    """A request the in-patient workflow refuses; nothing was written."""

    status = 422
    code = "inpatient_rejected"


class InpatientConflict(InpatientError):
    """Valid, but the stay's state does not allow it (bed taken, already recorded, not yet requested …)."""

    status = 409
    code = "inpatient_conflict"


class InpatientNotFound(InpatientError):
    status = 404
    code = "not_found"
