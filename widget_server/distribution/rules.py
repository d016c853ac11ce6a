"""Distribution rules: validation of a rule document, versioning, matching a deal to the first rule.

A rule document: name, pool (default: the rule's own), priority, match {pipelines, stages, sources,
tags}, members [{user_id, weight, max_open, max_per_day}], strategy, weights_mode (coefficients |
percent), window {days, from, to}, timezone, outside_hours (queue | user) + outside_user_id,
take_within_min, task_text, mirror {responsible, task, note, contact, company, open_tasks},
supervisor_user_ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..errors import DomainError
from ..models import DistributionRule, DistributionRuleVersion, Portal, PortalUser
from .strategies import STRATEGIES

__all__ = [
    "DEFAULT_TASK_TEXT",
    "DealContext",
    "RuleInvalid",
    "create_rule",
    "has_active_rules",
    "match_rule",
    "update_rule",
    "validate_rule",
]

DEFAULT_TASK_TEXT = "Проверить корректность контактных данных и заявку на дубль"
DEFAULT_TAKE_WITHIN_MIN = 15
MIRROR_DEFAULTS = {
    "responsible": True,
    "task": True,
    "note": True,
    # The deal's contacts, its company and its open tasks follow the new responsible (NOVA does the same).
    "contact": True,
    "company": True,
    "open_tasks": True,
}


class RuleInvalid(DomainError):
    code = "validation_failed"


@dataclass(frozen=True)
class DealContext:
    """What a trigger knows of the deal. Sticky owners are CRM user ids of the contact's, its company's
    and the contact's other open deals' responsibles, in that order."""

    pipeline_id: str | None = None
    stage_id: str | None = None
    source: str | None = None
    tags: tuple[str, ...] = ()
    sticky_crm_user_ids: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "pipeline_id": self.pipeline_id,
            "stage_id": self.stage_id,
            "source": self.source,
            "tags": list(self.tags),
            "sticky_crm_user_ids": list(self.sticky_crm_user_ids),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DealContext:
        return cls(
            pipeline_id=doc.get("pipeline_id"),
            stage_id=doc.get("stage_id"),
            source=doc.get("source"),
            tags=tuple(doc.get("tags") or ()),
            sticky_crm_user_ids=tuple(doc.get("sticky_crm_user_ids") or ()),
        )


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate_rule(session: Session, portal: Portal, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The normalised document, or RuleInvalid naming the first bad field."""
    strategy = doc.get("strategy", "round_robin")
    if strategy not in STRATEGIES:
        raise RuleInvalid("strategy", f"must be one of {', '.join(STRATEGIES)}")
    tz = doc.get("timezone") or portal.timezone
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError):
        raise RuleInvalid("timezone", f"not an IANA timezone: {tz!r}") from None
    members: Sequence[Mapping[str, Any]] = doc.get("members") or []
    if not members:
        raise RuleInvalid("members", "at least one member is needed")
    users = {u.id: u for u in session.scalars(select(PortalUser).where(PortalUser.portal_id == portal.id))}
    seen: set[int] = set()
    normalised: list[dict[str, Any]] = []
    for index, member in enumerate(members):
        uid = member.get("user_id")
        path = f"members[{index}]"
        if not isinstance(uid, int) or uid not in users:
            raise RuleInvalid(f"{path}.user_id", f"unknown user {uid!r}")
        if not users[uid].active:
            raise RuleInvalid(f"{path}.user_id", f"user {uid} is inactive")
        if uid in seen:
            raise RuleInvalid(f"{path}.user_id", f"user {uid} is listed twice")
        seen.add(uid)
        weight = member.get("weight", 1)
        if not isinstance(weight, int) or isinstance(weight, bool) or weight < 0:
            raise RuleInvalid(f"{path}.weight", "must be a whole number ≥ 0")
        for cap in ("max_open", "max_per_day"):
            if member.get(cap) is not None and not _positive_int(member[cap]):
                raise RuleInvalid(f"{path}.{cap}", "must be a whole number > 0")
        normalised.append(
            {
                "user_id": uid,
                "weight": weight,
                "max_open": member.get("max_open"),
                "max_per_day": member.get("max_per_day"),
            }
        )
    total = sum(m["weight"] for m in normalised)
    if total == 0:
        raise RuleInvalid("members", "all weights are zero")
    weights_mode = doc.get("weights_mode", "coefficients")
    if weights_mode == "percent" and total != 100:
        raise RuleInvalid("members", f"sum {total}, must be 100")
    match = dict(doc.get("match") or {})
    catalogue: Mapping[str, Sequence[str]] = (portal.settings or {}).get("pipelines") or {}
    if catalogue:
        for pipeline in match.get("pipelines") or ():
            if str(pipeline) not in catalogue:
                raise RuleInvalid("match.pipelines", f"unknown pipeline {pipeline!r}")
        known = {str(s) for stages in catalogue.values() for s in stages}
        for stage in match.get("stages") or ():
            if str(stage) not in known:
                raise RuleInvalid("match.stages", f"unknown stage {stage!r}")
    take = doc.get("take_within_min", DEFAULT_TAKE_WITHIN_MIN)
    if not _positive_int(take):
        raise RuleInvalid("take_within_min", "must be a whole number of minutes > 0")
    outside = doc.get("outside_hours", "queue")
    if outside not in ("queue", "user"):
        raise RuleInvalid("outside_hours", "must be queue or user")
    if outside == "user" and doc.get("outside_user_id") not in users:
        raise RuleInvalid("outside_user_id", "a known user is needed when outside_hours is user")
    return {
        "name": doc.get("name"),
        "pool": doc.get("pool"),
        "priority": doc.get("priority", 100),
        "match": {
            k: [str(v) for v in match.get(k) or ()] for k in ("pipelines", "stages", "sources", "tags")
        },
        "members": normalised,
        "strategy": strategy,
        "weights_mode": weights_mode,
        "window": doc.get("window"),
        "timezone": tz,
        "outside_hours": outside,
        "outside_user_id": doc.get("outside_user_id"),
        "take_within_min": take,
        "task_text": doc.get("task_text") or DEFAULT_TASK_TEXT,
        "mirror": {**MIRROR_DEFAULTS, **(doc.get("mirror") or {})},
        "supervisor_user_ids": list(doc.get("supervisor_user_ids") or ()),
    }


