"""Buildings (корпуса) with their wards and the diagnosis profiles they take, and the occupancy view."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..models import Building, InpatientStay, Portal, Ward
from .errors import InpatientError

__all__ = [
    "BuildingDraft",
    "building_for",
    "create_building",
    "occupancy",
    "ward_for",
]


@dataclass(frozen=True)
class BuildingDraft:
    name: str
    pipeline_id: str
    admission_stage_id: str
    won_stage_id: str
    manager_user_id: str
    nurse_user_id: str | None
    profiles: tuple[str, ...]
    wards: tuple[tuple[str, int], ...]


def create_building(session: Session, portal: Portal, draft: BuildingDraft) -> Building:
    """A building and its wards. A profile maps to one building only: admission by profile must be
    unambiguous."""
    if session.scalar(
        select(Building.id).where(Building.portal_id == portal.id, Building.name == draft.name)
    ):
        raise InpatientError("name", f"a building named {draft.name!r} already exists")
    taken = {
        profile: name
        for name, profiles in session.execute(
            select(Building.name, Building.profiles).where(Building.portal_id == portal.id, Building.active)
        )
        for profile in profiles or ()
    }
    for i, profile in enumerate(draft.profiles):
        if profile in taken:
            raise InpatientError(f"profiles[{i}]", f"{profile!r} already goes to {taken[profile]!r}")
    names = [name for name, _beds in draft.wards]
    if len(set(names)) != len(names):
        raise InpatientError("wards", "ward names must be unique within the building")
    building = Building(
        portal_id=portal.id,
        name=draft.name,
        pipeline_id=draft.pipeline_id,
        admission_stage_id=draft.admission_stage_id,
        won_stage_id=draft.won_stage_id,
        manager_user_id=draft.manager_user_id,
        nurse_user_id=draft.nurse_user_id,
        profiles=list(draft.profiles),
    )
    session.add(building)
    session.flush()
    session.add_all(
        Ward(portal_id=portal.id, building_id=building.id, name=name, beds=beds) for name, beds in draft.wards
    )
    session.flush()
    return building


def building_for(session: Session, portal: Portal, building_id: int | None, profile: str | None) -> Building:
    """The building named by id, else the one the diagnosis profile maps to."""
    if building_id is not None:
        building = session.get(Building, building_id)
        if building is None or building.portal_id != portal.id or not building.active:
            raise InpatientError("building", f"no building {building_id} in this portal")
        return building
    if profile:
        for building in session.scalars(
            select(Building).where(Building.portal_id == portal.id, Building.active).order_by(Building.id)
        ):
            if profile in (building.profiles or ()):
                return building
        raise InpatientError("profile", f"no building takes the profile {profile!r}; map it in the settings")
    raise InpatientError("building", "name the building or the diagnosis profile")


def ward_for(session: Session, building: Building, ward_id: int, bed: int) -> Ward:
    ward = session.get(Ward, ward_id)
    if ward is None or ward.building_id != building.id:
        raise InpatientError("ward", f"no ward {ward_id} in {building.name}")
    if not 1 <= bed <= ward.beds:
        raise InpatientError("bed", f"ward {ward.name} has beds 1–{ward.beds}")
    return ward


def occupancy(
    session: Session, portal: Portal, start: date, days: int, building_id: int | None = None
) -> list[dict[str, Any]]:
    """Beds taken and free per building and day. A patient takes a bed from the admission day up to, not
    including, the discharge day (the bed is free for the next patient that day)."""
    end = start + timedelta(days=days)  # exclusive
    query = (
        select(Building.id, Building.name, func.coalesce(func.sum(Ward.beds), 0))
        .outerjoin(Ward, Ward.building_id == Building.id)
        .where(Building.portal_id == portal.id, Building.active)
        .group_by(Building.id, Building.name)
        .order_by(Building.id)
    )
    if building_id is not None:
        query = query.where(Building.id == building_id)
    buildings = session.execute(query).all()
    # A difference array per building: +1 on admission, -1 on discharge, then a running sum.
    delta: dict[int, list[int]] = {b_id: [0] * (days + 1) for b_id, _name, _beds in buildings}
    stays = session.execute(
        select(InpatientStay.building_id, InpatientStay.admission_date, InpatientStay.discharge_date).where(
            InpatientStay.portal_id == portal.id,
            InpatientStay.admission_date < end,
            (InpatientStay.discharge_date.is_(None)) | (InpatientStay.discharge_date > start),
        )
    )
    for b_id, admitted, discharged in stays:
        counts = delta.get(b_id)
        if counts is None:
            continue
        counts[max((admitted - start).days, 0)] += 1
        if discharged is not None and discharged < end:
            counts[(discharged - start).days] -= 1
    out: list[dict[str, Any]] = []
    for b_id, name, beds in buildings:
        running, series = 0, []
        for offset in range(days):
            running += delta[b_id][offset]
            series.append(
                {
                    "date": start + timedelta(days=offset),
                    "taken": running,
                    "free": max(int(beds) - running, 0),
                }
            )
        out.append({"building_id": b_id, "name": name, "beds": int(beds), "days": series})
    return out
