"""The stay's life: expected arrival, admission into a building (opening the ledger account), discharge
request, discharge documents done (the ledger's discharge, then the won stage)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..clock import local_today
from ..ledger import Actor, Admission, admit, discharge
from ..models import Building, ExpectedArrival, InpatientStay, Portal, StayAccount, Tariff, Ward, utcnow
from ..money import format_minor
from .arrivals import deal_has
from .buildings import building_for, ward_for
from .errors import InpatientConflict, InpatientError, InpatientNotFound
from .mirror import queue_move, queue_note, queue_representative_contact, queue_task
from .relatives import inform_relatives

__all__ = [
    "InpatientAdmission",
    "Representative",
    "admit_inpatient",
    "arrival_day_tasks",
    "current_stay",
    "documents_done",
    "expect_arrival",
    "request_discharge",
]


@dataclass(frozen=True)
class Representative:
    name: str
    relation: str | None = None
    phone: str | None = None
    email: str | None = None
    consent: bool = False


@dataclass(frozen=True)
class InpatientAdmission:
    deal_id: str
    ward_id: int
    bed: int
    tariff_id: int | None
    representative: Representative
    building_id: int | None = None
    profile: str | None = None
    admission_date: date | None = None


def _date(day: date) -> str:
    return day.strftime("%d.%m.%Y")


def current_stay(session: Session, portal: Portal, deal_id: str, *, lock: bool = False) -> InpatientStay:
    """The deal's stay in progress, else its latest one; 404 if the patient was never admitted."""
    query = (
        select(InpatientStay)
        .where(InpatientStay.portal_id == portal.id, InpatientStay.deal_id == deal_id)
        .order_by((InpatientStay.status == "discharged").asc(), InpatientStay.id.desc())
        .limit(1)
    )
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    stay = session.scalar(query)
    if stay is None:
        raise InpatientNotFound("deal_id", f"deal {deal_id} has no in-patient stay")
    return stay


def expect_arrival(
    session: Session,
    portal: Portal,
    deal_id: str,
    arrival_date: date,
    budget_minor: int | None,
    profile: str | None,
    actor: Actor,
) -> ExpectedArrival:
    """«Готов подписать договор»: the arrival date and budget; the building follows from the profile."""
    if arrival_date < local_today(portal.timezone):
        raise InpatientError("arrival_date", "cannot be in the past")
    building = building_for(session, portal, None, profile) if profile else None
    # Changed as often as needed until the patient is in a bed; after that the stay's dates rule.
    if deal_has(session, InpatientStay, portal, deal_id):
        raise InpatientConflict("arrival_date", "the patient is admitted already: the arrival cannot change")
    arrival = session.scalar(
        select(ExpectedArrival).where(
            ExpectedArrival.portal_id == portal.id, ExpectedArrival.deal_id == deal_id
        )
    )
    if arrival is None:
        arrival = ExpectedArrival(portal_id=portal.id, deal_id=deal_id, created_by=actor.label)
        session.add(arrival)
    if arrival.arrival_date != arrival_date:
        arrival.tasked_on = None  # a new date gets its own arrival-day task
    arrival.arrival_date, arrival.budget_minor, arrival.profile = arrival_date, budget_minor, profile
    arrival.building_id = building.id if building else None
    session.flush()
    budget = f", бюджет {format_minor(budget_minor, portal.currency, portal.locale)}" if budget_minor else ""
    where = f", корпус: {building.name}" if building else ""
    queue_note(
        session,
        portal,
        deal_id,
        f"Готов подписать договор. Дата прибытия: {_date(arrival_date)}{budget}{where}",
        f"arrival:{arrival.id}:{arrival_date.isoformat()}",
    )
    return arrival


