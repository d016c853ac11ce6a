"""A portal's MIS settings (`portal.settings["mis"]`): the stage map, no-show reasons, primary gap, and the
two seed templates an admin starts from.

Stage map: group (`primary`, `repeat`, `waiting_list`) → canonical status → target
`{"pipeline_id", "stage_id", "loss_reason"?}`. A status missing from its group means "do not move" (outcome
`unmapped`). Ids are the CRM's; the templates use the sandbox CRM, where a pipeline or stage id is its name
and the closed stages are `won` / `lost`. Field map: what of the visit the deal shows (`FIELD_KEYS`) → the
CRM's custom field id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from ..errors import DomainError

__all__ = [
    "EDITABLE",
    "FIELD_KEYS",
    "GROUPS",
    "SEED002_TEMPLATE",
    "SEED004_TEMPLATE",
    "TEMPLATES",
    "MisSettings",
    "mis_settings",
    "validate_mis_settings",
]

GROUPS = ("primary", "repeat", "waiting_list")
FIELD_KEYS = ("visit_at", "visit_date", "doctor", "specialty", "branch", "status", "card_number", "amount")
"""Visit facts a deal field can show: «12.03.2026 10:00» (text), the day (a date field), «Смирнов И. П.»,
the specialty, the branch, the status in words, the MIS card number, the visit's amount (decimal string)."""


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
    field_map: Mapping[str, str] = field(default_factory=dict)
    mirror_from: date | None = None
    """Visits before this day (the portal's) are history: they count for primary vs repeat, no deal."""

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
        field_map={k: str(v) for k, v in (doc.get("field_map") or {}).items() if k in FIELD_KEYS and v},
        mirror_from=date.fromisoformat(doc["mirror_from"]) if doc.get("mirror_from") else None,
    )


STATUS_KEYS = ("requested", "booked", "confirmed", "arrived", "completed", "cancelled", "no_show")
TEMPLATES = {"seed002": SEED002_TEMPLATE, "seed004": SEED004_TEMPLATE}
EDITABLE = (
    "stage_map",
    "no_show_reasons",
    "primary_after_gap_months",
    "lost_stage_id",
    "won_stage_id",
    "ident_format",
    "helix_watch_dir",
    "doctor_map",
    "intake_pipeline_id",
    "field_map",
    "mirror_from",
)


