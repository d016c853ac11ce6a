"""The one error shape of our HTTP API: {"error": {"code", "message", "fields": {name: [reasons]}}}."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["ApiError", "Conflict", "DomainError", "Forbidden", "NotFound", "Unauthorized", "ValidationFailed"]


class DomainError(Exception):
    """A refusal from domain code, which knows nothing of HTTP but says which status fits."""

    status = 422
    code = "rejected"

    def __init__(self, field: str, reason: str, *, code: str | None = None) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        if code:
            self.code = code

    def as_api_error(self) -> ApiError:
        return ApiError(str(self), code=self.code, status=self.status, fields={self.field: [self.reason]})


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        fields: Mapping[str, Sequence[str]] | None = None,
        code: str | None = None,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.fields = {name: list(reasons) for name, reasons in (fields or {}).items()}
        if code:
            self.code = code
        if status:
            self.status = status
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, object]:
        return {"error": {"code": self.code, "message": self.message, "fields": self.fields}}


class ValidationFailed(ApiError):
    status = 422
    code = "validation_failed"

    @classmethod
    def for_field(cls, field: str, reason: str) -> ValidationFailed:
        return cls(f"{field}: {reason}", fields={field: [reason]})


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str = "missing or invalid credentials", **kwargs: object) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="clinicbridge"'})
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"