def arrival_day_tasks(session: Session, portal: Portal, today: date) -> int:
    """On the arrival day: a task for the responsible manager to call the patient and have a room
    assigned, and the building manager told. Once per arrival date (`tasked_on`)."""
    arrivals = session.scalars(
        select(ExpectedArrival)
        .where(
            ExpectedArrival.portal_id == portal.id,
            ExpectedArrival.arrival_date == today,
            ExpectedArrival.tasked_on.is_(None),
        )
        .with_for_update()
    ).all()
    for arrival in arrivals:
        arrival.tasked_on = today
        building = session.get(Building, arrival.building_id) if arrival.building_id else None
        key = f"arrival:{arrival.id}:{today.isoformat()}"
        where = f" в {building.name}" if building else ""
        queue_task(
            session,
            portal,
            arrival.deal_id,
            f"Сегодня прибывает пациент: свяжитесь с ним и выделите палату{where}",
            key,
            user_id=None,
            day=today,
        )
        if building is not None:
            queue_task(
                session,
                portal,
                arrival.deal_id,
                f"Сегодня в {building.name} прибывает пациент: подготовьте палату",
                f"{key}:building",
                user_id=building.manager_user_id,
                day=today,
            )
    session.flush()
    return len(arrivals)


def admit_inpatient(
    session: Session, portal: Portal, admission: InpatientAdmission, actor: Actor, key: str
) -> tuple[InpatientStay, StayAccount]:
    """Into the building's pipeline, with a tariff (the ledger opens the stay account) and a bed."""
    building = building_for(session, portal, admission.building_id, admission.profile)
    ward = ward_for(session, building, admission.ward_id, admission.bed)
    today = local_today(portal.timezone)
    admitted_on = admission.admission_date or today
    if session.scalar(
        select(InpatientStay.id).where(
            InpatientStay.portal_id == portal.id,
            InpatientStay.deal_id == admission.deal_id,
            InpatientStay.status != "discharged",
        )
    ):
        raise InpatientConflict("deal_id", f"deal {admission.deal_id} is already in a stay")
    if session.scalar(
        select(InpatientStay.deal_id).where(
            InpatientStay.ward_id == ward.id, InpatientStay.bed == admission.bed,
            InpatientStay.status != "discharged",
        )
    ):  # fmt: skip
        raise InpatientConflict("bed", f"bed {admission.bed} in ward {ward.name} is taken")
    representative = admission.representative
    # The stay account may already be open (the ledger's own admission in the card): the patient is then
    # placed in a bed on that account, not charged twice.
    account = session.scalar(
        select(StayAccount).where(
            StayAccount.portal_id == portal.id,
            StayAccount.deal_id == admission.deal_id,
            StayAccount.status == "open",
        )
    )
    if account is not None:
        admitted_on = account.admission_date
    elif admission.tariff_id is None:
        raise InpatientError("tariff", "choose the tariff: admission opens the stay account")
    else:
        account = admit(
            session,
            portal,
            Admission(
                deal_id=admission.deal_id,
                admission_date=admitted_on,
                tariff_id=admission.tariff_id,
                representative_name=representative.name,
                representative_phone=representative.phone,
            ),
            actor,
            key,
        )
    stay = InpatientStay(
        portal_id=portal.id,
        deal_id=admission.deal_id,
        building_id=building.id,
        ward_id=ward.id,
        bed=admission.bed,
        profile=admission.profile,
        admission_date=admitted_on,
        representative_name=representative.name,
        representative_relation=representative.relation,
        representative_phone=representative.phone,
        representative_email=representative.email,
        representative_consent=representative.consent,
        admitted_by=actor.label,
    )
    try:
        with session.begin_nested():
            session.add(stay)
    except IntegrityError:
        raise InpatientConflict("bed", f"bed {admission.bed} in ward {ward.name} was just taken") from None
    tariff = session.get(Tariff, admission.tariff_id) if admission.tariff_id is not None else None
    _mirror_admission(session, portal, stay, building, ward, tariff)
    return stay, account


