"""IDENT receptions → `Appointment`: one pure function over the columns of `view.sql`, shared by the
database reader and the export reader, so both give the same visits for the same rows.

IDENT has no status column (research/mis.md §1.6, §6): the status is derived from which timestamps are set,
with the precedence cancelled/no_show > completed > arrived > booked. A no-show is a cancel reason the clinic
marks as one (the sample database uses reason 8); a past `PlanEnd` alone never makes a no-show.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime, tzinfo
from typing import Any

from ..types import Appointment, AppointmentReject

__all__ = ["COLUMNS", "REQUIRED", "SOURCE", "derive_status", "map_reception_row"]

SOURCE = "ident_db"

COLUMNS = (
    "ID",
    "DateTimeChanged",
    "RowVersion",
    "PlanStart",
    "PlanEnd",
    "PatientAppeared",
    "ReceptionStarted",
    "ReceptionEnded",
    "ReceptionCanceled",
    "ID_ReceptionCancelReasons",
    "CancelReasonName",
    "CheckIssued",
    "ID_Patients",
    "PatientSurname",
    "PatientName",
    "PatientPatronymic",
    "PatientMobilePhone",
    "PatientPhone",
    "CardNumber",
    "ID_Staffs",
    "StaffName",
    "StaffSpecialty",
    "ID_OwnCompanies",
    "BranchName",
    "InsertedByName",
    "FirstConsultation",
    "ID_ReceptionsTransferFrom",
    "Comment",
)
REQUIRED = ("ID", "DateTimeChanged", "PlanStart", "ID_Patients")


def _set(value: Any) -> bool:
    # Exports write bits as 0/1 and empty cells as ""; the database gives None, bool or a datetime.
    if value is None or value is False:
        return False
    if isinstance(value, str):
        return value.strip() not in ("", "0", "false", "False", "NULL")
    return not (isinstance(value, int | float) and value == 0)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    if text in ("", "NULL"):
        return None
    # An integer id read back from a float column (CSV through a spreadsheet) must not grow a ".0".
    return text[:-2] if isinstance(value, float) and text.endswith(".0") else text


def _when(value: Any, tz: tzinfo) -> datetime | None:
    if value is None or (isinstance(value, str) and value.strip() in ("", "NULL")):
        return None
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).strip())
    # IDENT stores clinic-local wall time without an offset (research/mis.md, pain point 3).
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment


def derive_status(row: Mapping[str, Any], no_show_reasons: Collection[str]) -> tuple[str, str | None]:
    """(status, reason) from the reception's timestamps; the reason is the cancel reason id, if any."""
    reason = _text(row.get("ID_ReceptionCancelReasons"))
    if _set(row.get("ReceptionCanceled")) or reason is not None:
        return ("no_show" if reason is not None and reason in no_show_reasons else "cancelled"), reason
    if _set(row.get("ReceptionEnded")) or _set(row.get("CheckIssued")):
        return "completed", None
    if _set(row.get("ReceptionStarted")) or _set(row.get("PatientAppeared")):
        return "arrived", None
    return "booked", None


def map_reception_row(
    row: Mapping[str, Any], *, row_number: int, tz: tzinfo, no_show_reasons: Collection[str]
) -> Appointment | AppointmentReject:
    """One view row → an appointment, or a reject naming the first bad column."""
    visit = _text(row.get("ID"))
    for column in REQUIRED:
        if _text(row.get(column)) is None:
            return AppointmentReject(row_number, column, "required", "", visit)
    parsed: dict[str, datetime | None] = {}
    for column in ("DateTimeChanged", "PlanStart", "PlanEnd"):
        try:
            parsed[column] = _when(row.get(column), tz)
        except (TypeError, ValueError):
            return AppointmentReject(row_number, column, "not a date and time", str(row.get(column)), visit)
    starts_at, ends_at = parsed["PlanStart"], parsed["PlanEnd"]
    assert starts_at is not None
    if ends_at is not None and ends_at < starts_at:
        return AppointmentReject(
            row_number, "PlanEnd", "ends before it starts", str(row.get("PlanEnd")), visit
        )
    status, reason = derive_status(row, no_show_reasons)
    name_parts = [_text(row.get(c)) for c in ("PatientSurname", "PatientName", "PatientPatronymic")]
    first = row.get("FirstConsultation")
    phones = list(
        dict.fromkeys(p for p in (_text(row.get(c)) for c in ("PatientMobilePhone", "PatientPhone")) if p)
    )
    return Appointment(
        source=SOURCE,
        source_id=str(_text(row["ID"])),
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        patient_id=_text(row["ID_Patients"]),
        patient_name=" ".join(p for p in name_parts if p),
        patient_phone=phones[0] if phones else None,
        patient_other_phones=tuple(phones[1:]),
        changed_at=parsed["DateTimeChanged"],
        version=_text(row.get("RowVersion")),
        status_reason=_text(row.get("CancelReasonName")) or reason,
        doctor_id=_text(row.get("ID_Staffs")),
        doctor_name=_text(row.get("StaffName")),
        specialty=_text(row.get("StaffSpecialty")),
        branch=_text(row.get("BranchName")) or _text(row.get("ID_OwnCompanies")),
        card_number=_text(row.get("CardNumber")),
        booked_by=_text(row.get("InsertedByName")),
        mis_primary=None if _text(first) is None else _set(first),
        comment=_text(row.get("Comment")),
        rescheduled_from=_text(row.get("ID_ReceptionsTransferFrom")),
    )
