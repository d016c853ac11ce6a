"""What an installed app registers on a portal, and the idempotent sync that makes it so.

Run with the installing admin's token on install and on every new app version (handlers are dropped by
the platform on update, research/bitrix24.md §1.2): missing things are added, changed ones updated,
obsolete ones of ours removed, nothing doubled. Each call's refusal stops the sync and is reported by
method and error, so the install page can name it and withhold `BX24.installFinish()`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConnectorError, Rejected
from .robots import PREFIX, ROBOTS, robot_params
from .transport import B24Transport

__all__ = ["DEAL_EVENTS", "OUR_FIELDS", "BindFailed", "Endpoints", "SyncReport", "sync"]

DEAL_EVENTS = ("ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE", "ONCRMDEALMOVETOCATEGORY")
PLACEMENT = "CRM_DEAL_DETAIL_TAB"
OUR_FIELDS: Mapping[str, Mapping[str, Any]] = {
    "CB_BALANCE": {"USER_TYPE_ID": "double", "LABEL": "ClinicBridge: баланс"},
    "CB_DAILY_RATE": {"USER_TYPE_ID": "double", "LABEL": "ClinicBridge: тариф в сутки"},
    "CB_PAID_THROUGH": {"USER_TYPE_ID": "date", "LABEL": "ClinicBridge: оплачено по"},
    "CB_LOSS_REASON": {"USER_TYPE_ID": "string", "LABEL": "ClinicBridge: причина отказа"},
}


class BindFailed(ConnectorError):
    def __init__(self, method: str, error: str) -> None:
        super().__init__(f"{method}: {error}")
        self.method = method
        self.error = error


@dataclass(frozen=True)
class Endpoints:
    base_url: str
    auth_connector: str

    @property
    def events(self) -> str:
        return f"{self.base_url}/bitrix24/events"

    @property
    def uninstall(self) -> str:
        return f"{self.base_url}/bitrix24/uninstall"

    @property
    def placement(self) -> str:
        return f"{self.base_url}/bitrix24/placement/deal-tab"

    def robot(self, name: str) -> str:
        return f"{self.base_url}/bitrix24/robots/{name}"


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    storage_id: str | None = None
    offline_extended: bool = False


def _call(transport: B24Transport, method: str, params: Mapping[str, Any], *, read: bool = False) -> Any:
    try:
        return transport.call(method, params, read=read).get("result")
    except Rejected as exc:
        raise BindFailed(method, exc.code or str(exc)) from None
    except ConnectorError as exc:
        raise BindFailed(method, str(exc)) from None


def _desired_events(ep: Endpoints) -> list[dict[str, Any]]:
    wanted: list[dict[str, Any]] = [
        {"event": e, "handler": ep.events, "event_type": "online"} for e in DEAL_EVENTS
    ]
    wanted += [
        {"event": e, "handler": "", "event_type": "offline", "auth_connector": ep.auth_connector}
        for e in DEAL_EVENTS
    ]
    wanted.append({"event": "ONAPPUNINSTALL", "handler": ep.uninstall, "event_type": "online"})
    wanted.append(
        {
            "event": "ONOFFLINEEVENT",
            "handler": ep.events,
            "event_type": "online",
            "options": {"minTimeout": 30},
        }
    )
    return wanted


def _sync_events(transport: B24Transport, ep: Endpoints, report: SyncReport) -> None:
    bound = _call(transport, "event.get", {}, read=True) or []
    have = {
        (
            str(h.get("event", "")).upper(),
            str(h.get("handler") or ""),
            "offline" if h.get("offline") else "online",
        )
        for h in bound
    }
    wanted = _desired_events(ep)
    want_keys = {(w["event"], w["handler"], w["event_type"]) for w in wanted}
    for entry in wanted:
        if (entry["event"], entry["handler"], entry["event_type"]) not in have:
            _call(transport, "event.bind", entry)
            report.added.append(f"event:{entry['event']}:{entry['event_type']}")
    for event, handler, kind in sorted(have - want_keys):
        # Ours but no longer wanted (an old URL, a dropped event); other apps' handlers are not listed.
        if handler.startswith(ep.base_url) or (kind == "offline" and event in DEAL_EVENTS):
            _call(transport, "event.unbind", {"event": event, "handler": handler, "event_type": kind})
            report.removed.append(f"event:{event}:{kind}")


def _sync_placement(transport: B24Transport, ep: Endpoints, report: SyncReport) -> None:
    bound = _call(transport, "placement.get", {}, read=True) or []
    ours = [p for p in bound if str(p.get("handler", "")).startswith(ep.base_url)]
    if not any(p.get("placement") == PLACEMENT and p.get("handler") == ep.placement for p in ours):
        _call(
            transport,
            "placement.bind",
            {
                "PLACEMENT": PLACEMENT,
                "HANDLER": ep.placement,
                "TITLE": "ClinicBridge",
                "LANG_ALL": {"ru": {"TITLE": "Пребывание"}, "en": {"TITLE": "Stay"}},
            },
        )
        report.added.append(f"placement:{PLACEMENT}")
    for p in ours:
        if (p.get("placement"), p.get("handler")) != (PLACEMENT, ep.placement):
            _call(
                transport, "placement.unbind", {"PLACEMENT": p.get("placement"), "HANDLER": p.get("handler")}
            )
            report.removed.append(f"placement:{p.get('placement')}")


def _sync_robots(transport: B24Transport, ep: Endpoints, report: SyncReport) -> None:
    codes = set(_call(transport, "bizproc.robot.list", {}, read=True) or [])
    for robot in ROBOTS.values():
        params = robot_params(robot, ep.robot(robot.name))
        if robot.code in codes:
            fields = {k: v for k, v in params.items() if k != "CODE"}
            _call(transport, "bizproc.robot.update", {"CODE": robot.code, "FIELDS": fields})
            report.updated.append(f"robot:{robot.code}")
        else:
            _call(transport, "bizproc.robot.add", params)
            report.added.append(f"robot:{robot.code}")
    known = {r.code for r in ROBOTS.values()}
    for code in sorted(codes):
        if code.startswith(PREFIX) and code not in known:
            _call(transport, "bizproc.robot.delete", {"CODE": code})
            report.removed.append(f"robot:{code}")


def _sync_fields(transport: B24Transport, report: SyncReport) -> None:
    existing = {
        str(f.get("FIELD_NAME")) for f in _call(transport, "crm.deal.userfield.list", {}, read=True) or []
    }
    for name, spec in OUR_FIELDS.items():
        if f"UF_CRM_{name}" not in existing:
            _call(transport, "crm.deal.userfield.add", {"fields": {"FIELD_NAME": name, **spec}})
            report.added.append(f"field:UF_CRM_{name}")


def sync(transport: B24Transport, ep: Endpoints) -> SyncReport:
    """Bring the portal's registrations to this version's; raises `BindFailed` on the first refusal."""
    report = SyncReport()
    _sync_placement(transport, ep, report)
    _sync_events(transport, ep, report)
    _sync_robots(transport, ep, report)
    _sync_fields(transport, report)
    storage = _call(transport, "disk.storage.getForApp", {}, read=True) or {}
    report.storage_id = str(storage.get("ID")) if storage.get("ID") else None
    feature = _call(transport, "feature.get", {"CODE": "rest_offline_extended"}, read=True) or {}
    report.offline_extended = feature.get("value") == "Y"
    return report
