"""Bitrix24 jobs: registrations, the offline drain and reconciliation (periodic), robots.

Robots: the inbox stored the call under its `event_token` and answered at once; here the action runs
with that token as its idempotency key and its outcome goes back by `bizproc.event.send`, `ok=N` with
the reason on a refusal so the automation never waits for ever. `ACCESS_DENIED` from the send means
the token expired: the run is failed (the inbox keeps the error).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from connectors.errors import ConnectorError, ReauthRequired, Rejected, RetryLater
from connectors.types import CrmEvent, RobotCall

from .. import runtime
from ..bitrix24_client import build_client
from ..bitrix24_install import rebind
from ..bitrix24_sync import drain_offline, reconcile, usable_portals
from ..models import Portal
from .joblog import logged_job

__all__ = [
    "ROBOT_ACTIONS",
    "RobotRunFailed",
    "drain_offline_events",
    "keep_grants_alive",
    "poll_offline_events",
    "rebind_portal",
    "reconcile_deals",
    "run_robot",
]

log = logging.getLogger(__name__)


class RobotRunFailed(Exception):
    """The platform refused our answer (ACCESS_DENIED: the event token expired)."""


@logged_job("bitrix24_rebind")
def rebind_portal(portal_id: int) -> str:
    report = rebind(runtime.current(), portal_id)
    return f"added {len(report.added)} updated {len(report.updated)} removed {len(report.removed)}"


@logged_job("bitrix24_drain_offline")
def drain_offline_events(portal_id: int) -> str:
    return str(drain_offline(runtime.current(), portal_id))


def _slot(now: datetime, minutes: int) -> str:
    return now.strftime("%Y-%m-%dT%H:") + f"{now.minute // minutes * minutes:02d}"


def _each_portal(job: str, minutes: int, work: Callable[[int], dict[str, Any]]) -> str:
    from ..models import utcnow

    # Imported here: periodic imports the inbox job, which imports this module for its robot reaction.
    from .periodic import claim_period, finish_period

    period = _slot(utcnow(), minutes)
    done = 0
    for portal_id in usable_portals(runtime.current()):
        if not claim_period(job, f"portal:{portal_id}", period):
            continue
        try:
            detail = work(portal_id)
            finish_period(job, f"portal:{portal_id}", period, "done", detail)
        except ConnectorError as exc:
            finish_period(job, f"portal:{portal_id}", period, "failed", {"error": str(exc)[:300]})
        done += 1
    return f"{job}: {done} portals"


@logged_job("bitrix24_poll_offline")
def poll_offline_events() -> str:
    """Every 5 minutes, in case an ONOFFLINEEVENT push was lost too."""
    return _each_portal("bitrix24_poll_offline", 5, lambda pid: drain_offline(runtime.current(), pid))


@logged_job("bitrix24_reconcile")
def reconcile_deals() -> str:
    return _each_portal("bitrix24_reconcile", 15, lambda pid: reconcile(runtime.current(), pid))


# --- robots -----------------------------------------------------------------------------------------


def _stay_status(portal: Portal, client: Any, call: RobotCall) -> dict[str, Any]:
    from ..ledger.accounts import find_account
    from ..ledger.errors import LedgerNotFound
    from ..ledger.summary import stay_summary
    from ..money import format_minor

    rt = runtime.current()
    with rt.db.transaction() as session:
        row = session.get(Portal, portal.id)
        assert row is not None
        try:
            account = find_account(session, portal.id, call.deal_id)
        except LedgerNotFound:
            raise Rejected("у сделки нет счёта пребывания / the deal has no stay account") from None
        summary = stay_summary(session, row, account)
        paid = summary.forecast.paid_through
        return {
            "balance": format_minor(summary.balance_minor, row.currency),
            "paid_through": paid.isoformat() if paid else "",
        }


def _patient_folder(portal: Portal, client: Any, call: RobotCall) -> dict[str, Any]:
    _, link = client.patient_folder(call.deal_id)
    return {"link": link or ""}


def _notify(portal: Portal, client: Any, call: RobotCall) -> dict[str, Any]:
    users = [
        u.strip().removeprefix("user_")
        for u in call.params.get("properties.users", "").split(",")
        if u.strip()
    ]
    message = call.params.get("properties.message", "").strip()
    if not users or not message:
        raise Rejected("нужны получатели и сообщение / users and message are required")
    for uid in users:
        client.notify_user(uid, message, idempotency_key=f"robot:{call.params['event_token']}:{uid}")
    return {}


def _find_contact(portal: Portal, client: Any, call: RobotCall) -> dict[str, Any]:
    from connectors.bitrix24.fields import normalize_phone

    raw = call.params.get("properties.phone", "")
    phone = normalize_phone(raw) if raw else None
    if phone is None:
        raise Rejected(f"неверный телефон / invalid phone {raw!r}")
    found = client.find_contacts_by_phone(phone)
    if not found:
        raise Rejected("контакт не найден / no contact with this phone")
    contact = found[0]
    deal = client.get_deal(call.deal_id)
    if contact.id not in deal.contact_ids:
        client._update(
            int(call.deal_id), {"contactIds": [*(int(c) for c in deal.contact_ids), int(contact.id)]}
        )
    return {"contact_id": int(contact.id)}


def _distribute(portal: Portal, client: Any, call: RobotCall) -> dict[str, Any]:
    # Lead distribution's own entry (jobs/distribution.py); it reads the rule as `rule_id`.
    from dataclasses import replace

    from .distribution import distribute_robot

    params = {**call.params, "rule_id": call.params.get("properties.rule_id", "")}
    return distribute_robot(portal, client, replace(call, params=params))


ROBOT_ACTIONS: dict[str, Callable[[Portal, Any, RobotCall], dict[str, Any]]] = {
    "stay_status": _stay_status,
    "patient_folder": _patient_folder,
    "notify": _notify,
    "find_contact": _find_contact,
    "distribute": _distribute,
}


def run_robot(portal_id: int, event: CrmEvent) -> None:
    """The inbox reaction to a robot call on a Bitrix24 portal."""
    if not isinstance(event, RobotCall):
        return
    rt = runtime.current()
    with rt.db.transaction() as session:
        portal = session.get(Portal, portal_id)
        if portal is None or portal.kind != "bitrix24":
            return
        session.expunge(portal)
    client = build_client(portal, rt)
    action = ROBOT_ACTIONS.get(event.action)
    values: dict[str, Any]
    try:
        if action is None:
            raise Rejected(f"unknown robot {event.action!r}")
        values = {**action(portal, client, event), "ok": "Y", "error": ""}
    except Rejected as exc:
        values = {"ok": "N", "error": str(exc)[:500]}
    try:
        client.transport.call(
            "bizproc.event.send",
            {
                "EVENT_TOKEN": event.params["event_token"],
                "RETURN_VALUES": values,
                "LOG_MESSAGE": "ClinicBridge: " + ("готово" if values["ok"] == "Y" else values["error"]),
            },
        )
    except Rejected as exc:
        if exc.code == "ACCESS_DENIED":
            raise RobotRunFailed(f"bizproc.event.send refused: the event token expired ({exc})") from None
        raise



GRANT_IDLE = timedelta(days=150)
"""A refresh token lives 180 days (research §1.5); an unused grant is refreshed well before, and only then:
refreshing on a timer more often risks being blocked as automation."""


@logged_job("bitrix24_keep_grants")
def keep_grants_alive() -> str:
    from ..bitrix24_client import b24_oauth
    from ..models import utcnow
    from ..tokens import DbTokenSource

    rt = runtime.current()
    now = utcnow()
    refreshed = 0
    for portal_id in usable_portals(rt):
        source = DbTokenSource(rt, portal_id)
        try:
            with source.refresh_lock(timeout=5):
                token = source.get()  # re-read inside the lock: a worker may have just rotated it
                stamp = (token.extra.get("saved_at") or token.extra.get("refreshed_at")) if token else None
                if token is None or (stamp and now - datetime.fromisoformat(str(stamp)) < GRANT_IDLE):
                    continue
                source.save(b24_oauth(rt).refresh(token))
                refreshed += 1
        except ReauthRequired as exc:
            source.mark_reauth_required(str(exc))
        except RetryLater:
            continue
    return f"refreshed {refreshed}"
