"""Connector failures as API errors, for the few endpoints that read the CRM synchronously."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from connectors.errors import ReauthRequired, Rejected, RetryLater

from ..errors import ApiError, NotFound
from ..registry import UnsupportedPortal

__all__ = ["crm_errors_as_api_errors"]


@contextmanager
def crm_errors_as_api_errors(what: str) -> Iterator[None]:
    try:
        yield
    except Rejected as exc:
        if exc.status == 404:
            raise NotFound(f"{what} not found in the CRM") from None
        raise ApiError(f"the CRM refused: {exc}", code="crm_rejected", status=502) from None
    except RetryLater as exc:
        raise ApiError(
            "the CRM is busy or unreachable; try again",
            code="crm_unavailable",
            status=503,
            headers={"Retry-After": str(max(1, round(exc.retry_after)))},
        ) from None
    except ReauthRequired:
        raise ApiError(
            "the CRM connection needs an administrator to reinstall the integration",
            code="crm_reauth_required",
            status=503,
        ) from None
    except UnsupportedPortal as exc:
        raise ApiError(str(exc), code="crm_not_supported", status=501) from None
