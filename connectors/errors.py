"""What a connector call can fail with, in terms the caller can act on."""

from __future__ import annotations

__all__ = [
    "AnomalousPayload",
    "ConnectorError",
    "ReauthRequired",
    "Rejected",
    "RetryLater",
    "UnsupportedEvent",
]


class ConnectorError(Exception):
    """Base class of every connector failure."""


class ReauthRequired(ConnectorError):
    """The stored grant no longer works (refresh refused, app uninstalled): an admin must reinstall."""


class RetryLater(ConnectorError):
    """Transient: rate limited, platform down or a timeout. Try again after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after = max(0.0, float(retry_after))


class Rejected(ConnectorError):
    """The platform refused the request as such (validation, not found, forbidden): retrying won't help."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, path: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.path = path


class UnsupportedEvent(ConnectorError):
    """A genuine platform event we do not handle. Acknowledged with 200 so the platform keeps sending."""

    def __init__(self, event_type: str) -> None:
        super().__init__(f"unsupported event {event_type!r}")
        self.event_type = event_type


class AnomalousPayload(ConnectorError):
    """A payload that is probably not from the platform at all (forged, foreign portal, wrong shape)."""