def create_rule(session: Session, portal: Portal, doc: Mapping[str, Any], actor: str) -> DistributionRule:
    normalised = validate_rule(session, portal, doc)
    rule = DistributionRule(
        portal_id=portal.id,
        name=str(doc.get("name")),
        pool="",
        priority=int(normalised["priority"]),
        active=bool(doc.get("active", True)),
        version=1,
    )
    session.add(rule)
    session.flush()
    rule.pool = str(doc.get("pool") or f"rule:{rule.id}")
    normalised["pool"] = rule.pool
    session.add(
        DistributionRuleVersion(
            portal_id=portal.id, rule_id=rule.id, version=1, document=normalised, created_by=actor
        )
    )
    session.flush()
    return rule


def update_rule(
    session: Session, portal: Portal, rule: DistributionRule, doc: Mapping[str, Any], actor: str
) -> DistributionRule:
    normalised = validate_rule(session, portal, doc)
    rule.version += 1
    rule.name = str(doc.get("name") or rule.name)
    rule.priority = int(normalised["priority"])
    rule.pool = str(doc.get("pool") or rule.pool)
    normalised["pool"] = rule.pool
    session.add(
        DistributionRuleVersion(
            portal_id=portal.id, rule_id=rule.id, version=rule.version, document=normalised, created_by=actor
        )
    )
    session.flush()
    return rule


def current_version(session: Session, rule: DistributionRule) -> DistributionRuleVersion:
    version = session.scalar(
        select(DistributionRuleVersion).where(
            DistributionRuleVersion.rule_id == rule.id, DistributionRuleVersion.version == rule.version
        )
    )
    assert version is not None
    return version


def _matches(match: Mapping[str, Sequence[str]], ctx: DealContext) -> bool:
    if match.get("pipelines") and ctx.pipeline_id not in match["pipelines"]:
        return False
    if match.get("stages") and ctx.stage_id not in match["stages"]:
        return False
    if match.get("sources") and ctx.source not in match["sources"]:
        return False
    return not (match.get("tags") and not set(match["tags"]) & set(ctx.tags))


def match_rule(
    session: Session, portal_id: int, ctx: DealContext, rule_id: int | None = None
) -> tuple[DistributionRule, DistributionRuleVersion] | None:
    """The named active rule, or the first active rule (by priority) whose match fits."""
    query = select(DistributionRule).where(
        DistributionRule.portal_id == portal_id, DistributionRule.active.is_(True)
    )
    if rule_id is not None:
        query = query.where(DistributionRule.id == rule_id)
    for rule in session.scalars(query.order_by(DistributionRule.priority, DistributionRule.id)):
        version = current_version(session, rule)
        if rule_id is not None or _matches(version.document["match"], ctx):
            return rule, version
    return None


def active_member_ids(session: Session, portal_id: int) -> set[int]:
    """Portal users who are members of an active rule's current version."""
    rules = session.scalars(
        select(DistributionRule).where(
            DistributionRule.portal_id == portal_id, DistributionRule.active.is_(True)
        )
    )
    return {int(m["user_id"]) for rule in rules for m in current_version(session, rule).document["members"]}


def has_active_rules(session: Session, portal_id: int) -> bool:
    """Cheap gate for CRM event reactions: a clinic that does not distribute costs no CRM read."""
    return (
        session.scalar(
            select(DistributionRule.id)
            .where(DistributionRule.portal_id == portal_id, DistributionRule.active.is_(True))
            .limit(1)
        )
        is not None
    )
