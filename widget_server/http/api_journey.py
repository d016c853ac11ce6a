"""The patient journey API: rules (admin), the seed templates, a dry run, the firings with what their
outbox jobs did, and the patient's answers (staff: an operator or a bot passes them on).

A rule is checked against the portal's CRM: pipelines and stages from `list_pipelines` where the client
has it (else the portal's `pipelines` setting), deal fields where the client lists them, users always.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select

from .. import clock, runtime
from ..errors import NotFound, ValidationFailed
from ..journey import Catalogue, create_rule, install_templates, record_answer, replan_rule, update_rule
from ..journey.engine import backfill_rule, normalise_answer, on_confirm_mode_change, preview
from ..journey.hooks import wake_evaluation
from ..journey.rules import check_loss_reasons_for_crm_source, current_version
from ..journey.settings import validate_journey_settings
from ..journey.templates import SEED002_TEMPLATES
from ..models import JourneyRule, OutboxJob, Portal, RuleFiring
from ..registry import crm_for
from .auth import current_portal, current_principal, requires
from .body import load_body, load_query, read_json_object
from .crm_errors import crm_errors_as_api_errors
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_journey import (
    JourneyAnswerSchema,
    JourneyFiringQuerySchema,
    JourneyPreviewQuerySchema,
    JourneyRulePatchSchema,
    JourneyRuleSchema,
)

__all__ = ["journey_api"]

journey_api = Blueprint("journey_api", __name__, url_prefix="/api/v1/journey")

TAG = ["journey"]


def _portal() -> Portal:
    return db_session().merge(current_portal())


def _catalogue(portal: Portal) -> Catalogue:
    pipelines: dict[str, list[str]] | None = None
    fields: set[str] | None = None
    loss_reasons: list[str] | None = None
    failure_stages: dict[str, list[str]] | None = None
    if portal.kind == "sandbox":
        # Free-form pipelines and fields there; its users are read in this request's own transaction (a
        # second one would wait for this one's write lock on SQLite).
        from ..sandbox.models import SandboxUser

        users = {
            str(u)
            for u in db_session().scalars(
                select(SandboxUser.id).where(
                    SandboxUser.portal_id == portal.id, SandboxUser.is_active.is_(True)
                )
            )
        }
    else:
        crm: Any = crm_for(portal, runtime.current())
        with crm_errors_as_api_errors("catalogue"):
            users = {u.id for u in crm.list_users() if u.is_active}
            if hasattr(crm, "list_pipelines"):
                pipelines = {p.id: [s.id for s in p.stages] for p in crm.list_pipelines()}
            if hasattr(crm, "list_deal_fields"):
                fields = {str(d["id"]) for d in crm.list_deal_fields()}
            elif hasattr(crm, "field_defs"):
                fields = set(crm.field_defs())
            if hasattr(crm, "loss_reasons"):
                loss_reasons = crm.loss_reasons()
            if hasattr(crm, "failure_stages"):
                failure_stages = crm.failure_stages()
    if pipelines is None and (portal.settings or {}).get("pipelines"):
        pipelines = {str(k): [str(s) for s in v] for k, v in portal.settings["pipelines"].items()}
    return Catalogue(
        pipelines=pipelines,
        users=users,
        fields=fields,
        loss_reasons=loss_reasons,
        failure_stages=failure_stages,
    )


def _rule(rule_id: int) -> JourneyRule:
    rule = db_session().get(JourneyRule, rule_id)
    if rule is None or rule.portal_id != current_principal().portal_id:
        raise NotFound(f"rule {rule_id} not found", fields={"rule_id": ["unknown rule"]})
    return rule


def rule_document(rule: JourneyRule) -> dict[str, Any]:
    version = current_version(db_session(), rule)
    return {
        "id": rule.id,
        "key": rule.key,
        "template": rule.template,
        "name": rule.name,
        "enabled": rule.enabled,
        "version": rule.version,
        "version_id": version.id,
        "document": version.document,
        "updated_at": rule.updated_at.isoformat(),
    }


@journey_api.get("/rules")
@api_doc(summary="Journey rules (current versions)", tags=TAG)
@requires("admin")
def list_rules() -> Any:
    rules = db_session().scalars(
        select(JourneyRule)
        .where(JourneyRule.portal_id == current_principal().portal_id)
        .order_by(JourneyRule.id)
    )
    return {"rules": [rule_document(r) for r in rules]}


@journey_api.post("/rules")
@api_doc(summary="Create a journey rule", tags=TAG, request=JourneyRuleSchema, status=201, errors=(502, 503))
@requires("admin")
@mutation
def post_rule() -> Any:
    body = load_body(JourneyRuleSchema())
    portal = _portal()
    session = db_session()
    rule = create_rule(session, portal, body, current_principal().actor, _catalogue(portal))
    if rule.enabled:
        backfill_rule(session, portal, rule.id, clock.now_utc())
    return rule_document(rule), 201


@journey_api.patch("/rules/<int:rule_id>")
@api_doc(
    summary="Edit or enable a rule (a new version; decided occurrences are never fired again)",
    tags=TAG,
    request=JourneyRulePatchSchema,
    errors=(404, 502, 503),
)
@requires("admin")
@mutation
def patch_rule(rule_id: int) -> Any:
    body = load_body(JourneyRulePatchSchema())
    portal = _portal()
    session = db_session()
    rule = _rule(rule_id)
    was_enabled = rule.enabled
    rule = update_rule(session, portal, rule, body, current_principal().actor, _catalogue(portal))
    replan_rule(session, portal, rule.id, clock.now_utc())
    if rule.enabled and not was_enabled:
        backfill_rule(session, portal, rule.id, clock.now_utc())
    return rule_document(rule)


@journey_api.get("/settings")
@api_doc(summary="Journey settings: brand, quiet hours, message channel, roles, answer fields", tags=TAG)
@requires("admin")
def get_journey_settings() -> Any:
    return {"settings": dict((current_portal().settings or {}).get("journey") or {})}


@journey_api.put("/settings")
@api_doc(
    summary="Change journey settings (keys given replace theirs); users and fields checked against the CRM",
    tags=TAG,
    errors=(502, 503),
)
@requires("admin")
@mutation
def put_journey_settings() -> Any:
    body = read_json_object()
    portal = _portal()
    catalogue = _catalogue(portal)
    clean = validate_journey_settings(body, users=catalogue.users, fields=catalogue.fields)
    if clean.get("loss_reason_source") == "crm" and catalogue.loss_reasons is not None:
        check_loss_reasons_for_crm_source(db_session(), portal.id, catalogue.loss_reasons)
    settings = dict(portal.settings or {})
    before = (settings.get("journey") or {}).get("confirm_d1_mode") or "message"
    settings["journey"] = {**(settings.get("journey") or {}), **clean}
    portal.settings = settings
    db_session().flush()
    if (settings["journey"].get("confirm_d1_mode") or "message") != before:
        on_confirm_mode_change(db_session(), portal, clock.now_utc())
    return {"settings": settings["journey"]}


@journey_api.get("/templates")
@api_doc(summary="The seed 002 templates and whether each rule is installed and enabled", tags=TAG)
@requires("admin")
def list_templates() -> Any:
    installed = {
        r.key: r
        for r in db_session().scalars(
            select(JourneyRule).where(JourneyRule.portal_id == current_principal().portal_id)
        )
    }
    return {
        "templates": [
            {
                "template": name,
                "rules": [
                    {
                        "key": doc["key"],
                        "name": doc["name"],
                        "document": doc,
                        "rule_id": installed[doc["key"]].id if doc["key"] in installed else None,
                        "enabled": bool(doc["key"] in installed and installed[doc["key"]].enabled),
                    }
                    for doc in docs
                ],
            }
            for name, docs in SEED002_TEMPLATES.items()
        ]
    }


@journey_api.post("/templates")
@api_doc(summary="Install the seed templates the portal lacks, disabled until mapped", tags=TAG)
@requires("admin")
@mutation
def post_templates() -> Any:
    added = install_templates(db_session(), _portal(), current_principal().actor)
    return {"installed": added}


@journey_api.get("/rules/<int:rule_id>/preview")
@api_doc(
    summary="Dry run: what the rule would do in the next days", tags=TAG, query=JourneyPreviewQuerySchema
)
@requires("admin")
def get_preview(rule_id: int) -> Any:
    query = load_query(JourneyPreviewQuerySchema())
    rule = _rule(rule_id)
    items = preview(db_session(), current_portal(), rule.id, clock.now_utc(), query["days"])
    return {"rule_id": rule.id, "days": query["days"], "occurrences": items}


def firing_document(firing: RuleFiring, jobs: list[OutboxJob]) -> dict[str, Any]:
    return {
        "id": firing.id,
        "rule_id": firing.rule_id,
        "rule_version_id": firing.rule_version_id,
        "occurrence": firing.occurrence,
        "deal_id": firing.deal_id,
        "appointment_id": firing.appointment_id,
        "planned_at": firing.planned_at.isoformat(),
        "due_at": firing.due_at.isoformat(),
        "outcome": firing.state,
        "reason": firing.reason,
        "decided_at": firing.decided_at and firing.decided_at.isoformat(),
        "created_deal_id": (firing.context or {}).get("created_deal_id"),
        "jobs": [
            {
                "id": j.id,
                "operation": j.operation,
                "state": j.state,
                "attempts": j.attempts,
                "error": j.last_error,
            }
            for j in jobs
        ],
    }


@journey_api.get("/firings")
@api_doc(
    summary="Decided and scheduled occurrences with their CRM jobs", tags=TAG, query=JourneyFiringQuerySchema
)
@requires("admin")
def list_firings() -> Any:
    query = load_query(JourneyFiringQuerySchema())
    session = db_session()
    portal_id = current_principal().portal_id
    statement = select(RuleFiring).where(RuleFiring.portal_id == portal_id)
    if "deal_id" in query:
        statement = statement.where(RuleFiring.deal_id == query["deal_id"])
    if "rule_id" in query:
        statement = statement.where(RuleFiring.rule_id == query["rule_id"])
    if query.get("outcome") == "failed":
        failed = select(OutboxJob.origin).where(OutboxJob.portal_id == portal_id, OutboxJob.state == "failed")
        origins = {o for o in session.scalars(failed) if o and o.startswith("journey:")}
        statement = statement.where(RuleFiring.id.in_([int(o.split(":")[1]) for o in origins]))
    elif "outcome" in query:
        statement = statement.where(RuleFiring.state == query["outcome"])
    firings = list(session.scalars(statement.order_by(RuleFiring.id.desc()).limit(query["limit"])))
    by_origin: dict[str, list[OutboxJob]] = {}
    origins = [f"journey:{f.id}" for f in firings]
    if origins:
        for job in session.scalars(
            select(OutboxJob)
            .where(OutboxJob.portal_id == portal_id, OutboxJob.origin.in_(origins))
            .order_by(OutboxJob.id)
        ):
            by_origin.setdefault(job.origin or "", []).append(job)
    return {"firings": [firing_document(f, by_origin.get(f"journey:{f.id}", [])) for f in firings]}


@journey_api.post("/answers")
@api_doc(
    summary="A patient's answer (confirmation yes/no, NPS 0–10, «+»); the same answer again changes nothing",
    tags=TAG,
    request=JourneyAnswerSchema,
    status=201,
)
@requires("staff")
@mutation
def post_answer() -> Any:
    body = load_body(JourneyAnswerSchema())
    value = normalise_answer(body["kind"], str(body["value"]))
    if value is None:
        raise ValidationFailed.for_field("value", f"not an answer to {body['kind']}: {body['value']!r}")
    session = db_session()
    portal = _portal()
    answer, created = record_answer(
        session, portal, body["deal_id"], body["kind"], value, "api", clock.now_utc()
    )
    if created:
        wake_evaluation(session, portal.id)
    document = {
        "id": answer.id,
        "deal_id": answer.deal_id,
        "kind": answer.kind,
        "value": answer.value,
        "received_at": answer.received_at.isoformat(),
        "duplicate": not created,
    }
    return document, 201 if created else 200
