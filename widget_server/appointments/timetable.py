"""IDENT's PostTimeTable: doctors, branches and free/busy intervals as one snapshot (research/mis.md §1.4).

A valid snapshot replaces the previous one whole and feeds the doctor map (names by IDENT id; specialties are
the admin's); an invalid one is refused with the reason and the previous snapshot stays. A snapshot older
than six hours is shown as stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..clock import now_utc
from ..models import MisTimetable, Portal

__all__ = [
    "STALE_AFTER",
    "TimetableError",
    "ident_key_matches",
    "issue_ident_key",
    "replace_timetable",
    "timetable_status",
    "validate_timetable",
]

STALE_AFTER = timedelta(hours=6)
SOURCE = "ident"


class TimetableError(ValueError):
    """The body is not a timetable; the message names the first bad element."""


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TimetableError(f"{where}: an integer is required")
    try:
        return int(value)
    except ValueError:
        raise TimetableError(f"{where}: an integer is required") from None


def _bool(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TimetableError(f"{where}: true or false is required")


def _named(items: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(items, list):
        raise TimetableError(f"{where}: a list is required")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TimetableError(f"{where}[{i}]: an object is required")
        name = item.get("Name")
        if not isinstance(name, str) or not name.strip():
            raise TimetableError(f"{where}[{i}].Name: a non-empty string is required")
        out.append({"Id": _int(item.get("Id"), f"{where}[{i}].Id"), "Name": name.strip()})
    return out


def validate_timetable(body: Any) -> dict[str, Any]:
    if not isinstance(body, Mapping):
        raise TimetableError("body: an object with Doctors, Branches and Intervals is required")
    doctors = _named(body.get("Doctors"), "Doctors")
    branches = _named(body.get("Branches", []), "Branches")
    known = {d["Id"] for d in doctors}
    intervals = body.get("Intervals")
    if not isinstance(intervals, list):
        raise TimetableError("Intervals: a list is required")
    clean = []
    for i, item in enumerate(intervals):
        where = f"Intervals[{i}]"
        if not isinstance(item, Mapping):
            raise TimetableError(f"{where}: an object is required")
        doctor = _int(item.get("DoctorId"), f"{where}.DoctorId")
        if doctor not in known:
            raise TimetableError(f"{where}.DoctorId: {doctor} is not in Doctors")
        start = item.get("StartDateTime")
        try:
            moment = datetime.fromisoformat(str(start))
        except ValueError:
            raise TimetableError(f"{where}.StartDateTime: an ISO 8601 date and time is required") from None
        if moment.tzinfo is None:
            raise TimetableError(f"{where}.StartDateTime: an offset (+03:00) is required")
        length = _int(item.get("LengthInMinutes"), f"{where}.LengthInMinutes")
        if length <= 0:
            raise TimetableError(f"{where}.LengthInMinutes: must be positive")
        branch = item.get("BranchId")
        clean.append(
            {
                "DoctorId": doctor,
                "BranchId": None if branch in (None, "") else _int(branch, f"{where}.BranchId"),
                "StartDateTime": moment.isoformat(),
                "LengthInMinutes": length,
                "IsBusy": _bool(item.get("IsBusy"), f"{where}.IsBusy"),
            }
        )
    return {"Doctors": doctors, "Branches": branches, "Intervals": clean}


def replace_timetable(session: Session, portal: Portal, doc: dict[str, Any]) -> MisTimetable:
    row = session.scalar(
        select(MisTimetable).where(MisTimetable.portal_id == portal.id, MisTimetable.source == SOURCE)
    )
    if row is None:
        row = MisTimetable(portal_id=portal.id, source=SOURCE)
        session.add(row)
    row.doc = doc
    row.received_at = now_utc()
    session.flush()
    return row


def timetable_status(session: Session, portal: Portal) -> dict[str, Any] | None:
    row = session.scalar(
        select(MisTimetable).where(MisTimetable.portal_id == portal.id, MisTimetable.source == SOURCE)
    )
    if row is None:
        return None
    return {
        "received_at": row.received_at.isoformat(),
        "stale": now_utc() - row.received_at > STALE_AFTER,
        "doctors": len(row.doc.get("Doctors", [])),
        "branches": len(row.doc.get("Branches", [])),
        "intervals": len(row.doc.get("Intervals", [])),
    }


def issue_ident_key(portal: Portal) -> str:
    """A new IDENT-Integration-Key for the portal; only its SHA-256 is kept, the plaintext is shown once."""
    import secrets

    plaintext = "cbi_" + secrets.token_urlsafe(32)
    settings = dict(portal.settings or {})
    settings["mis"] = {**(settings.get("mis") or {}), "ident_key_sha256": _key_hash(plaintext)}
    portal.settings = settings
    return plaintext


def ident_key_matches(portal: Portal, plaintext: str) -> bool:
    import hmac

    stored = ((portal.settings or {}).get("mis") or {}).get("ident_key_sha256")
    return bool(stored) and hmac.compare_digest(stored, _key_hash(plaintext))


def _key_hash(plaintext: str) -> str:
    import hashlib

    return hashlib.sha256(plaintext.encode()).hexdigest()
