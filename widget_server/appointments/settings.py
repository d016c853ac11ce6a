"""A portal's MIS settings (`portal.settings["mis"]`): the stage map, no-show reasons, primary gap, and the
two seed templates an admin starts from.

Stage map: group (`primary`, `repeat`, `waiting_list`) → canonical status → target
`{"pipeline_id", "stage_id", "loss_reason"?}`. A status missing from its group means "do not move" (outcome
`unmapped`). Ids are the CRM's; the templates use the sandbox CRM, where a pipeline or stage id is its name
and the closed stages are `won` / `lost`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GROUPS", "SEED002_TEMPLATE", "SEED004_TEMPLATE", "MisSettings", "mis_settings"]

GROUPS = ("primary", "repeat", "waiting_list")


def _lost(pipeline: str, reason: str) -> dict[str, str]:
    return {"pipeline_id": pipeline, "stage_id": "lost", "loss_reason": reason}


def _group(pipeline: str) -> dict[str, dict[str, str]]:
    return {
        "booked": {"pipeline_id": pipeline, "stage_id": "Записан на приём"},
        "confirmed": {"pipeline_id": pipeline, "stage_id": "Записан на приём"},
        "arrived": {"pipeline_id": pipeline, "stage_id": "Записан на приём"},
        "completed": {"pipeline_id": pipeline, "stage_id": "Посетил клинику"},
        "cancelled": _lost(pipeline, "Отменил запись"),
        "no_show": _lost(pipeline, "Не пришёл"),
    }


SEED002_TEMPLATE: dict[str, Any] = {
    "stage_map": {"primary": _group("Первичный приём"), "repeat": _group("Повторный приём")},
    "no_show_reasons": ["8"],
    "primary_after_gap_months": None,
    "intake_pipeline_id": "Определение типа приёма",
}
"""Seed 002 (amoCRM + IDENT): «Первичный приём» / «Повторный приём», «Записан на приём» → «Посетил клинику»,
cancelled and no-show closed with «Причина отказа»."""


def _seed004(category: str) -> dict[str, dict[str, str]]:
    return {
        "completed": {"pipeline_id": category, "stage_id": "Визит состоялся"},
        "no_show": {"pipeline_id": category, "stage_id": "Записался, но не пришёл"},
    }


SEED004_TEMPLATE: dict[str, Any] = {
    "stage_map": {
        "primary": _seed004("Первичные пациенты"),
        "repeat": _seed004("Повторные пациенты"),
        "waiting_list": _seed004("Лист ожидания"),
    },
    "no_show_reasons": [],
    "primary_after_gap_months": 6,
    "intake_pipeline_id": None,
}
"""Seed 004 (Bitrix24 + Helix): a category per patient kind, «Визит состоялся» / «Записался, но не пришёл»;
a patient back after six months counts as primary again."""


@dataclass(frozen=True)
class MisSettings:
    stage_map: Mapping[str, Mapping[str, Mapping[str, str]]] = field(default_factory=dict)
    no_show_reasons: frozenset[str] = frozenset()
    primary_after_gap_months: int | None = None
    lost_stage_id: str = "lost"
    won_stage_id: str = "won"

    def target(self, kind: str, waiting_list: bool, status: str) -> dict[str, str] | None:
        group = "waiting_list" if waiting_list and "waiting_list" in self.stage_map else kind
        found = (self.stage_map.get(group) or {}).get(status)
        return dict(found) if found else None


def mis_settings(portal_settings: Mapping[str, Any] | None) -> MisSettings:
    doc = (portal_settings or {}).get("mis") or {}
    gap = doc.get("primary_after_gap_months")
    return MisSettings(
        stage_map=doc.get("stage_map") or {},
        no_show_reasons=frozenset(str(r) for r in doc.get("no_show_reasons") or ()),
        primary_after_gap_months=int(gap) if gap else None,
        lost_stage_id=str(doc.get("lost_stage_id") or "lost"),
        won_stage_id=str(doc.get("won_stage_id") or "won"),
    )
