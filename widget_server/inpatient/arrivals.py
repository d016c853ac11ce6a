"""«Готов подписать договор» from the CRM: a sales deal entering the portal's mapped stage asks its
manager, once, for the arrival date and the budget (the panel's arrival form, then `expect_arrival`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..models import (
    ArrivalRequest,
    Building,
    DealOutsideSales,
    ExpectedArrival,
    InpatientStay,
    Portal,
    utcnow,
)
from .mirror import queue_note, queue_task

__all__ = [
    "ASK_FOR_ARRIVAL",
    "ReadyStage",
    "ask_for_arrival",
    "deal_has",
    "inpatient_business",
    "needs_arrival_request",
    "ready_to_sign_stage",
    "remember_stage",
    "worth_reading",
]

ASK_FOR_ARRIVAL = "Готов подписать договор: указать дату заезда и бюджет (вкладка «Стационар»)"


@dataclass(frozen=True)
class ReadyStage:
    pipeline_id: str
    stage_id: str


def ready_to_sign_stage(portal: Portal) -> ReadyStage | None:
    """The stage set in the settings (`stages.ready_to_sign`, checked against the CRM's pipelines when
    saved); None when the portal does not map one."""
    ref = ((portal.settings or {}).get("stages") or {}).get("ready_to_sign")
    if not ref or not ref.get("pipeline_id") or not ref.get("stage_id"):
        return None
    return ReadyStage(str(ref["pipeline_id"]), str(ref["stage_id"]))


def deal_has(session: Session, model: type[Any], portal: Portal, deal_id: str) -> bool:
    """Whether the portal has a row of `model` (one keyed by portal and deal) for the deal."""
    found = session.scalar(
        select(model.id).where(model.portal_id == portal.id, model.deal_id == deal_id).limit(1)
    )
    return found is not None


def needs_arrival_request(session: Session, portal: Portal, deal_id: str) -> bool:
    """Whether the deal could still be asked: not asked before, and no arrival date given already."""
    return not any(deal_has(session, model, portal, deal_id) for model in (ArrivalRequest, ExpectedArrival))


def inpatient_business(
    session: Session, portal: Portal, deal_id: str, stage_of: Callable[[], tuple[str, str] | None]
) -> str | None:
    """Why a deal without a stay account is the hospital's business, so that its card opens on «Стационар»
    (None: the ledger's screen): asked for its arrival, its arrival given, a stay, or, read from the CRM
    through `stage_of` (pipeline, stage; None when the CRM cannot say) only when our own rows do not tell,
    sitting in a building's pipeline or in the mapped ready-to-sign stage."""
    for model, reason in ((ArrivalRequest, "asked"), (ExpectedArrival, "arrival"), (InpatientStay, "stay")):
        if deal_has(session, model, portal, deal_id):
            return reason
    ready = ready_to_sign_stage(portal)
    pipelines = set(session.scalars(select(Building.pipeline_id).where(Building.portal_id == portal.id)))
    if ready is None and not pipelines:
        return None  # not a hospital: no CRM read for every card without an account
    stage = stage_of()
    if stage is None:
        return None
    if str(stage[0]) in pipelines:
        return "building_pipeline"
    if ready is not None and (str(stage[0]), str(stage[1])) == (ready.pipeline_id, ready.stage_id):
        return "ready_stage"
    return None


def worth_reading(session: Session, portal: Portal, deal_id: str) -> bool:
    """Whether an update that names no stage (Bitrix24 ONCRMDEALUPDATE) is worth reading the deal for: not
    when it was asked or its arrival is known, it has a stay (admitted: past the stage for good), or it was
    last seen outside the stage's pipeline (it comes back only through an event naming its stage)."""
    known = (ArrivalRequest, ExpectedArrival, InpatientStay, DealOutsideSales)
    return not any(deal_has(session, model, portal, deal_id) for model in known)


def remember_stage(session: Session, portal: Portal, deal_id: str, pipeline_id: str, stage_id: str) -> None:
    """Where the CRM says the deal is: outside the ready-to-sign pipeline it is remembered (its next
    updates are not read), inside it is forgotten (every update may be the move into the stage). Not
    remembered by board order within the pipeline: a stage change there, even back from a closed stage,
    is an ONCRMDEALUPDATE that names nothing."""
    stage = ready_to_sign_stage(portal)
    row = session.scalar(
        select(DealOutsideSales).where(
            DealOutsideSales.portal_id == portal.id, DealOutsideSales.deal_id == deal_id
        )
    )
    if stage is None or str(pipeline_id) == stage.pipeline_id:
        if row is not None:
            session.delete(row)
        return
    if row is not None:
        row.pipeline_id, row.stage_id, row.seen_at = str(pipeline_id), str(stage_id), utcnow()
        return
    try:
        # Two deliveries may race: the unique pair keeps one row, which says the same.
        with session.begin_nested():
            session.add(DealOutsideSales(portal_id=portal.id, deal_id=deal_id, pipeline_id=str(pipeline_id),
                                         stage_id=str(stage_id)))  # fmt: skip
    except IntegrityError:
        pass


def ask_for_arrival(session: Session, portal: Portal, deal_id: str, pipeline_id: str, stage_id: str) -> bool:
    """The deal is now in (pipeline_id, stage_id): if that is the ready-to-sign stage and the deal was never
    asked, a task for its responsible manager and a note. True when it asked."""
    stage = ready_to_sign_stage(portal)
    if stage is None or (str(pipeline_id), str(stage_id)) != (stage.pipeline_id, stage.stage_id):
        return False
    if not needs_arrival_request(session, portal, deal_id):
        return False
    request = ArrivalRequest(portal_id=portal.id, deal_id=deal_id, pipeline_id=stage.pipeline_id,
                             stage_id=stage.stage_id)  # fmt: skip
    try:
        # Two deliveries of the same move may race (amo repeats hooks): the unique pair keeps one.
        with session.begin_nested():
            session.add(request)
    except IntegrityError:
        return False
    queue_task(session, portal, deal_id, ASK_FOR_ARRIVAL, f"ready-to-sign:{deal_id}", user_id=None)
    queue_note(
        session,
        portal,
        deal_id,
        "Сделка на этапе «Готов подписать договор»: менеджеру поставлена задача указать дату заезда и бюджет",
        f"ready-to-sign:{deal_id}",
    )
    return True
