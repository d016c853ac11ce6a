"""Journey rules: validation of a rule document and versioning (an edit is a new version; firings cite the
version they fired under and an edit never re-fires what is already decided).

A rule document:
    trigger     {type: appointment_status, statuses}
              | {type: stage_entered, pipeline_id?, stage_id}
              | {type: field_set, field_id, values?}
              | {type: stuck, pipeline_id?, stage_id, hours}
              | {type: offset, anchor: visit|last_visit|date_field, days?, months?, at: "HH:MM", field_id?}
              | {type: answer, kind: confirmation|nps|plus}
              | {type: after_rule, rule: <rule key>, days?, at?}
              | {type: phone_flagged}  (the MIS flagged the patient's phone, or a new lead's phones are all
                                        invalid by connectors/phones.py)
    conditions  {pipelines, kind, specialties, statuses, future_booking, complex_treatment, loss_reasons,
                 not_loss_reasons, answer_values, score_min, score_max, no_answer {kind, within_days},
                 no_booking_since_anchor, fields_set, curator_needed, confirm_mode: message|call_task}
    actions     [{type: task, user_id | role, text, due_days?, due_at?, due_months_field?, due_date_field?}
                 | {type: move, pipeline_id?, stage_id, loss_reason?}  | {type: note, text}
                 | {type: message, text} | {type: fields, fields} | {type: tag, tag}
                 | {type: create_deal, pipeline_id, stage_id | stage_from_field, name, copy_fields, then,
                    computed_fields? {field id: not_seen_for_a_year}}]
    target      deal | created (after_rule: act on the deal the earlier firing created)
    window_hours  how late an occurrence may still fire (default 12; past it the occurrence is expired)
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import DomainError
from ..models import JourneyRule, JourneyRuleVersion, Portal
from .placeholders import unknown_placeholders
from .settings import CONFIRM_MODES, journey_settings, parse_hhmm

__all__ = [
    "ANCHORS",
    "DEFAULT_WINDOW_HOURS",
    "ROLES",
    "TRIGGERS",
    "Catalogue",
    "RuleInvalid",
    "create_rule",
    "current_version",
    "update_rule",
    "validate_rule",
]

TRIGGERS = (
    "appointment_status",
    "stage_entered",
    "field_set",
    "stuck",
    "offset",
    "answer",
    "after_rule",
    "phone_flagged",
)
ANCHORS = ("visit", "last_visit", "date_field")
ACTIONS = ("task", "move", "note", "message", "fields", "tag", "create_deal")
ROLES = ("responsible", "head", "administrator", "curator")
ANSWER_KINDS = ("confirmation", "nps", "plus")
VISIT_STATUSES = ("requested", "booked", "confirmed", "arrived", "completed", "cancelled", "no_show", "void")
DEFAULT_WINDOW_HOURS = 12
# What the engine computes for a new deal's field from our own data instead of copying it.
COMPUTED = ("not_seen_for_a_year",)


class RuleInvalid(DomainError):
    code = "validation_failed"


@dataclass(frozen=True)
class Catalogue:
    """What the portal's CRM has, for checking a rule; None where it could not be read (not checked)."""

    pipelines: Mapping[str, Collection[str]] | None = None
    users: Collection[str] | None = None
    fields: Collection[str] | None = None
    # amoCRM's own list (GET /api/v4/leads/loss_reasons); a portal with loss reasons in a field has none.
    loss_reasons: Collection[str] | None = None
    # Bitrix24 has no such list: per pipeline, the stages with SEMANTICS "F", the only ones a deal is
    # closed in with a loss reason (its text goes to our own field, so any words do).
    failure_stages: Mapping[str, Collection[str]] | None = None


