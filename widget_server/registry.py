"""The one place that maps a portal to its concrete connector."""

from __future__ import annotations

from connectors.base import CrmClient

from .models import Portal
from .runtime import Runtime

__all__ = ["UnsupportedPortal", "crm_for"]


class UnsupportedPortal(LookupError):
    """No connector is installed for this portal's kind."""


def crm_for(portal: Portal, runtime: Runtime) -> CrmClient:
    if portal.kind == "sandbox":
        from .sandbox.crm import SandboxCrm

        return SandboxCrm(runtime.db, portal.id, timezone=portal.timezone)
    raise UnsupportedPortal(f"no CRM connector for portal kind {portal.kind!r} yet")
