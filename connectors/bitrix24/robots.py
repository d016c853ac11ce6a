"""Our automation robots, declared as data and added by `bizproc.robot.add` (research/bitrix24.md §3).

Each robot waits for our answer (`USE_SUBSCRIPTION` explicit `Y`) so its return values reach the deal's
automation; a refusal answers `ok=N` with `error`, so a process never hangs on us. Property types:
bool, date, datetime, double, file, int, select, string, text, user.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DEAL_DOCUMENT_TYPE", "PREFIX", "ROBOTS", "Robot", "robot_params"]

PREFIX = "clinicbridge_"
DEAL_DOCUMENT_TYPE = ["crm", "CCrmDocumentDeal", "DEAL"]
_OK = {
    "ok": {"Name": {"ru": "Успешно (Y/N)", "en": "Succeeded (Y/N)"}, "Type": "string"},
    "error": {"Name": {"ru": "Ошибка", "en": "Error"}, "Type": "string"},
}


@dataclass(frozen=True)
class Robot:
    name: str
    title_ru: str
    title_en: str
    properties: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    returns: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    use_subscription: bool = True

    @property
    def code(self) -> str:
        return PREFIX + self.name


ROBOTS: dict[str, Robot] = {
    r.name: r
    for r in (
        Robot(
            "stay_status",
            "ClinicBridge: баланс пребывания",
            "ClinicBridge: stay balance",
            returns={
                "balance": {"Name": {"ru": "Баланс", "en": "Balance"}, "Type": "string"},
                "paid_through": {"Name": {"ru": "Оплачено по", "en": "Paid through"}, "Type": "date"},
            },
        ),
        Robot(
            "patient_folder",
            "ClinicBridge: папка пациента",
            "ClinicBridge: patient folder",
            returns={"link": {"Name": {"ru": "Ссылка на папку", "en": "Folder link"}, "Type": "string"}},
        ),
        Robot(
            "notify",
            "ClinicBridge: уведомить участников",
            "ClinicBridge: notify participants",
            properties={
                "users": {
                    "Name": {"ru": "Кому", "en": "To"},
                    "Type": "user",
                    "Required": "Y",
                    "Multiple": "Y",
                },
                "message": {"Name": {"ru": "Сообщение", "en": "Message"}, "Type": "text", "Required": "Y"},
            },
        ),
        Robot(
            "find_contact",
            "ClinicBridge: найти контакт по телефону",
            "ClinicBridge: find contact by phone",
            properties={
                "phone": {"Name": {"ru": "Телефон", "en": "Phone"}, "Type": "string", "Required": "Y"},
            },
            returns={"contact_id": {"Name": {"ru": "ID контакта", "en": "Contact ID"}, "Type": "int"}},
        ),
        Robot(
            "distribute",
            "ClinicBridge: распределить сделку",
            "ClinicBridge: distribute the deal",
            properties={
                "rule_id": {
                    "Name": {"ru": "Правило (ID)", "en": "Rule (ID)"},
                    "Type": "int",
                    "Required": "N",
                },
            },
            returns={
                "user_id": {"Name": {"ru": "Ответственный", "en": "Responsible"}, "Type": "user"},
                "decision_id": {"Name": {"ru": "ID решения", "en": "Decision ID"}, "Type": "string"},
                "queued": {"Name": {"ru": "В очереди (Y/N)", "en": "Queued (Y/N)"}, "Type": "string"},
            },
        ),
    )
}


def robot_params(robot: Robot, handler: str) -> dict[str, Any]:
    """`bizproc.robot.add` parameters (also the FIELDS of `bizproc.robot.update`, minus CODE)."""
    return {
        "CODE": robot.code,
        "HANDLER": handler,
        "AUTH_USER_ID": 1,
        "NAME": {"ru": robot.title_ru, "en": robot.title_en},
        "USE_SUBSCRIPTION": "Y" if robot.use_subscription else "N",
        "PROPERTIES": {k: dict(v) for k, v in robot.properties.items()},
        "RETURN_PROPERTIES": {**{k: dict(v) for k, v in robot.returns.items()}, **_OK},
        "DOCUMENT_TYPE": DEAL_DOCUMENT_TYPE,
    }
