"""The lead-distribution API: rules, shifts, the operators' board and status, assignment with its
decision, the decision log, the fairness report and the simulator.

Roles: staff (operators) set only their own status and see a deal's explanation; supervisors (and
admins) edit rules and shifts, set anyone's status, force a reassignment, read reports and simulate.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from flask import Blueprint, Response
from sqlalchemy import func, select

from connectors.errors import ConnectorError

from .. import clock, runtime
from ..distribution import DealContext, assign_deal, create_rule, mark_taken, update_rule
from ..distribution.crm_links import sticky_owners
from ..distribution.engine import as_dicts
from ..distribution.operators import add_shift, heartbeat, set_status
from ..distribution.report import fairness, fairness_csv
from ..distribution.rules import RuleInvalid, current_version, validate_rule
from ..distribution.service import member_views
from ..errors import Forbidden, NotFound, ValidationFailed
from ..models import (
    DistributionAssignment,
    DistributionDecision,
    DistributionPool,
    DistributionRule,
    OperatorShift,
    OperatorState,
    Portal,
    PortalUser,
)
from ..registry import crm_for
from .auth import current_portal, current_principal, requires
from .body import load_body, load_query
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_distribution import (
    ActivateSchema,
    AssignSchema,
    DecisionQuerySchema,
    ReportQuerySchema,
    RuleSchema,
    ShiftSchema,
    SimulateSchema,
    StatusSchema,
)

__all__ = ["distribution_api"]

distribution_api = Blueprint("distribution_api", __name__, url_prefix="/api/v1")
log = logging.getLogger(__name__)

TAG = ["distribution"]


def _portal() -> Portal:
    return db_session().merge(current_portal())


def _actor() -> str:
    return current_principal().actor


def rule_document(rule: DistributionRule) -> dict[str, Any]:
    version = current_version(db_session(), rule)
    return {
        "id": rule.id,
        "name": rule.name,
        "pool": rule.pool,
        "priority": rule.priority,
        "active": rule.active,
        "version": rule.version,
        "version_id": version.id,
        "document": version.document,
        "updated_at": rule.updated_at,
    }


def decision_document(decision: DistributionDecision) -> dict[str, Any]:
    return {
        "id": decision.id,
        "deal_id": decision.deal_id,
        "pool_id": decision.pool_id,
        "seq": decision.seq,
        "rule_version_id": decision.rule_version_id,
        "rule": (decision.record or {}).get("rule"),
        "trigger": decision.trigger,
        "strategy": decision.strategy,
        "chosen_user_id": decision.chosen_user_id,
        "reason": decision.reason,
        "candidates": as_dicts((decision.record or {}).get("candidates") or []),
        "previous_decision_id": decision.previous_decision_id,
        "actor": decision.actor,
        "at": decision.at,
        "hash": decision.hash,
    }


def _rule(rule_id: int) -> DistributionRule:
    rule = db_session().get(DistributionRule, rule_id)
    if rule is None or rule.portal_id != current_principal().portal_id:
        raise NotFound(f"rule {rule_id} not found", fields={"rule_id": ["unknown rule"]})
    return rule


def _user(user_id: int, field: str = "user_id") -> PortalUser:
    user = db_session().get(PortalUser, user_id)
    if user is None or user.portal_id != current_principal().portal_id:
        raise NotFound(f"user {user_id} not found", fields={field: [f"unknown user {user_id}"]})
    return user


# --- rules -------------------------------------------------------------------------------------------------


@distribution_api.get("/distribution/rules")
@api_doc(summary="Distribution rules (current versions)", tags=TAG)
@requires("supervisor")
def list_rules() -> Any:
    rules = db_session().scalars(
        select(DistributionRule)
        .where(DistributionRule.portal_id == current_principal().portal_id)
        .order_by(DistributionRule.priority, DistributionRule.id)
    )
    return {"rules": [rule_document(r) for r in rules]}


@distribution_api.post("/distribution/rules")
@api_doc(summary="Create a distribution rule", tags=TAG, request=RuleSchema, status=201)
@requires("supervisor")
@mutation
def post_rule() -> Any:
    body = load_body(RuleSchema())
    rule = create_rule(db_session(), _portal(), body, _actor())
    return rule_document(rule), 201


@distribution_api.get("/distribution/rules/<int:rule_id>")
@api_doc(summary="One rule", tags=TAG, errors=(404,))
@requires("supervisor")
def get_rule(rule_id: int) -> Any:
    return rule_document(_rule(rule_id))


@distribution_api.put("/distribution/rules/<int:rule_id>")
@api_doc(
    summary="Edit a rule (a new version; decisions cite theirs)", tags=TAG, request=RuleSchema, errors=(404,)
)
@requires("supervisor")
@mutation
def put_rule(rule_id: int) -> Any:
    body = load_body(RuleSchema())
    rule = update_rule(db_session(), _portal(), _rule(rule_id), body, _actor())
    return rule_document(rule)


@distribution_api.post("/distribution/rules/<int:rule_id>/activate")
@api_doc(summary="Activate or deactivate a rule", tags=TAG, request=ActivateSchema, errors=(404,))
@requires("supervisor")
@mutation
def activate_rule(rule_id: int) -> Any:
    body = load_body(ActivateSchema())
    rule = _rule(rule_id)
    rule.active = body["active"]
    db_session().flush()
    return rule_document(rule)


# --- shifts ------------------------------------------------------------------------------------------------


def shift_document(shift: OperatorShift) -> dict[str, Any]:
    return {
        "id": shift.id,
        "user_id": shift.user_id,
        "kind": shift.kind,
        "spec": shift.spec,
        "starts_at": shift.starts_at,
        "ends_at": shift.ends_at,
        "created_by": shift.created_by,
    }


@distribution_api.get("/distribution/shifts")
@api_doc(summary="Shift patterns, calendar entries and absences", tags=TAG)
@requires("supervisor")
def list_shifts() -> Any:
    shifts = db_session().scalars(
        select(OperatorShift)
        .where(OperatorShift.portal_id == current_principal().portal_id)
        .order_by(OperatorShift.user_id, OperatorShift.id)
    )
    return {"shifts": [shift_document(s) for s in shifts]}


_SPEC_FIELDS = {
    "weekly": ("days", "start", "end"),
    "cyclic": ("on_days", "off_days", "anchor", "start", "end"),
    "entry": (),
    "absence": (),
}


@distribution_api.post("/distribution/shifts")
@api_doc(summary="Add a shift pattern, calendar entry or absence", tags=TAG, request=ShiftSchema, status=201)
@requires("supervisor")
@mutation
def post_shift() -> Any:
    body = load_body(ShiftSchema())
    kind = body["kind"]
    for name in _SPEC_FIELDS[kind]:
        if body.get(name) is None:
            raise ValidationFailed.for_field(name, f"required for a {kind} shift")
    if kind in ("entry", "absence"):
        for name in ("starts_at", "ends_at"):
            if body.get(name) is None:
                raise ValidationFailed.for_field(name, f"required for a {kind}")
    user = _user(body["user_id"])
    spec: dict[str, Any] = {name: body[name] for name in _SPEC_FIELDS[kind]}
    if "anchor" in spec:
        spec["anchor"] = spec["anchor"].isoformat()
    if body.get("timezone"):
        spec["timezone"] = body["timezone"]
    if body.get("reason"):
        spec["reason"] = body["reason"]
    shift = add_shift(
        db_session(), _portal(), user, kind, spec,
        starts_at=body.get("starts_at"), ends_at=body.get("ends_at"), actor=_actor(),
    )  # fmt: skip
    return shift_document(shift), 201


# --- operators ---------------------------------------------------------------------------------------------


@distribution_api.get("/distribution/operators")
@api_doc(summary="The operators' board: status, load, today's count and the queue", tags=TAG)
@requires("staff")
def operators_board() -> Any:
    session = db_session()
    portal = current_portal()
    now = clock.now_utc()
    users = session.scalars(
        select(PortalUser)
        .where(PortalUser.portal_id == portal.id, PortalUser.active.is_(True))
        .order_by(PortalUser.id)
    ).all()
    load = dict(
        session.execute(
            select(DistributionAssignment.user_id, func.count())
            .where(
                DistributionAssignment.portal_id == portal.id,
                DistributionAssignment.state.in_(("assigned", "taken")),
            )
            .group_by(DistributionAssignment.user_id)
        ).all()
    )
    views = {
        v.user_id: v
        for v in member_views(
            session, portal, [{"user_id": u.id, "weight": 1} for u in users], {}, now, now.date().isoformat()
        )
    }
    states = {
        s.user_id: s
        for s in session.scalars(select(OperatorState).where(OperatorState.portal_id == portal.id))
    }
    queue = dict(
        session.execute(
            select(DistributionPool.name, func.count())
            .join(DistributionAssignment, DistributionAssignment.pool_id == DistributionPool.id)
            .where(DistributionPool.portal_id == portal.id, DistributionAssignment.state == "queued")
            .group_by(DistributionPool.name)
        ).all()
    )
    return {
        "operators": [
            {
                "id": u.id,
                "name": u.name,
                "crm_user_id": u.crm_user_id,
                "status": views[u.id].status,
                "paused_until": states[u.id].paused_until if u.id in states else None,
                "reason": states[u.id].reason if u.id in states else None,
                "load": int(load.get(u.id, 0)),
            }
            for u in users
        ],
        "queue": queue,
    }


@distribution_api.post("/distribution/operators/<int:user_id>/status")
@api_doc(summary="Start/end the working day or pause (operators: only their own)", tags=TAG,
         request=StatusSchema, errors=(404,))  # fmt: skip
@requires("staff")
@mutation
def post_status(user_id: int) -> Any:
    body = load_body(StatusSchema())
    principal = current_principal()
    user = _user(user_id)
    if not principal.has("supervisor") and principal.crm_user_id != user.crm_user_id:
        raise Forbidden("operators set only their own status", code="not_your_status")
    if body.get("minutes") is not None and body["state"] != "paused":
        raise ValidationFailed.for_field("minutes", "only a pause has minutes")
    row = set_status(
        db_session(), _portal(), user, body["state"], minutes=body.get("minutes"), reason=body.get("reason"),
        source=principal.via, actor=principal.actor,
    )  # fmt: skip
    return {"user_id": user.id, "state": row.state, "paused_until": row.paused_until, "since": row.since}


@distribution_api.post("/distribution/operators/<int:user_id>/heartbeat")
@api_doc(summary="The operator is active (keeps a self-started day from ending after silence)", tags=TAG,
         errors=(404,))  # fmt: skip
@requires("staff")
@mutation
def post_heartbeat(user_id: int) -> Any:
    principal = current_principal()
    user = _user(user_id)
    if not principal.has("supervisor") and principal.crm_user_id != user.crm_user_id:
        raise Forbidden("operators report only their own activity", code="not_your_status")
    heartbeat(db_session(), _portal(), user)
    return {"user_id": user.id, "seen_at": clock.now_utc()}


# --- assignment and decisions ------------------------------------------------------------------------------


def _sticky_from_crm(session: Any, portal_id: int, deal_id: str) -> tuple[str, ...]:
    """The caller named no sticky owner (an explicit [] means none): read them from the CRM, for a lead not
    decided yet, so a repeated call costs no CRM read. A deal the CRM lacks, or a CRM that cannot answer
    now, leaves the choice to the rule rather than failing the assignment."""
    decided = session.scalar(
        select(DistributionAssignment.id).where(
            DistributionAssignment.portal_id == portal_id,
            DistributionAssignment.deal_id == deal_id,
            DistributionAssignment.state != "unmatched",
        )
    )
    if decided is not None:
        return ()
    crm = crm_for(_portal(), runtime.current())
    # End our read before the CRM call: on SQLite a transaction here holds the write lock, and the client
    # may write in one of its own (a refreshed token, a portal marked for re-auth) and would wait on it.
    session.rollback()
    try:
        return sticky_owners(crm, crm.get_deal(deal_id))
    except ConnectorError as exc:
        log.info("no sticky owner read for deal %s: %s", deal_id, exc)
        return ()


@distribution_api.post("/deals/<deal_id>/assign")
@api_doc(summary="Assign the deal to an operator (202 when it waits in the queue)", tags=TAG,
         request=AssignSchema, errors=(404,))  # fmt: skip
@requires("staff")
@mutation
def post_assign(deal_id: str) -> Any:
    body = load_body(AssignSchema())
    principal = current_principal()
    if body["force"] and not principal.has("supervisor"):
        raise Forbidden("only a supervisor may force a reassignment", code="missing_role")
    session = db_session()
    sticky = body.get("sticky_crm_user_ids")
    if sticky is None and not body["force"]:
        sticky = _sticky_from_crm(session, principal.portal_id, deal_id)
    if body.get("rule_id") is not None:
        rule = session.get(DistributionRule, body["rule_id"])
        if rule is None or rule.portal_id != principal.portal_id or not rule.active:
            raise ValidationFailed.for_field("rule_id", "unknown or inactive rule")
    context = DealContext(
        pipeline_id=body.get("pipeline_id"),
        stage_id=body.get("stage_id"),
        source=body.get("source"),
        tags=tuple(body.get("tags") or ()),
        sticky_crm_user_ids=tuple(sticky or ()),
    )
    result = assign_deal(
        session, _portal(), deal_id, trigger="api", context=context, rule_id=body.get("rule_id"),
        force=body["force"], actor=principal.actor,
    )  # fmt: skip
    document = {
        "deal_id": deal_id,
        "state": result.assignment.state,
        "user_id": result.assignment.user_id,
        "existing": result.existing,
        "decision": decision_document(result.decision) if result.decision else None,
    }
    return document, 202 if result.queued else 200


@distribution_api.post("/deals/<deal_id>/assign/taken")
@api_doc(
    summary="The assignee took the lead into work (no redistribution after this)", tags=TAG, errors=(404,)
)
@requires("staff")
@mutation
def post_taken(deal_id: str) -> Any:
    principal = current_principal()
    session = db_session()
    assignment = session.scalar(
        select(DistributionAssignment).where(
            DistributionAssignment.portal_id == principal.portal_id, DistributionAssignment.deal_id == deal_id
        )
    )
    if assignment is None:
        raise NotFound("this deal was not distributed", fields={"deal_id": ["no assignment"]})
    if not principal.has("supervisor"):
        assignee = session.get(PortalUser, assignment.user_id) if assignment.user_id else None
        if assignee is None or assignee.crm_user_id != principal.crm_user_id:
            raise Forbidden("only the assignee marks a lead taken", code="not_your_lead")
    if assignment.state not in ("assigned", "taken"):
        raise ValidationFailed.for_field("deal_id", f"the lead is {assignment.state}, not assigned")
    mark_taken(session, principal.portal_id, deal_id)
    return {"deal_id": deal_id, "state": assignment.state, "user_id": assignment.user_id,
            "taken_at": assignment.taken_at}  # fmt: skip


@distribution_api.get("/distribution/decisions")
@api_doc(
    summary="Decisions with their candidate tables (staff: one deal's)", tags=TAG, query=DecisionQuerySchema
)
@requires("staff")
def list_decisions() -> Any:
    query = load_query(DecisionQuerySchema())
    principal = current_principal()
    if not principal.has("supervisor") and not query.get("deal_id"):
        raise Forbidden("operators see the decisions of one deal: give deal_id", code="missing_role")
    stmt = select(DistributionDecision).where(DistributionDecision.portal_id == principal.portal_id)
    if query.get("deal_id"):
        stmt = stmt.where(DistributionDecision.deal_id == query["deal_id"])
    if query.get("user_id") is not None:
        stmt = stmt.where(DistributionDecision.chosen_user_id == query["user_id"])
    if query.get("from"):
        stmt = stmt.where(DistributionDecision.at >= query["from"])
    if query.get("to"):
        stmt = stmt.where(DistributionDecision.at < query["to"])
    rows = db_session().scalars(stmt.order_by(DistributionDecision.id).limit(1000))
    return {"decisions": [decision_document(d) for d in rows]}


@distribution_api.get("/distribution/report")
@api_doc(summary="Fairness per user for a pool and period (JSON or CSV)", tags=TAG, query=ReportQuerySchema)
@requires("supervisor")
def get_report() -> Any:
    query = load_query(ReportQuerySchema())
    if query["to"] <= query["from"]:
        raise ValidationFailed.for_field("to", "must be after from")
    report = fairness(db_session(), current_principal().portal_id, query["pool"], query["from"], query["to"])
    if query["format"] == "csv":
        return Response(
            "\ufeff" + fairness_csv(report),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="fairness-{query["pool"]}.csv"'},
        )
    return report


# --- simulator ---------------------------------------------------------------------------------------------

SIMULATION_TTL_S = 3600


@distribution_api.post("/distribution/simulate")
@api_doc(summary="Replay the last N days against draft rules (a job)", tags=TAG, request=SimulateSchema,
         status=202)  # fmt: skip
@requires("supervisor")
@mutation
def post_simulate() -> Any:
    body = load_body(SimulateSchema())
    portal = _portal()
    for index, rule in enumerate(body["rules"]):
        try:
            validate_rule(db_session(), portal, rule)
        except RuleInvalid as exc:
            raise ValidationFailed.for_field(f"rules[{index}].{exc.field}", exc.reason) from None
    job = (
        runtime.current()
        .queue("default")
        .enqueue(
            "widget_server.jobs.distribution.simulate_job",
            portal.id,
            _jsonable(body["rules"]),
            body["days"],
            clock.now_utc().isoformat(),
            result_ttl=SIMULATION_TTL_S,
        )
    )
    return {"job_id": job.id, "state": "queued"}, 202


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value


@distribution_api.get("/distribution/simulate/<job_id>")
@api_doc(summary="A simulation's state and result", tags=TAG, errors=(404,))
@requires("supervisor")
def get_simulation(job_id: str) -> Any:
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    try:
        job = Job.fetch(job_id, connection=runtime.current().redis)
    except NoSuchJobError:
        raise NotFound("no such simulation", fields={"job_id": ["unknown or expired"]}) from None
    if not job.args or job.args[0] != current_principal().portal_id:
        raise NotFound("no such simulation", fields={"job_id": ["unknown or expired"]})
    status = job.get_status()
    return {
        "job_id": job.id,
        "state": str(status.value if status else "unknown"),
        "result": job.return_value(),
    }