def _mirror_admission(
    session: Session,
    portal: Portal,
    stay: InpatientStay,
    building: Building,
    ward: Ward,
    tariff: Tariff | None,
) -> None:
    queue_move(
        session,
        portal,
        stay.deal_id,
        building.pipeline_id,
        building.admission_stage_id,
        f"{stay.id}:admitted",
    )
    rate = format_minor(tariff.daily_rate_minor, portal.currency, portal.locale) if tariff else ""
    tariff_text = f"Тариф «{tariff.name}», {rate} в сутки. " if tariff else ""
    queue_note(
        session,
        portal,
        stay.deal_id,
        f"Пациент поступил {_date(stay.admission_date)}: {building.name}, палата {ward.name}, "
        f"место {stay.bed}. "
        f"{tariff_text}Представитель: {stay.representative_name}"
        + (f" ({stay.representative_relation})" if stay.representative_relation else ""),
        f"{stay.id}:admitted",
    )
    queue_representative_contact(session, portal, stay)
    inform_relatives(
        session,
        portal,
        stay,
        "admission",
        str(stay.id),
        f"Пациент размещён: {building.name}, палата {ward.name}. "
        f"Дата поступления {_date(stay.admission_date)}.",
    )


def request_discharge(
    session: Session, portal: Portal, deal_id: str, discharge_date: date, actor: Actor
) -> InpatientStay:
    """«Завершение пребывания в центре»: the date, and the task to prepare the discharge documents."""
    stay = current_stay(session, portal, deal_id, lock=True)
    if stay.status == "discharged":
        raise InpatientConflict("deal_id", "the patient is already discharged")
    if discharge_date < stay.admission_date:
        raise InpatientError("discharge_date", "cannot be before the admission date")
    if discharge_date > local_today(portal.timezone) + timedelta(days=90):
        raise InpatientError("discharge_date", "more than 90 days ahead")
    first = stay.status == "admitted"
    stay.status, stay.discharge_date, stay.discharge_requested_by = (
        "discharge_requested",
        discharge_date,
        actor.label,
    )
    session.flush()
    building = session.get(Building, stay.building_id)
    assert building is not None
    if first:
        queue_task(
            session,
            portal,
            deal_id,
            f"Подготовить документы для выписки пациента {_date(discharge_date)}",
            f"{stay.id}:discharge-documents",
            user_id=None,
            day=discharge_date,
        )
    queue_note(
        session,
        portal,
        deal_id,
        f"Завершение пребывания в центре: выписка {_date(discharge_date)}",
        f"{stay.id}:discharge-request:{discharge_date.isoformat()}",
    )
    return stay


def documents_done(
    session: Session, portal: Portal, deal_id: str, refund_method: str | None, actor: Actor, key: str
) -> tuple[InpatientStay, StayAccount]:
    """The documents are ready: the ledger's discharge runs (final days, refund, closed) and the deal
    moves to the building pipeline's won stage."""
    stay = current_stay(session, portal, deal_id, lock=True)
    if stay.status == "discharged":
        raise InpatientConflict("deal_id", "the patient is already discharged")
    if stay.status != "discharge_requested" or stay.discharge_date is None:
        raise InpatientConflict("deal_id", "request the discharge (with its date) first")
    account = discharge(session, portal, deal_id, stay.discharge_date, refund_method, actor, key)
    stay.status, stay.documents_done_by, stay.discharged_at = "discharged", actor.label, utcnow()
    session.flush()
    building = session.get(Building, stay.building_id)
    assert building is not None
    queue_note(
        session,
        portal,
        deal_id,
        f"Документы для выписки готовы. Пациент выписан {_date(stay.discharge_date)}",
        f"{stay.id}:discharged",
    )
    queue_move(session, portal, deal_id, building.pipeline_id, building.won_stage_id, f"{stay.id}:won")
    inform_relatives(
        session,
        portal,
        stay,
        "discharge",
        str(stay.id),
        f"Пациент выписывается {_date(stay.discharge_date)}. Документы для выписки готовы.",
    )
    return stay, account
