"""Operator payroll: GET /api/v1/payroll/{YYYY-MM}[.csv] (admin and finance), GET/PUT /api/v1/payroll/rates
(admin): the effective-dated rate directory and who receives the monthly statement, GET/PUT
/api/v1/payroll/schedules (admin): weekly and cyclic «Рабочие графики» with their day overrides."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response
from sqlalchemy import select

from ..models import PayrollRate, Portal, PortalUser
from ..models.payroll import PayrollSchedule
from ..payroll import (
    AMOUNT_FIELDS,
    PayrollInvalid,
    RateInput,
    head_user_id,
    month_schedule,
    payroll_csv,
    payroll_statement,
    save_rates,
)
from ..payroll.schedule import ScheduleInput, save_schedules, schedule_document
from .auth import current_portal, current_principal, requires
from .body import load_body, load_query
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_reports import PayrollRatesSchema, PayrollScheduleQuerySchema, PayrollSchedulesSchema

__all__ = ["payroll_api"]

payroll_api = Blueprint("payroll_api", __name__, url_prefix="/api/v1")

TAG = ["payroll"]


def _rates_document(portal: Portal) -> dict[str, Any]:
    rows = db_session().scalars(
        select(PayrollRate)
        .where(PayrollRate.portal_id == portal.id)
        .order_by(PayrollRate.user_id, PayrollRate.effective_from)
    )
    return {
        "head_user_id": head_user_id(portal),
        "rates": [
            {
                "user_id": r.user_id,
                "effective_from": r.effective_from.isoformat(),
                "hourly_rate": str(r.hourly_rate),
                "overtime_rate": str(r.overtime_rate),
                "primary_bonus": str(r.primary_bonus),
                "waiting_list_bonus": str(r.waiting_list_bonus),
                "overtime_basis": r.overtime_basis,
                "mis_names": r.mis_names,
            }
            for r in rows
        ],
    }


@payroll_api.get("/payroll/rates")
@api_doc(summary="The payroll rate directory (amounts as decimal strings)", tags=TAG)
@requires("admin")
def get_rates() -> Any:
    return _rates_document(current_portal())


@payroll_api.put("/payroll/rates")
@api_doc(
    summary="Set operators' rates from a date (upsert by user and date) and the statement's recipient",
    tags=TAG, request=PayrollRatesSchema, errors=(422,),
)  # fmt: skip
@requires("admin")
@mutation
def put_rates() -> Any:
    body = load_body(PayrollRatesSchema())
    session = db_session()
    portal = session.merge(current_portal())
    if "head_user_id" in body and body["head_user_id"] is not None:
        head = session.get(PortalUser, body["head_user_id"])
        if head is None or head.portal_id != portal.id:
            raise PayrollInvalid("head_user_id", f"no user {body['head_user_id']} in this portal")
    entries = [
        RateInput(
            r["user_id"],
            r["effective_from"],
            {name: r[name] for name in AMOUNT_FIELDS},
            r["overtime_basis"],
            tuple(r["mis_names"]),
        )
        for r in body["rates"]
    ]
    save_rates(session, portal, entries, actor=current_principal().actor)
    if "head_user_id" in body:
        portal.settings = {**(portal.settings or {}), "payroll": {"head_user_id": body["head_user_id"]}}
    session.flush()
    return _rates_document(portal)


_PATTERN_FIELDS = ("days", "start", "end", "on_days", "off_days", "anchor")


def _schedules_document(portal_id: int) -> dict[str, Any]:
    rows = db_session().scalars(
        select(PayrollSchedule)
        .where(PayrollSchedule.portal_id == portal_id)
        .order_by(PayrollSchedule.user_id, PayrollSchedule.effective_from)
    )
    return {"schedules": [schedule_document(row) for row in rows]}


@payroll_api.get("/payroll/schedules")
@api_doc(
    summary="Operators' weekly and cyclic work schedules with their day overrides; with ?month=YYYY-MM also "
    "what payroll counts as scheduled that month, per operator and local day",
    tags=TAG, query=PayrollScheduleQuerySchema, errors=(422,),
)  # fmt: skip
@requires("admin")
def get_schedules() -> Any:
    query = load_query(PayrollScheduleQuerySchema())
    document = _schedules_document(current_principal().portal_id)
    if "month" in query:
        session = db_session()
        document["month"] = query["month"]
        document["scheduled"] = month_schedule(session, session.merge(current_portal()), query["month"])
    return document


@payroll_api.put("/payroll/schedules")
@api_doc(
    summary="Set operators' schedules from a date (upsert by user and date): weekly {days, start, end}, "
    "cyclic {on_days, off_days, anchor, start, end} or calendar; overrides [{date[, start, end]}]",
    tags=TAG, request=PayrollSchedulesSchema, errors=(422,),
)  # fmt: skip
@requires("admin")
@mutation
def put_schedules() -> Any:
    body = load_body(PayrollSchedulesSchema())
    session = db_session()
    portal = session.merge(current_portal())
    entries = [
        ScheduleInput(
            item["user_id"],
            item["effective_from"],
            item["kind"],
            {name: item[name] for name in _PATTERN_FIELDS if name in item},
            item["overrides"],
        )
        for item in body["schedules"]
    ]
    save_schedules(session, portal, entries, actor=current_principal().actor)
    return _schedules_document(portal.id)


@payroll_api.get("/payroll/<string:month>")
@api_doc(summary="A month's payroll per operator with its breakdown (JSON, or .csv)", tags=TAG, errors=(422,))
@requires("finance")
def get_payroll(month: str) -> Any:
    base, dot, extension = month.partition(".")
    if dot and extension != "csv":
        raise PayrollInvalid("month", f"must be YYYY-MM or YYYY-MM.csv, got {month!r}")
    session = db_session()
    statement = payroll_statement(session, session.merge(current_portal()), base)
    if extension == "csv":
        return Response(
            payroll_csv(statement), mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="payroll-{base}.csv"'},
        )  # fmt: skip
    return statement
