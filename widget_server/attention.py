"""What an admin must act on for a portal: lost CRM connection, refused webhooks, jobs that failed for good.

Derived from the portal's own state on every read (nothing to keep in sync); `alerts.py` pushes the
connection losses to ALERT_WEBHOOK_URL at the moment they happen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from .models import OutboxJob, Portal

__all__ = ["Attention", "portal_attention"]


@dataclass(frozen=True)
class Attention:
    code: str
    severity: str  # "critical": the CRM gets nothing until an admin acts; "warning": degraded
    message_ru: str
    message_en: str
    detail: str | None = None
    action: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _reconnect_action(portal: Portal, base_url: str) -> str | None:
    if portal.kind == "amocrm":
        return f"{base_url}/install/amocrm"
    return None


def portal_attention(session: Session, portal: Portal, base_url: str) -> list[Attention]:
    items: list[Attention] = []
    settings = portal.settings or {}
    if portal.status == "needs_reauth":
        items.append(
            Attention(
                "needs_reauth",
                "critical",
                "Нет доступа к CRM: переподключите интеграцию. Изменения ждут и уйдут после подключения.",
                "The CRM refused our access: reconnect the integration. Changes are kept and sent then.",
                detail=str(settings.get("reauth_reason") or "") or None,
                action=_reconnect_action(portal, base_url),
            )
        )
    elif portal.status == "blocked":
        items.append(
            Attention(
                "blocked",
                "critical",
                "CRM заблокировала запросы (403). Обратитесь в поддержку CRM, затем выполните "
                "`clinicbridge portal unblock`.",
                "The CRM blocked our requests (403). Contact the CRM's support, then run "
                "`clinicbridge portal unblock`.",
            )
        )
    webhooks = (settings.get("amocrm") or {}).get("webhooks") or {}
    if webhooks.get("status") == "refused":
        items.append(
            Attention(
                "webhooks_refused",
                "warning",
                "amoCRM не разрешила вебхуки: изменения сделок читаются опросом раз в 5 минут.",
                "amoCRM refused our webhooks: deal changes are polled every 5 minutes instead.",
                detail=str(webhooks.get("reason") or "") or None,
            )
        )
    failed = session.scalar(
        select(func.count())
        .select_from(OutboxJob)
        .where(OutboxJob.portal_id == portal.id, OutboxJob.state == "failed")
    )
    if failed:
        items.append(
            Attention(
                "outbox_failed",
                "warning",
                f"Не доставлено в CRM: {failed}. Проверьте ошибки и повторите.",
                f"Not delivered to the CRM: {failed}. Check the errors and retry.",
                action=f"{base_url}/api/v1/outbox?state=failed",
            )
        )
    return items
