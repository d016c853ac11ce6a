"""The in-patient API (seed 000): buildings and occupancy, admission into a building, prescriptions and
medication rounds, examinations, discharge request and discharge documents.

Who sees what is decided here, per endpoint: general information (where the patient lies, who the
representative is) for every staff role; prescriptions, rounds and examinations only with the `medical`
capability (nurse, doctor, admin) — finance is refused; money stays behind the ledger's finance endpoints,
which refuse the medical roles.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask import Blueprint, Response, request
from sqlalchemy import select

from connectors.errors import ConnectorError

from .. import clock, runtime
from ..clock import local_today
from ..errors import Forbidden, ValidationFailed
from ..inpatient import (
    BuildingDraft,
    ExaminationDraft,
    InpatientAdmission,
    PrescriptionDraft,
    Representative,
    add_examination,
    add_prescription,
    admit_inpatient,
    create_building,
    current_stay,
    documents_done,
    due_rounds,
    expect_arrival,
    occupancy,
    reason_catalogue,
    record_round,
    request_discharge,
    round_id,
    stop_prescription,
)
from ..inpatient.arrivals import inpatient_business
from ..inpatient.examinations import NextStepDraft
from ..inpatient.export import round_records, rounds_csv
from ..ledger import Actor, stay_summary
from ..ledger.mirror import mirror_entries
from ..models import (
    ArrivalRequest,
    Building,
    Examination,
    ExpectedArrival,
    InpatientStay,
    LedgerEntry,
    Portal,
    PortalUser,
    Prescription,
    RoundRecord,
    StayAccount,
    Ward,
)
from ..models.portal import MEDICAL, has_medical
from ..money import AmountError, minor_to_decimal, parse_amount
from ..registry import UnsupportedPortal, crm_for
from .auth import current_portal, current_principal, requires
from .body import load_body, load_query
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_inpatient import (
    AdmissionSchema,
    ArrivalDocumentSchema,
    ArrivalSchema,
    BuildingSchema,
    DischargeDocumentsSchema,
    DischargeRequestSchema,
    DueQuerySchema,
    DueRoundSchema,
    ExaminationSchema,
    InpatientBusinessSchema,
    InpatientStaySchema,
    OccupancyQuerySchema,
    PrescriptionSchema,
    PrescriptionStopSchema,
    RoundGivenSchema,
    RoundNotGivenSchema,
    RoundRecordSchema,
)

__all__ = ["inpatient_api"]

P = ParamSpec("P")
R = TypeVar("R")

inpatient_api = Blueprint("inpatient_api", __name__, url_prefix="/api/v1")

ERRORS = (403, 404, 409)
TAGS = ["inpatient"]


def requires_medical(view: Callable[P, R]) -> Callable[P, R]:
    """`requires` for medical records: the medical roles and admin (who holds no nurse's role), 403 for
    everyone else, finance included."""

    @requires("viewer")
    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not has_medical(current_principal().roles):
            raise Forbidden(f"this action needs the {MEDICAL} role", code="missing_role")
        return view(*args, **kwargs)

    wrapper.required_role = MEDICAL  # type: ignore[attr-defined]
    return wrapper


def _actor() -> Actor:
    principal = current_principal()
    return Actor(label=principal.actor, source=principal.via, roles=principal.roles)


def _key(prefix: str) -> str:
    client_key = request.headers.get("Idempotency-Key")
    return f"{prefix}:{client_key}" if client_key else f"{prefix}:{uuid.uuid4().hex}"


def _portal() -> Portal:
    return db_session().merge(current_portal())


def _phone(raw: str | None) -> str | None:
    from connectors.phones import e164

    if not raw:
        return None
    normalised = e164(raw)
    if normalised is None:
        raise ValidationFailed.for_field("representative.phone", f"not a valid phone number: {raw!r}")
    return normalised


# --- buildings and occupancy ---------------------------------------------------------------------------


def _building_document(building: Building) -> dict[str, Any]:
    wards = db_session().scalars(select(Ward).where(Ward.building_id == building.id).order_by(Ward.id))
    return BuildingSchema().dump(
        {
            **{c: getattr(building, c) for c in (
                "id", "name", "pipeline_id", "admission_stage_id", "won_stage_id", "manager_user_id",
                "nurse_user_id", "profiles")},
            "wards": [{"id": w.id, "name": w.name, "beds": w.beds} for w in wards],
        }
    )  # fmt: skip


@inpatient_api.post("/buildings")
@api_doc(summary="Add a building (pipeline, profiles, wards)", tags=TAGS, request=BuildingSchema, status=201,
         response=BuildingSchema, errors=ERRORS)  # fmt: skip
@requires("admin")
@mutation
def post_building() -> Any:
    body = load_body(BuildingSchema())
    building = create_building(
        db_session(),
        _portal(),
        BuildingDraft(
            name=body["name"],
            pipeline_id=body["pipeline_id"],
            admission_stage_id=body["admission_stage_id"],
            won_stage_id=body["won_stage_id"],
            manager_user_id=body["manager_user_id"],
            nurse_user_id=body.get("nurse_user_id"),
            profiles=tuple(body["profiles"]),
            wards=tuple((w["name"], w["beds"]) for w in body["wards"]),
        ),
    )
    return _building_document(building), 201


@inpatient_api.get("/buildings")
@api_doc(summary="Buildings with their wards and profiles", tags=TAGS)
@requires("staff")
def get_buildings() -> Any:
    portal = current_portal()
    buildings = db_session().scalars(
        select(Building).where(Building.portal_id == portal.id, Building.active).order_by(Building.id)
    )
    return {"buildings": [_building_document(b) for b in buildings]}


@inpatient_api.get("/buildings/occupancy")
@api_doc(summary="Beds taken and free per building and day", tags=TAGS, query=OccupancyQuerySchema)
@requires("staff")
def get_occupancy() -> Any:
    query = load_query(OccupancyQuerySchema())
    rows = occupancy(db_session(), current_portal(), query["date"], query["days"], query.get("building"))
    for row in rows:
        for day in row["days"]:
            day["date"] = day["date"].isoformat()
    return {"date": query["date"].isoformat(), "days": query["days"], "buildings": rows}


@inpatient_api.get("/doctors")
@api_doc(summary="CRM users with the doctor role (for examinations and prescriptions)", tags=TAGS)
@requires("staff")
def get_doctors() -> Any:
    users = db_session().scalars(
        select(PortalUser)
        .where(PortalUser.portal_id == current_portal().id, PortalUser.active)
        .order_by(PortalUser.name)
    )
    return {
        "doctors": [{"user_id": u.crm_user_id, "name": u.name} for u in users if "doctor" in (u.roles or ())]
    }


# --- the stay --------------------------------------------------------------------------------------------


def _stay_document(stay: InpatientStay) -> dict[str, Any]:
    session = db_session()
    building, ward = session.get(Building, stay.building_id), session.get(Ward, stay.ward_id)
    assert building is not None and ward is not None
    return InpatientStaySchema().dump(
        {
            "deal_id": stay.deal_id,
            "status": stay.status,
            "building_id": building.id,
            "building": building.name,
            "ward_id": ward.id,
            "ward": ward.name,
            "bed": stay.bed,
            "profile": stay.profile,
            "admission_date": stay.admission_date,
            "discharge_date": stay.discharge_date,
            "representative": {
                "name": stay.representative_name,
                "relation": stay.representative_relation,
                "phone": stay.representative_phone,
                "email": stay.representative_email,
                "consent_to_inform": stay.representative_consent,
                "contact_id": stay.representative_contact_id,
            },
        }
    )


def _mirror_ledger(portal: Portal, account: StayAccount, entries: list[LedgerEntry]) -> None:
    session = db_session()
    mirror_entries(session, portal, stay_summary(session, portal, account), entries)


@inpatient_api.post("/deals/<deal_id>/stay/arrival")
@api_doc(summary="Ready to sign: arrival date and budget", tags=TAGS, request=ArrivalSchema, status=201,
         errors=ERRORS)  # fmt: skip
@requires("staff")
@mutation
def post_arrival(deal_id: str) -> Any:
    body = load_body(ArrivalSchema())
    portal = _portal()
    budget = None
    if body.get("budget") is not None:
        try:
            budget = parse_amount(body["budget"], portal.currency)
        except AmountError as exc:
            raise ValidationFailed.for_field("budget", exc.reason) from None
    arrival = expect_arrival(
        db_session(), portal, deal_id, body["arrival_date"], budget, body.get("profile"), _actor()
    )
    return {
        "deal_id": deal_id,
        "arrival_date": arrival.arrival_date.isoformat(),
        "budget": body.get("budget"),
        "profile": arrival.profile,
        "building_id": arrival.building_id,
    }, 201


@inpatient_api.get("/deals/<deal_id>/stay/arrival")
@api_doc(summary="Ready to sign: the arrival date and budget given, and whether the CRM stage asked for them",
         tags=TAGS, response=ArrivalDocumentSchema)  # fmt: skip
@requires("staff")
def get_arrival(deal_id: str) -> Any:
    session, portal = db_session(), current_portal()
    arrival = session.scalar(
        select(ExpectedArrival).where(
            ExpectedArrival.portal_id == portal.id, ExpectedArrival.deal_id == deal_id
        )
    )
    asked = session.scalar(
        select(ArrivalRequest.requested_at).where(
            ArrivalRequest.portal_id == portal.id, ArrivalRequest.deal_id == deal_id
        )
    )
    document: dict[str, Any] = {"deal_id": deal_id, "asked_at": asked, "arrival": None}
    if arrival is not None:
        building = session.get(Building, arrival.building_id) if arrival.building_id else None
        document["arrival"] = {
            "arrival_date": arrival.arrival_date,
            "budget": (
                str(minor_to_decimal(arrival.budget_minor, portal.currency))
                if arrival.budget_minor is not None
                else None
            ),
            "profile": arrival.profile,
            "building_id": building.id if building else None,
            "building": building.name if building else None,
        }
    return ArrivalDocumentSchema().dump(document)


@inpatient_api.get("/deals/<deal_id>/stay/inpatient-business")
@api_doc(summary="Whether a deal without a stay account opens on «Стационар» (and why)", tags=TAGS,
         response=InpatientBusinessSchema)  # fmt: skip
@requires("viewer")
def get_inpatient_business(deal_id: str) -> Any:
    portal = current_portal()

    def stage_of() -> tuple[str, str] | None:
        try:
            stage = crm_for(portal, runtime.current()).get_deal(deal_id).stage
        except (ConnectorError, UnsupportedPortal):
            return None  # the CRM cannot say now: the ledger's screen, which still offers the tab
        return stage.pipeline_id, stage.stage_id

    reason = inpatient_business(db_session(), portal, deal_id, stage_of)
    document = {"deal_id": deal_id, "inpatient": reason is not None, "reason": reason}
    return InpatientBusinessSchema().dump(document)


@inpatient_api.post("/deals/<deal_id>/stay/admission")
@api_doc(summary="Admit into a building: bed, tariff (opens the stay account), representative", tags=TAGS,
         request=AdmissionSchema, response=InpatientStaySchema, status=201, errors=ERRORS)  # fmt: skip
@requires("staff")
@mutation
def post_admission(deal_id: str) -> Any:
    body = load_body(AdmissionSchema())
    portal = _portal()
    rep = body["representative"]
    stay, account = admit_inpatient(
        db_session(),
        portal,
        InpatientAdmission(
            deal_id=deal_id,
            building_id=body.get("building"),
            profile=body.get("profile"),
            ward_id=body["ward"],
            bed=body["bed"],
            tariff_id=body.get("tariff"),
            admission_date=body.get("admission_date"),
            representative=Representative(
                name=rep["name"],
                relation=rep.get("relation"),
                phone=_phone(rep.get("phone")),
                email=rep.get("email"),
                consent=rep["consent_to_inform"],
            ),
        ),
        _actor(),
        _key("admit"),
    )
    entries = list(db_session().scalars(select(LedgerEntry).where(LedgerEntry.account_id == account.id)))
    _mirror_ledger(portal, account, entries)
    return _stay_document(stay), 201


@inpatient_api.get("/deals/<deal_id>/stay/inpatient")
@api_doc(summary="Where the patient lies and who the representative is", tags=TAGS,
         response=InpatientStaySchema, errors=(404,))  # fmt: skip
@requires("staff")
def get_inpatient(deal_id: str) -> Any:
    return _stay_document(current_stay(db_session(), current_portal(), deal_id))


@inpatient_api.post("/deals/<deal_id>/stay/discharge-request")
@api_doc(summary="Завершение пребывания: the discharge date and the documents task", tags=TAGS,
         request=DischargeRequestSchema, response=InpatientStaySchema, errors=ERRORS)  # fmt: skip
@requires("staff")
@mutation
def post_discharge_request(deal_id: str) -> Any:
    body = load_body(DischargeRequestSchema())
    stay = request_discharge(db_session(), _portal(), deal_id, body["discharge_date"], _actor())
    return _stay_document(stay)


@inpatient_api.post("/deals/<deal_id>/stay/discharge-documents")
@api_doc(summary="Discharge documents done: the ledger's discharge, then the won stage", tags=TAGS,
         request=DischargeDocumentsSchema, response=InpatientStaySchema, errors=ERRORS)  # fmt: skip
@requires("finance")
@mutation
def post_discharge_documents(deal_id: str) -> Any:
    body = load_body(DischargeDocumentsSchema())
    portal = _portal()
    session = db_session()
    stay = current_stay(session, portal, deal_id)
    account_before = session.scalar(
        select(StayAccount.id).where(
            StayAccount.portal_id == portal.id, StayAccount.deal_id == deal_id, StayAccount.status == "open"
        )
    )
    before = set(session.scalars(select(LedgerEntry.id).where(LedgerEntry.account_id == account_before)))
    stay, account = documents_done(session, portal, deal_id, body.get("refund_method"), _actor(),
                                   _key("discharge"))  # fmt: skip
    new = [
        e
        for e in session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account.id))
        if e.id not in before
    ]
    _mirror_ledger(portal, account, new)
    return _stay_document(stay)


# --- prescriptions, rounds, examinations (medical) --------------------------------------------------------


def _prescription_document(p: Prescription) -> dict[str, Any]:
    return PrescriptionSchema().dump(p)


@inpatient_api.get("/deals/<deal_id>/stay/prescriptions")
@api_doc(summary="The stay's prescriptions (medical)", tags=TAGS, errors=(403, 404))
@requires_medical
def get_prescriptions(deal_id: str) -> Any:
    stay = current_stay(db_session(), current_portal(), deal_id)
    rows = db_session().scalars(
        select(Prescription).where(Prescription.stay_id == stay.id).order_by(Prescription.id)
    )
    return {"deal_id": deal_id, "prescriptions": [_prescription_document(p) for p in rows]}


@inpatient_api.post("/deals/<deal_id>/stay/prescriptions")
@api_doc(summary="Prescribe a drug at times of day (medical)", tags=TAGS, request=PrescriptionSchema,
         response=PrescriptionSchema, status=201, errors=ERRORS)  # fmt: skip
@requires_medical
@mutation
def post_prescription(deal_id: str) -> Any:
    body = load_body(PrescriptionSchema())
    prescription = add_prescription(
        db_session(),
        _portal(),
        deal_id,
        PrescriptionDraft(
            drug=body["drug"],
            dose=body["dose"],
            times=tuple(body["times"]),
            start_date=body["start_date"],
            end_date=body.get("end_date"),
            doctor_user_id=body["doctor_user_id"],
        ),
        _actor(),
    )
    return _prescription_document(prescription), 201


@inpatient_api.post("/deals/<deal_id>/stay/prescriptions/<int:prescription_id>/stop")
@api_doc(summary="Stop a prescription from now on (medical)", tags=TAGS, request=PrescriptionStopSchema,
         response=PrescriptionSchema, errors=ERRORS)  # fmt: skip
@requires_medical
@mutation
def post_stop(deal_id: str, prescription_id: int) -> Any:
    body = load_body(PrescriptionStopSchema())
    prescription = stop_prescription(
        db_session(), _portal(), deal_id, prescription_id, body.get("reason"), _actor()
    )
    return _prescription_document(prescription)


@inpatient_api.get("/rounds/due")
@api_doc(summary="What the nurses must do now, per building (medical)", tags=TAGS, query=DueQuerySchema,
         errors=(403,))  # fmt: skip
@requires_medical
def get_due() -> Any:
    query = load_query(DueQuerySchema())
    at = query.get("at") or clock.now_utc()
    items = due_rounds(db_session(), current_portal(), at, query.get("building"))
    if "deal" in query:
        items = [item for item in items if item["deal_id"] == query["deal"]]
    return {"at": at.isoformat(), "rounds": DueRoundSchema(many=True).dump(items)}


@inpatient_api.get("/rounds/reasons")
@api_doc(summary="Why a dose was not given, and the next step each reason proposes", tags=TAGS)
@requires_medical
def get_reasons() -> Any:
    return {"reasons": reason_catalogue()}


def _record_document(record: RoundRecord) -> dict[str, Any]:
    return RoundRecordSchema().dump(
        {
            **{c: getattr(record, c) for c in (
                "id", "prescription_id", "due_at", "outcome", "reason", "note", "next_step", "corrects_id",
                "actor", "recorded_at")},
            "round_id": round_id(record.prescription_id, record.due_at),
        }
    )  # fmt: skip


def _mark(value: str, outcome: str, schema: RoundGivenSchema) -> Any:
    body = load_body(schema)
    record = record_round(
        db_session(),
        _portal(),
        value,
        outcome,
        body.get("reason"),
        body.get("note"),
        body.get("corrects"),
        _actor(),
    )
    return _record_document(record), 201


@inpatient_api.post("/rounds/<round_id>/given")
@api_doc(summary="Mark a dose given (medical)", tags=TAGS, request=RoundGivenSchema,
         response=RoundRecordSchema, status=201, errors=ERRORS)  # fmt: skip
@requires_medical
@mutation
def post_given(round_id: str) -> Any:
    return _mark(round_id, "given", RoundGivenSchema())


@inpatient_api.post("/rounds/<round_id>/not-given")
@api_doc(summary="Mark a dose not given, with a reason from the catalogue (medical)", tags=TAGS,
         request=RoundNotGivenSchema, response=RoundRecordSchema, status=201, errors=ERRORS)  # fmt: skip
@requires_medical
@mutation
def post_not_given(round_id: str) -> Any:
    return _mark(round_id, "not_given", RoundNotGivenSchema())


@inpatient_api.get("/deals/<deal_id>/stay/rounds")
@api_doc(summary="The stay's round record, corrections included (medical)", tags=TAGS, errors=(403, 404))
@requires_medical
def get_rounds(deal_id: str) -> Any:
    stay = current_stay(db_session(), current_portal(), deal_id)
    return {
        "deal_id": deal_id,
        "records": [_record_document(r) | {"drug": p.drug} for r, p in round_records(db_session(), stay)],
    }


@inpatient_api.get("/deals/<deal_id>/stay/rounds.csv")
@api_doc(summary="The round record as CSV (medical)", tags=TAGS, errors=(403, 404))
@requires_medical
def get_rounds_csv(deal_id: str) -> Response:
    portal = current_portal()
    stay = current_stay(db_session(), portal, deal_id)
    response = Response(rounds_csv(db_session(), portal, stay), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="rounds-deal-{deal_id}.csv"'
    return response


@inpatient_api.post("/deals/<deal_id>/stay/examinations")
@api_doc(summary="Record an examination: doctor, date, results, next steps (medical)", tags=TAGS,
         request=ExaminationSchema, response=ExaminationSchema, status=201, errors=ERRORS)  # fmt: skip
@requires_medical
@mutation
def post_examination(deal_id: str) -> Any:
    body = load_body(ExaminationSchema())
    examination = add_examination(
        db_session(),
        _portal(),
        deal_id,
        ExaminationDraft(
            kind=body["kind"],
            doctor_user_id=body["doctor_user_id"],
            examined_on=body["examined_on"],
            results=body["results"],
            links=tuple(body["links"]),
            next_steps=tuple(
                NextStepDraft(text=s["text"], role=s["role"], due_date=s.get("due_date"))
                for s in body["next_steps"]
            ),
        ),
        _actor(),
    )
    return _examination_document(examination), 201


def _examination_document(examination: Examination) -> dict[str, Any]:
    # next_steps are stored as JSON (dates as strings already): returned as stored, not re-serialised.
    return {
        "id": examination.id,
        "kind": examination.kind,
        "doctor_user_id": examination.doctor_user_id,
        "doctor_name": examination.doctor_name,
        "examined_on": examination.examined_on.isoformat(),
        "results": examination.results,
        "links": list(examination.links or ()),
        "next_steps": list(examination.next_steps or ()),
    }


@inpatient_api.get("/deals/<deal_id>/stay/examinations")
@api_doc(summary="The stay's examinations (medical)", tags=TAGS, errors=(403, 404))
@requires_medical
def get_examinations(deal_id: str) -> Any:
    stay = current_stay(db_session(), current_portal(), deal_id)
    rows = db_session().scalars(
        select(Examination).where(Examination.stay_id == stay.id).order_by(Examination.id)
    )
    return {"deal_id": deal_id, "examinations": [_examination_document(e) for e in rows],
            "today": local_today(current_portal().timezone).isoformat()}  # fmt: skip
