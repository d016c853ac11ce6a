"""The demo clinic's hospital: «Корпус 1» on the demo pipeline with its wards and profile map, the in-stay
demo patient in a bed and the patient arriving soon with an arrival date and budget, so a newcomer opens
«Стационар» and sees it working. Idempotent: a rerun finds what is there and adds nothing."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..ledger import Actor
from ..models import Building, ExpectedArrival, InpatientStay, Portal, StayAccount, Ward
from .buildings import BuildingDraft, create_building
from .stays import InpatientAdmission, Representative, admit_inpatient, expect_arrival

__all__ = ["DEMO_BUILDING", "seed_demo_hospital"]

DEMO_BUILDING = "Корпус 1"
_WARDS = (("1", 2), ("2", 2), ("3", 3))


def seed_demo_hospital(session: Session, portal: Portal, summary: dict[str, Any], today: date) -> Building:
    """`summary` is what the sandbox demo seeded (users by role, deals with their stage)."""
    actor = Actor(label="demo", source="api", roles=frozenset({"viewer", "staff", "finance", "admin"}))
    building = session.scalar(
        select(Building).where(Building.portal_id == portal.id, Building.name == DEMO_BUILDING)
    )
    users = {u["role"]: str(u["id"]) for u in summary.get("users", [])}
    pipeline = str(summary["pipeline"]["id"])
    if building is None:
        building = create_building(
            session,
            portal,
            BuildingDraft(
                name=DEMO_BUILDING,
                pipeline_id=pipeline,
                admission_stage_id="in_stay",
                won_stage_id="won",
                manager_user_id=users["admin"],
                nurse_user_id=users.get("staff"),
                profiles=("neurology", "low_vision"),
                wards=_WARDS,
            ),
        )
    deals = summary.get("deals", [])
    for deal in (d for d in deals if d.get("stage_id") == "in_stay"):
        placed = session.scalar(
            select(InpatientStay.id).where(
                InpatientStay.portal_id == portal.id, InpatientStay.deal_id == deal["id"]
            )
        )
        account = session.scalar(
            select(StayAccount.id).where(
                StayAccount.portal_id == portal.id,
                StayAccount.deal_id == deal["id"],
                StayAccount.status == "open",
            )
        )
        if placed is None and account is not None:
            _place(session, portal, building, deal["id"], actor)
    for deal in (d for d in deals if d.get("stage_id") == "admission"):
        known = session.scalar(
            select(ExpectedArrival.id).where(
                ExpectedArrival.portal_id == portal.id, ExpectedArrival.deal_id == deal["id"]
            )
        )
        if known is None:
            expect_arrival(
                session, portal, deal["id"], today + timedelta(days=2), 9_000_000, "neurology", actor
            )
    return building


def _place(session: Session, portal: Portal, building: Building, deal_id: str, actor: Actor) -> None:
    ward = session.scalar(
        select(Ward).where(Ward.building_id == building.id, Ward.name == "3").order_by(Ward.id).limit(1)
    )
    assert ward is not None
    admit_inpatient(
        session,
        portal,
        InpatientAdmission(
            deal_id=deal_id,
            building_id=building.id,
            ward_id=ward.id,
            bed=1,
            tariff_id=None,  # the ledger's demo account is open already: its tariff stays
            representative=Representative(
                name="Елена Орлова", relation="дочь", phone="+79161234567", consent=True
            ),
        ),
        actor,
        f"demo:inpatient:{deal_id}",
    )