def validate_mis_settings(
    doc: Mapping[str, Any], pipelines: Sequence[Mapping[str, Any]] | None
) -> dict[str, Any]:
    """A clean settings document, or `DomainError` naming the first bad setting. With the CRM's pipelines
    (`[{id, stages: [{id}]}]`), every target must name a real pipeline and stage; None skips that check
    (the sandbox CRM's pipelines are free-form)."""
    clean: dict[str, Any] = {}
    stage_map = doc.get("stage_map") or {}
    if not isinstance(stage_map, Mapping):
        raise DomainError("stage_map", "an object of groups is required")
    stages = (
        None
        if pipelines is None
        else {str(p["id"]): {str(s["id"]) for s in p.get("stages", [])} for p in pipelines}
    )
    lost = str(doc.get("lost_stage_id") or "lost")
    won = str(doc.get("won_stage_id") or "won")
    clean_map: dict[str, dict[str, dict[str, str]]] = {}
    for group, statuses in stage_map.items():
        if group not in GROUPS:
            raise DomainError(f"stage_map.{group}", f"unknown group; one of {', '.join(GROUPS)}")
        if not isinstance(statuses, Mapping):
            raise DomainError(f"stage_map.{group}", "an object of statuses is required")
        clean_map[group] = {}
        for status, target in statuses.items():
            where = f"stage_map.{group}.{status}"
            if status not in STATUS_KEYS:
                raise DomainError(where, f"unknown status; one of {', '.join(STATUS_KEYS)}")
            if not isinstance(target, Mapping):
                raise DomainError(where, "an object {pipeline_id, stage_id, loss_reason?} is required")
            pipeline, stage = target.get("pipeline_id"), target.get("stage_id")
            for key, value in (("pipeline_id", pipeline), ("stage_id", stage)):
                if not isinstance(value, str) or not value.strip():
                    raise DomainError(f"{where}.{key}", "a non-empty string is required")
            assert isinstance(pipeline, str) and isinstance(stage, str)
            if stages is not None:
                if pipeline not in stages:
                    raise DomainError(f"{where}.pipeline_id", f"the CRM has no pipeline {pipeline!r}")
                if stage not in stages[pipeline] | {lost, won}:
                    raise DomainError(f"{where}.stage_id", f"pipeline {pipeline!r} has no stage {stage!r}")
            entry = {"pipeline_id": pipeline, "stage_id": stage}
            reason = target.get("loss_reason")
            if reason is not None:
                if stage != lost or not isinstance(reason, str) or not reason.strip():
                    raise DomainError(
                        f"{where}.loss_reason", f"only a {lost!r} stage takes a loss reason text"
                    )
                entry["loss_reason"] = reason
            clean_map[group][status] = entry
    clean["stage_map"] = clean_map
    reasons = doc.get("no_show_reasons") or []
    if not isinstance(reasons, list) or not all(
        isinstance(r, str | int) and not isinstance(r, bool) for r in reasons
    ):
        raise DomainError("no_show_reasons", "a list of IDENT cancel reason ids is required")
    clean["no_show_reasons"] = [str(r) for r in reasons]
    gap = doc.get("primary_after_gap_months")
    if gap is not None and (isinstance(gap, bool) or not isinstance(gap, int) or not 1 <= gap <= 120):
        raise DomainError("primary_after_gap_months", "null (off) or whole months 1…120")
    clean["primary_after_gap_months"] = gap
    clean["lost_stage_id"], clean["won_stage_id"] = lost, won
    fmt = doc.get("ident_format") or "json"
    if fmt not in ("json", "xml"):
        raise DomainError("ident_format", "json or xml")
    clean["ident_format"] = fmt
    watch = doc.get("helix_watch_dir")
    if watch is not None and (not isinstance(watch, str) or not watch.startswith("/")):
        raise DomainError("helix_watch_dir", "null (the default folder) or an absolute path")
    clean["helix_watch_dir"] = watch
    doctors = doc.get("doctor_map") or {}
    if not isinstance(doctors, Mapping):
        raise DomainError("doctor_map", "an object {IDENT doctor id: {specialty}} is required")
    clean_doctors = {}
    for doctor_id, entry in doctors.items():
        specialty = entry.get("specialty") if isinstance(entry, Mapping) else None
        if not isinstance(specialty, str) or not specialty.strip():
            raise DomainError(f"doctor_map.{doctor_id}.specialty", "a non-empty string is required")
        clean_doctors[str(doctor_id)] = {"specialty": specialty.strip()}
    clean["doctor_map"] = clean_doctors
    intake = doc.get("intake_pipeline_id")
    clean["intake_pipeline_id"] = intake if isinstance(intake, str) and intake else None
    fields = doc.get("field_map") or {}
    if not isinstance(fields, Mapping):
        raise DomainError("field_map", "an object {visit fact: CRM field id} is required")
    for key, field_id in fields.items():
        if key not in FIELD_KEYS:
            raise DomainError(f"field_map.{key}", f"unknown visit fact; one of {', '.join(FIELD_KEYS)}")
        if not isinstance(field_id, str | int) or isinstance(field_id, bool) or not str(field_id).strip():
            raise DomainError(f"field_map.{key}", "the CRM field id is required")
    clean["field_map"] = {key: str(field_id).strip() for key, field_id in fields.items()}
    mirror_from = doc.get("mirror_from")
    if mirror_from is not None:
        try:
            date.fromisoformat(str(mirror_from))
        except ValueError:
            raise DomainError("mirror_from", "null (mirror every visit) or a date YYYY-MM-DD") from None
    clean["mirror_from"] = mirror_from
    return clean
