"""The outbox operation that mirrors one appointment into the CRM.

The job reads the appointment as it is when the job runs, so several changes queued before it ran go out as
one: contact (found by phone + name once per patient, else created), the deal (created in the mapped pipeline,
or moved), and a feed note «Запись 12.03.2026 10:00, Смирнов И. П. (терапия): Посетил клинику». Every create
carries a key derived from our row, so a retried job finds what the first attempt made. Notes are not sent by
the job itself: they go through the feed's batches (`feed.py`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from connectors.base import CrmClient
from connectors.types import NewDeal, StageRef

from ... import runtime
from ...appointments.settings import mis_settings
from ...appointments.sync import mirror_hash
from ...models import MisAppointment, MisPatient, Portal
from .duplicates import flag_duplicate, intake_deal_of, patient_contact
from .feed import queue_feed, send_waiting_feed
from .notes import appointment_note, deal_fields, jsonable_fields

__all__ = ["VOID_REASON", "mis_mirror_appointment"]


VOID_REASON = "Удалено в МИС"


def mis_mirror_appointment(crm: CrmClient, payload: dict[str, Any], key: str) -> dict[str, Any]:
    db = runtime.current().db
    with db.transaction() as s:
        row = s.get(MisAppointment, int(payload["appointment_id"]))
        if row is None:
            return {"skipped": "appointment gone"}
        patient = s.get(MisPatient, row.patient_id)
        assert patient is not None
        root = s.get(MisPatient, patient.alias_of_id) if patient.alias_of_id else patient
        assert root is not None
        portal = s.get(Portal, row.portal_id)
        assert portal is not None
        settings = mis_settings(portal.settings)
        doctor_map = dict(((portal.settings or {}).get("mis") or {}).get("doctor_map") or {})
        timezone = portal.timezone
        currency = portal.currency
        row_portal = portal.id
        digest = mirror_hash(row)
        if row.mirrored_hash == digest:
            return {"skipped": "unchanged"}
        state = {
            "status": row.status,
            "target": row.target,
            "deal_id": row.deal_id,
            "mirrored_target": row.mirrored_target,
            "doc": dict(row.doc),
            "flags": list(row.flags),
            "row_id": row.id,
        }
        if row.deal_id is None and row.doc.get("rescheduled_from"):
            # A rescheduled visit continues the deal of the one it replaces, from where we left that deal.
            earlier = s.scalar(
                select(MisAppointment).where(
                    MisAppointment.portal_id == row.portal_id,
                    MisAppointment.source == row.source,
                    MisAppointment.source_id == str(row.doc["rescheduled_from"]),
                )
            )
            if earlier is not None and earlier.deal_id is not None:
                state["deal_id"], state["mirrored_target"] = earlier.deal_id, earlier.mirrored_target
        s.expunge(root)
    result: dict[str, Any] = {}
    deal_id = state["deal_id"]
    target = state["target"]
    deal_contact = None
    if deal_id is not None and state["mirrored_target"] is None:
        # The deal of the patient's inquiry, taken at booking: continue it only while it is still open.
        inquiry = crm.get_deal(deal_id)
        if inquiry.is_closed:
            deal_id = None
        elif inquiry.contact_ids:
            deal_contact = inquiry.contact_ids[0]
    contact_id, duplicates = patient_contact(crm, root, deal_contact)
    note = appointment_note(state["doc"], state["status"], timezone, doctor_map)
    fields = deal_fields(
        state["doc"],
        state["status"],
        timezone=timezone,
        currency=currency,
        field_map=settings.field_map,
        doctor_map=doctor_map,
    )
    created = False
    mirrored_target = state["mirrored_target"]
    if state["status"] == "void":
        if deal_id is not None:
            deal = crm.get_deal(deal_id)
            if deal.stage.stage_id != settings.won_stage_id:
                crm.move_deal(
                    deal_id, StageRef(deal.stage.pipeline_id, settings.lost_stage_id), loss_reason=VOID_REASON
                )
    elif deal_id is None and target:
        stage = StageRef(target["pipeline_id"], target["stage_id"])
        deal = crm.create_deal(
            NewDeal(
                name=f"Приём {note.split(':')[0][7:]}", stage=stage, fields=fields, contact_ids=(contact_id,)
            ),
            idempotency_key=f"mis-deal-{state['row_id']}",
        )
        deal_id, created = deal.id, True
        if target.get("loss_reason"):
            crm.move_deal(deal_id, stage, loss_reason=target["loss_reason"])
        mirrored_target = target
    elif deal_id is not None and target and target != mirrored_target:
        # Only a move needs the deal's stage (a user may have closed it); a note alone does not.
        deal = crm.get_deal(deal_id)
        ours = mirrored_target and StageRef(mirrored_target["pipeline_id"], mirrored_target["stage_id"])
        if deal.is_closed and deal.stage != ours:
            result["kept_closed"] = True  # a user closed it; the note below still tells what the MIS says
        else:
            crm.move_deal(
                deal_id,
                StageRef(target["pipeline_id"], target["stage_id"]),
                loss_reason=target.get("loss_reason"),
            )
            mirrored_target = target
    feed: list[tuple[str, dict[str, Any], str]] = []
    if deal_id is not None:
        # Keyed by the job: a retry adds nothing, a later return to the same state is noted again.
        feed.append(("add_note", {"deal_id": deal_id, "text": note}, f"mis-note-{key}"))
        if "invalid_phone" in state["flags"]:
            text = f"Телефон пациента в МИС недействителен: {root.phone_raw or '—'}"
            flag = {"deal_id": deal_id, "text": text}
            feed.append(("add_note", flag, f"mis-invalid-phone-{state['row_id']}"))
        if fields and not created:
            payload = {"deal_id": deal_id, "fields": jsonable_fields(fields)}
            feed.append(("update_deal_fields", payload, f"mis-fields-{key}"))
        for other in duplicates:
            flag_duplicate(crm, intake_deal_of(db, row_portal, other) or deal_id, other, contact_id)
    with db.transaction() as s:
        row = s.get(MisAppointment, state["row_id"])
        if row is not None:
            row.deal_id = deal_id
            row.mirrored_target = mirrored_target
            # Only what this job saw counts as mirrored; a newer change queued meanwhile runs on its own.
            row.mirrored_hash = digest
        patient_row = s.get(MisPatient, root.id)
        if patient_row is not None and patient_row.contact_id is None:
            patient_row.contact_id = contact_id
        if deal_id is not None:
            queue_feed(s, row_portal, state["row_id"], deal_id, feed)
    result.update({"deal_id": deal_id, "contact_id": contact_id})
    if feed:
        send_waiting_feed(row_portal)
    return result