def _int(value: Any, path: str, *, low: int | None = None, high: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise RuleInvalid(path, "must be a whole number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise RuleInvalid(path, f"must be between {low} and {high}")
    return value


def _text(doc: Mapping[str, Any], key: str, path: str, check: _Checker | None = None) -> str:
    value = doc.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RuleInvalid(f"{path}.{key}", "required text")
    bad = unknown_placeholders(value)
    if bad:
        raise RuleInvalid(f"{path}.{key}", f"unknown placeholder {{{{{bad[0]}}}}}")
    if check is not None and "{{план}}" in value:
        check.setting_field("plan_link_field_id", f"{path}.{key}")
    return value


def _strings(value: Any, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise RuleInvalid(path, "must be a list of ids")
    return [str(v) for v in value]


class _Checker:
    def __init__(
        self, catalogue: Catalogue, settings_doc: Mapping[str, Any], *, strict: bool, portal_kind: str = ""
    ) -> None:
        self.catalogue = catalogue
        self.portal_kind = portal_kind
        self.settings = journey_settings(settings_doc)
        self.strict = strict

    def stage(self, pipeline_id: Any, stage_id: Any, path: str) -> tuple[str | None, str]:
        if not isinstance(stage_id, str | int) or str(stage_id) == "":
            raise RuleInvalid(f"{path}.stage_id", "required")
        pipeline = None if pipeline_id in (None, "") else str(pipeline_id)
        stage = str(stage_id)
        pipelines = self.catalogue.pipelines
        closed = {self.settings.lost_stage_id, self.settings.won_stage_id}
        if pipelines is not None and self.strict:
            if pipeline is not None and pipeline not in pipelines:
                raise RuleInvalid(f"{path}.pipeline_id", f"the CRM has no pipeline {pipeline!r}")
            known = (
                set(pipelines[pipeline])
                if pipeline is not None
                else {s for v in pipelines.values() for s in v}
            )
            if stage not in known | closed:
                raise RuleInvalid(f"{path}.stage_id", f"the CRM has no stage {stage!r}")
        return pipeline, stage

    def field(self, field_id: Any, path: str) -> str:
        if not isinstance(field_id, str | int) or str(field_id) == "":
            raise RuleInvalid(path, "required")
        if self.strict and self.catalogue.fields is not None and str(field_id) not in self.catalogue.fields:
            raise RuleInvalid(path, f"the CRM has no deal field {field_id!r}")
        return str(field_id)

    def setting_field(self, key: str, path: str) -> None:
        """A deal field named by a journey setting (or its default) must exist when the rule is enabled."""
        field_id = getattr(self.settings, key)
        if self.strict and self.catalogue.fields is not None and field_id not in self.catalogue.fields:
            raise RuleInvalid(
                path, f"the CRM has no deal field {field_id!r}: map {key} in the journey settings"
            )

    def loss_reason(self, name: str, path: str, *, condition: bool = False) -> str:
        """A name the CRM's own loss reasons must include: a move closes with it (amoCRM's loss_reason_id),
        and with loss_reason_source=crm a condition compares the deal's own reason with it."""
        known = self.catalogue.loss_reasons
        if condition and self.settings.loss_reason_source != "crm":
            return name  # compared with a field's text, which the CRM does not list
        if self.strict and known is not None and name.strip().casefold() not in {k.casefold() for k in known}:
            raise RuleInvalid(path, f"the CRM has no loss reason {name!r}")
        return name

    def closes_with_reason(self, pipeline: str | None, stage: str, path: str) -> None:
        """Bitrix24 takes a loss reason only with a failure stage: refused when the rule is saved rather than
        at each firing, where the move would fail and retry in vain."""
        failures = self.catalogue.failure_stages
        if not self.strict or failures is None:
            return
        allowed = (
            failures.get(pipeline, ()) if pipeline is not None else [s for v in failures.values() for s in v]
        )
        if stage not in allowed:
            raise RuleInvalid(
                path,
                f"only a failure stage (SEMANTICS F) takes a loss reason in Bitrix24; {stage!r} is not one",
            )

    def user(self, user_id: Any, path: str) -> str:
        if self.strict and self.catalogue.users is not None and str(user_id) not in self.catalogue.users:
            raise RuleInvalid(path, f"the CRM has no user {user_id!r}")
        return str(user_id)


def _trigger(doc: Any, check: _Checker) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise RuleInvalid("trigger", "required object")
    kind = doc.get("type")
    if kind not in TRIGGERS:
        raise RuleInvalid("trigger.type", f"one of {', '.join(TRIGGERS)}")
    out: dict[str, Any] = {"type": kind}
    if kind == "appointment_status":
        statuses = _strings(doc.get("statuses"), "trigger.statuses")
        if not statuses or any(s not in VISIT_STATUSES for s in statuses):
            raise RuleInvalid("trigger.statuses", f"one or more of {', '.join(VISIT_STATUSES)}")
        out["statuses"] = statuses
    elif kind in ("stage_entered", "stuck"):
        out["pipeline_id"], out["stage_id"] = check.stage(
            doc.get("pipeline_id"), doc.get("stage_id"), "trigger"
        )
        if kind == "stuck":
            out["hours"] = _int(doc.get("hours"), "trigger.hours", low=1, high=24 * 365)
    elif kind == "field_set":
        out["field_id"] = check.field(doc.get("field_id"), "trigger.field_id")
        out["values"] = _strings(doc.get("values"), "trigger.values")
    elif kind == "offset":
        anchor = doc.get("anchor")
        if anchor not in ANCHORS:
            raise RuleInvalid("trigger.anchor", f"one of {', '.join(ANCHORS)}")
        out["anchor"] = anchor
        out["days"] = _int(doc.get("days", 0), "trigger.days", low=-366, high=3660)
        out["months"] = _int(doc.get("months", 0), "trigger.months", low=0, high=120)
        if parse_hhmm(doc.get("at")) is None:
            raise RuleInvalid("trigger.at", "local time HH:MM")
        out["at"] = doc["at"]
        if anchor == "date_field":
            out["field_id"] = check.field(doc.get("field_id"), "trigger.field_id")
    elif kind == "phone_flagged":
        pass
    elif kind == "answer":
        if doc.get("kind") not in ANSWER_KINDS:
            raise RuleInvalid("trigger.kind", f"one of {', '.join(ANSWER_KINDS)}")
        out["kind"] = doc["kind"]
    else:
        if not isinstance(doc.get("rule"), str) or not doc["rule"]:
            raise RuleInvalid("trigger.rule", "the key of the rule this one follows")
        out["rule"] = doc["rule"]
        out["days"] = _int(doc.get("days", 0), "trigger.days", low=0, high=3660)
        if doc.get("at") is not None and parse_hhmm(doc.get("at")) is None:
            raise RuleInvalid("trigger.at", "local time HH:MM")
        out["at"] = doc.get("at")
    return out


_BOOL_CONDITIONS = ("future_booking", "complex_treatment", "no_booking_since_anchor", "curator_needed")


def _conditions(doc: Any, check: _Checker) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise RuleInvalid("conditions", "must be an object")
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"conditions.{key}"
        if key in ("pipelines", "specialties", "loss_reasons", "not_loss_reasons", "answer_values"):
            out[key] = _strings(value, path)
            if key in ("loss_reasons", "not_loss_reasons"):
                for i, name in enumerate(out[key]):
                    check.loss_reason(name, f"{path}[{i}]", condition=True)
        elif key == "statuses":
            out[key] = _strings(value, path)
            if any(s not in VISIT_STATUSES for s in out[key]):
                raise RuleInvalid(path, f"one or more of {', '.join(VISIT_STATUSES)}")
        elif key == "kind":
            if value not in ("primary", "repeat"):
                raise RuleInvalid(path, "primary or repeat")
            out[key] = value
        elif key in _BOOL_CONDITIONS:
            if not isinstance(value, bool):
                raise RuleInvalid(path, "true or false")
            if key == "curator_needed" and value:
                check.setting_field("curator_field_id", path)
            out[key] = value
        elif key in ("score_min", "score_max"):
            out[key] = _int(value, path, low=0, high=10)
        elif key == "no_answer":
            if not isinstance(value, Mapping) or value.get("kind") not in ANSWER_KINDS:
                raise RuleInvalid(f"{path}.kind", f"one of {', '.join(ANSWER_KINDS)}")
            out[key] = {
                "kind": value["kind"],
                "within_days": _int(value.get("within_days", 1), f"{path}.within_days", low=1, high=366),
            }
        elif key == "fields_set":
            out[key] = [check.field(f, f"{path}[{i}]") for i, f in enumerate(_strings(value, path))]
        elif key == "confirm_mode":
            if value not in CONFIRM_MODES:
                raise RuleInvalid(path, f"one of {', '.join(CONFIRM_MODES)}")
            out[key] = value
        else:
            raise RuleInvalid(path, "unknown condition")
    return out


def _action(doc: Any, path: str, check: _Checker, *, nested: bool = False) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise RuleInvalid(path, "must be an object")
    kind = doc.get("type")
    if kind not in ACTIONS or (nested and kind == "create_deal"):
        raise RuleInvalid(f"{path}.type", f"one of {', '.join(ACTIONS)}")
    out: dict[str, Any] = {"type": kind}
    if kind == "task":
        out["text"] = _text(doc, "text", path, check)
        if doc.get("user_id") not in (None, ""):
            out["user_id"] = check.user(doc["user_id"], f"{path}.user_id")
        else:
            role = doc.get("role", "responsible")
            if role not in ROLES:
                raise RuleInvalid(f"{path}.role", f"one of {', '.join(ROLES)}")
            if role != "responsible" and check.strict:
                mapped = check.settings.roles.get(role)
                if mapped is None:
                    raise RuleInvalid(f"{path}.role", f"map the {role} role to a CRM user (journey settings)")
                check.user(mapped, f"{path}.role")
            out["role"] = role
        out["due_days"] = _int(doc.get("due_days", 0), f"{path}.due_days", low=0, high=3660)
        if doc.get("due_at") is not None and parse_hhmm(doc["due_at"]) is None:
            raise RuleInvalid(f"{path}.due_at", "local time HH:MM")
        out["due_at"] = doc.get("due_at")
        for key in ("due_months_field", "due_date_field"):
            if doc.get(key) is not None:
                out[key] = check.field(doc[key], f"{path}.{key}")
    elif kind == "move":
        out["pipeline_id"], out["stage_id"] = check.stage(doc.get("pipeline_id"), doc.get("stage_id"), path)
        if doc.get("loss_reason") is not None:
            out["loss_reason"] = check.loss_reason(_text(doc, "loss_reason", path), f"{path}.loss_reason")
            check.closes_with_reason(out["pipeline_id"], out["stage_id"], f"{path}.loss_reason")
    elif kind in ("note", "message"):
        out["text"] = _text(doc, "text", path, check)
        if kind == "message" and check.strict and not check.settings.message_field_id:
            raise RuleInvalid(path, "map the message field (message_field_id) in the journey settings first")
    elif kind == "fields":
        fields = doc.get("fields")
        if not isinstance(fields, Mapping) or not fields:
            raise RuleInvalid(f"{path}.fields", "an object of field id → value")
        out["fields"] = {check.field(k, f"{path}.fields.{k}"): v for k, v in fields.items()}
    elif kind == "tag":
        out["tag"] = _text(doc, "tag", path)
        if check.strict and check.portal_kind == "bitrix24" and not check.settings.tag_field_id:
            # amoCRM and the sandbox have deal tags; Bitrix24 keeps them in a multiple field of the portal's.
            raise RuleInvalid(path, "Bitrix24 deals have no tags: map the tags field (tag_field_id) first")
    else:
        if doc.get("stage_from_field") is not None:
            # The stage is the field's value at firing time («Продажа комплексного лечения» names it).
            out["stage_from_field"] = check.field(doc["stage_from_field"], f"{path}.stage_from_field")
            if doc.get("pipeline_id") in (None, ""):
                raise RuleInvalid(f"{path}.pipeline_id", "required")
            out["pipeline_id"] = str(doc["pipeline_id"])
        else:
            out["pipeline_id"], out["stage_id"] = check.stage(
                doc.get("pipeline_id"), doc.get("stage_id"), path
            )
            if out["pipeline_id"] is None:
                raise RuleInvalid(f"{path}.pipeline_id", "required")
        out["name"] = _text(doc, "name", path)
        out["copy_fields"] = [
            check.field(f, f"{path}.copy_fields[{i}]")
            for i, f in enumerate(_strings(doc.get("copy_fields"), path))
        ]
        computed = doc.get("computed_fields") or {}
        if not isinstance(computed, Mapping):
            raise RuleInvalid(f"{path}.computed_fields", "an object of field id → what to compute")
        for field_id, what in computed.items():
            if what not in COMPUTED:
                raise RuleInvalid(f"{path}.computed_fields.{field_id}", f"one of {', '.join(COMPUTED)}")
            field = check.field(field_id, f"{path}.computed_fields.{field_id}")
            out.setdefault("computed_fields", {})[field] = what
        then = doc.get("then") or []
        if not isinstance(then, list):
            raise RuleInvalid(f"{path}.then", "a list of actions")
        out["then"] = [_action(a, f"{path}.then[{i}]", check, nested=True) for i, a in enumerate(then)]
    return out


def _stage_matches(trigger: Mapping[str, Any], pipeline_id: str | None, stage_id: str) -> bool:
    return trigger["stage_id"] == stage_id and trigger.get("pipeline_id") in (None, pipeline_id)


def _self_retriggering(trigger: Mapping[str, Any], actions: Sequence[Mapping[str, Any]]) -> str | None:
    """The path of an action that would set off this same rule on the same deal again."""
    for index, action in enumerate(actions):
        path = f"actions[{index}]"
        if trigger["type"] == "stage_entered" and action["type"] == "move":
            if _stage_matches(trigger, action.get("pipeline_id"), action["stage_id"]):
                return path
        if (
            trigger["type"] == "field_set"
            and action["type"] == "fields"
            and trigger["field_id"] in action["fields"]
        ):
            return path
        if action["type"] == "create_deal" and trigger["type"] == "stage_entered" and action.get("stage_id"):
            if _stage_matches(trigger, action["pipeline_id"], action["stage_id"]):
                return path
    return None


def validate_rule(
    session: Session, portal: Portal, doc: Mapping[str, Any], catalogue: Catalogue, *, strict: bool = True
) -> dict[str, Any]:
    """The normalised document, or RuleInvalid naming the first bad field. `strict=False` checks shape and
    placeholders only: a seed template is kept, disabled, before the clinic has mapped its names."""
    check = _Checker(catalogue, portal.settings or {}, strict=strict, portal_kind=portal.kind)
    name = doc.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RuleInvalid("name", "required text")
    trigger = _trigger(doc.get("trigger"), check)
    conditions = _conditions(doc.get("conditions"), check)
    raw_actions = doc.get("actions")
    if not isinstance(raw_actions, list) or not raw_actions:
        raise RuleInvalid("actions", "at least one action")
    actions = [_action(a, f"actions[{i}]", check) for i, a in enumerate(raw_actions)]
    looping = _self_retriggering(trigger, actions)
    if looping is not None:
        raise RuleInvalid(looping, "this action would trigger the rule again on the same deal (a loop)")
    target = doc.get("target", "deal")
    if target not in ("deal", "created"):
        raise RuleInvalid("target", "deal or created")
    if target == "created" and trigger["type"] != "after_rule":
        raise RuleInvalid("target", "only an after_rule rule acts on the deal it created")
    window = doc.get("window_hours", DEFAULT_WINDOW_HOURS)
    if trigger["type"] == "after_rule" and isinstance(trigger.get("rule"), str):
        known = session.scalar(
            select(JourneyRule.id).where(
                JourneyRule.portal_id == portal.id, JourneyRule.key == trigger["rule"]
            )
        )
        if known is None and strict:
            raise RuleInvalid("trigger.rule", f"no rule with key {trigger['rule']!r}")
    return {
        "name": name.strip(),
        "trigger": trigger,
        "conditions": conditions,
        "actions": actions,
        "target": target,
        "window_hours": _int(window, "window_hours", low=1, high=24 * 366),
    }


def create_rule(
    session: Session,
    portal: Portal,
    doc: Mapping[str, Any],
    actor: str,
    catalogue: Catalogue,
    *,
    key: str | None = None,
    template: str | None = None,
) -> JourneyRule:
    enabled = bool(doc.get("enabled", False))
    normalised = validate_rule(session, portal, doc, catalogue, strict=enabled)
    rule = JourneyRule(
        portal_id=portal.id,
        key=key or doc.get("key"),
        template=template,
        name=normalised["name"],
        enabled=enabled,
    )
    session.add(rule)
    session.flush()
    session.add(
        JourneyRuleVersion(
            portal_id=portal.id, rule_id=rule.id, version=1, document=normalised, created_by=actor
        )
    )
    session.flush()
    return rule


def update_rule(
    session: Session,
    portal: Portal,
    rule: JourneyRule,
    changes: Mapping[str, Any],
    actor: str,
    catalogue: Catalogue,
) -> JourneyRule:
    """A PATCH: the given keys over the current document; a changed document is a new version."""
    current = current_version(session, rule).document
    enabled = bool(changes.get("enabled", rule.enabled))
    merged = {**current, **{k: v for k, v in changes.items() if k != "enabled"}}
    normalised = validate_rule(session, portal, merged, catalogue, strict=enabled)
    rule.enabled = enabled
    if normalised != current:
        rule.version += 1
        rule.name = normalised["name"]
        session.add(
            JourneyRuleVersion(
                portal_id=portal.id,
                rule_id=rule.id,
                version=rule.version,
                document=normalised,
                created_by=actor,
            )
        )
    session.flush()
    return rule


def check_loss_reasons_for_crm_source(session: Session, portal_id: int, known: Collection[str]) -> None:
    """Switching loss_reason_source to crm: every enabled rule's loss-reason conditions must name a reason
    the CRM lists (they then compare the deal's own), or RuleInvalid on loss_reason_source naming it."""
    names = {k.casefold() for k in known}
    rules = session.scalars(
        select(JourneyRule).where(JourneyRule.portal_id == portal_id, JourneyRule.enabled.is_(True))
    )
    for rule in rules:
        conditions = current_version(session, rule).document.get("conditions") or {}
        for key in ("loss_reasons", "not_loss_reasons"):
            for name in conditions.get(key) or ():
                if name.strip().casefold() not in names:
                    raise RuleInvalid(
                        "loss_reason_source",
                        f"the CRM has no loss reason {name!r} (rule «{rule.name}», {key})",
                    )


def current_version(session: Session, rule: JourneyRule) -> JourneyRuleVersion:
    version = session.scalar(
        select(JourneyRuleVersion).where(
            JourneyRuleVersion.rule_id == rule.id, JourneyRuleVersion.version == rule.version
        )
    )
    assert version is not None
    return version
