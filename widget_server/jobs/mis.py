"""MIS jobs: the outbox operation that mirrors one appointment into the CRM.

The job reads the appointment as it is when the job runs, so several changes queued before it ran go out as
one: contact (found by phone + name once per patient, else created), the deal (created in the mapped pipeline,
or moved), and a feed note «Запись 12.03.2026 10:00, Смирнов И. П. (терапия): Посетил клинику». Every create
carries a key derived from our row, so a retried job finds what the first attempt made.

Notes are not sent by the job itself: they become `add_note` outbox jobs (origin `mis-feed:<visit>`) that
go to the CRM through the outbox's note batches, 50 per request where the CRM takes batches. An import
queues hundreds of visit jobs; while more of them wait, notes are held until a full batch has gathered, and
the last visit job sends the rest. The outbox sweep sends any left behind by a crash.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from connectors.base import CrmClient
from connectors.helix.export import SOURCE as HELIX_SOURCE
from connectors.helix.export import HelixFileError, parse_export, read_rows
from connectors.mis_ident.readers import IdentDbReader
from connectors.types import (
    Contact,
    CrmEvent,
    DealCreated,
    DealStageChanged,
    FieldValue,
    NewContact,
    NewDeal,
    NewTask,
    OAuthToken,
    StageRef,
)

from .. import runtime
from ..appointments.matching import name_key
from ..appointments.settings import mis_settings
from ..appointments.sync import MIRROR_OPERATION, ingest, mirror_hash, start_run
from ..appointments.tickets import ident_phone, offer_lead
from ..clock import local_today, now_utc
from ..models import MisAppointment, MisLead, MisPatient, MisSyncRecord, MisSyncRun, OutboxJob, Portal, utcnow
from ..money import minor_to_decimal
from ..outbox import after_commit
from ..registry import crm_for
from .joblog import logged_job

__all__ = [
    "STATUS_LABELS",
    "HelixImportRefused",
    "accept_helix_upload",
    "appointment_note",
    "helix_folder",
    "ident_reader",
    "import_helix_file",
    "mis_mirror_appointment",
    "offer_intake_lead",
    "poll_helix_folders",
    "poll_ident_databases",
    "purge_mis_sync_log",
    "reconcile_ident_databases",
    "run_helix_upload",
    "set_ident_dsn",
    "short_name",
]

STATUS_LABELS = {
    "requested": "Заявка",
    "booked": "Записан на приём",
    "confirmed": "Подтвердил запись",
    "arrived": "Пришёл",
    "completed": "Посетил клинику",
    "cancelled": "Отменил запись",
    "no_show": "Не пришёл",
    "void": "Удалено в МИС",
}
VOID_REASON = "Удалено в МИС"
DUPLICATE_TASK = "Проверить дубль"
FEED_ORIGIN = "mis-feed:"
FEED_BATCH = 50
"""Notes per CRM request (amoCRM's `POST /api/v4/leads/notes` takes 50): held until this many wait."""


def short_name(full: str | None) -> str:
    """«Смирнов Игорь Петрович» → «Смирнов И. П.»."""
    parts = (full or "").split()
    if not parts:
        return "врач не указан"
    return " ".join([parts[0], *(f"{p[0]}." for p in parts[1:3])])


def _specialty(doc: dict[str, Any], doctor_map: dict[str, Any] | None) -> str | None:
    """The MIS's, else the one the admin set for that doctor."""
    mapped = ((doctor_map or {}).get(str(doc.get("doctor_id"))) or {}).get("specialty")
    return doc.get("specialty") or mapped


def appointment_note(
    doc: dict[str, Any], status: str, timezone: str, doctor_map: dict[str, Any] | None = None
) -> str:
    """«Запись 12.03.2026 10:00, Смирнов И. П. (терапия): Посетил клинику»."""
    starts = datetime.fromisoformat(doc["starts_at"]).astimezone(ZoneInfo(timezone))
    doctor = short_name(doc.get("doctor_name"))
    specialty = _specialty(doc, doctor_map)
    if specialty:
        doctor = f"{doctor} ({specialty})"
    return f"Запись {starts:%d.%m.%Y %H:%M}, {doctor}: {STATUS_LABELS.get(status, status)}"


def deal_fields(
    doc: dict[str, Any],
    status: str,
    *,
    timezone: str,
    currency: str,
    field_map: Mapping[str, str],
    doctor_map: dict[str, Any] | None = None,
) -> dict[str, FieldValue]:
    """The visit facts the admin mapped (`mis.field_map`) by CRM field id; a missing fact clears its field."""
    if not field_map:
        return {}
    starts = datetime.fromisoformat(doc["starts_at"]).astimezone(ZoneInfo(timezone))
    amount = doc.get("amount_minor")
    facts: dict[str, FieldValue] = {
        "visit_at": f"{starts:%d.%m.%Y %H:%M}",
        "visit_date": starts.date(),
        "doctor": short_name(doc["doctor_name"]) if doc.get("doctor_name") else None,
        "specialty": _specialty(doc, doctor_map),
        "branch": doc.get("branch"),
        "status": STATUS_LABELS.get(status, status),
        "card_number": doc.get("card_number"),
        "amount": None if amount is None else str(minor_to_decimal(int(amount), currency)),
    }
    return {field_id: facts[key] for key, field_id in field_map.items() if key in facts}


def _jsonable_fields(fields: Mapping[str, FieldValue]) -> dict[str, Any]:
    """As the outbox's `update_deal_fields` payload reads them back (`{"date": …}`, lists for tuples)."""
    return {
        k: {"date": v.isoformat()} if isinstance(v, date) else list(v) if isinstance(v, tuple) else v
        for k, v in fields.items()
    }


def _contact_id(crm: CrmClient, patient: MisPatient, deal_contact: str | None) -> tuple[str, list[Contact]]:
    """(our contact, other CRM contacts of the same person). The contact of the inquiry's deal is ours, else
    the oldest contact with one of the patient's numbers and the same name; a name alone never matches, and a
    number the family shares matches nobody."""
    if patient.contact_id:
        return patient.contact_id, []
    same: dict[str, Contact] = {}
    phones = [p for p in (patient.phone_e164, *patient.other_phones) if p]
    if "shared_phone" not in patient.flags:
        for phone in phones:
            for contact in crm.find_contacts_by_phone(phone):
                if name_key(contact.name) == patient.name_key:
                    same[contact.id] = contact
    ordered = sorted(same.values(), key=lambda c: (len(c.id), c.id))
    if deal_contact is not None:
        return deal_contact, [c for c in ordered if c.id != deal_contact]
    if ordered:
        return ordered[0].id, ordered[1:]
    contact = crm.create_contact(
        NewContact(name=patient.name, phones=tuple(phones)),
        idempotency_key=f"mis-contact-{patient.id}",
    )
    return contact.id, []


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
    contact_id, duplicates = _contact_id(crm, root, deal_contact)
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
            payload = {"deal_id": deal_id, "fields": _jsonable_fields(fields)}
            feed.append(("update_deal_fields", payload, f"mis-fields-{key}"))
        for other in duplicates:
            _flag_duplicate(crm, _deal_of(db, row_portal, other) or deal_id, other, contact_id)
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
            _queue_feed(s, row_portal, state["row_id"], deal_id, feed)
    result.update({"deal_id": deal_id, "contact_id": contact_id})
    if feed:
        send_waiting_feed(row_portal)
    return result


def _queue_feed(
    s: Session, portal_id: int, row_id: int, deal_id: str, feed: list[tuple[str, dict[str, Any], str]]
) -> None:
    """The visit's notes and field updates as outbox jobs; a key already queued (the invalid-phone flag of an
    earlier job) is not queued twice."""
    keys = [key for *_rest, key in feed]
    known = set(
        s.scalars(
            select(OutboxJob.idempotency_key).where(
                OutboxJob.portal_id == portal_id, OutboxJob.idempotency_key.in_(keys)
            )
        )
    )
    for operation, payload, key in feed:
        if key not in known:
            s.add(
                OutboxJob(
                    portal_id=portal_id,
                    operation=operation,
                    payload=payload,
                    idempotency_key=key,
                    deal_id=deal_id,
                    origin=f"{FEED_ORIGIN}{row_id}",
                )
            )


def send_waiting_feed(portal_id: int) -> str:
    """Send the portal's waiting MIS notes and field updates through the outbox's batches: full batches while
    visit jobs are still to run, everything once none is. Two workers doing this at once is harmless: each
    job is claimed once."""
    from .mirror import mirror_outbox_jobs  # the mirror imports the operations table, which reaches here

    now = utcnow()
    with runtime.current().db.transaction() as s:
        busy = s.scalar(
            select(OutboxJob.id)
            .where(
                OutboxJob.portal_id == portal_id,
                OutboxJob.operation == MIRROR_OPERATION,
                OutboxJob.state == "pending",
                OutboxJob.attempts == 0,
                OutboxJob.next_attempt_at <= now,
            )
            .limit(1)
        )
        waiting = list(
            s.scalars(
                select(OutboxJob.id)
                .where(
                    OutboxJob.portal_id == portal_id,
                    OutboxJob.state == "pending",
                    OutboxJob.attempts == 0,
                    OutboxJob.origin.like(f"{FEED_ORIGIN}%"),
                )
                .order_by(OutboxJob.id)
                .limit(FEED_BATCH * 10)
            )
        )
    if busy is not None:
        waiting = waiting[: len(waiting) // FEED_BATCH * FEED_BATCH]
    return mirror_outbox_jobs(waiting) if waiting else "held"


def _deal_of(db: Any, portal_id: int, contact: Contact) -> str | None:
    """The untaken intake deal of a duplicate contact (by its numbers): its «Проверить дубль» goes there."""
    phones = [p for p in (ident_phone(raw) for raw in contact.phones) if p]
    if not phones:
        return None
    with db.transaction() as s:
        return s.scalar(
            select(MisLead.deal_id)
            .where(
                MisLead.portal_id == portal_id,
                MisLead.phone_e164.in_(phones),
                MisLead.appointment_id.is_(None),
            )
            .order_by(MisLead.lead_created_at.desc())
            .limit(1)
        )


def _flag_duplicate(crm: CrmClient, deal_id: str, other: Contact, kept: str) -> None:
    deal = crm.get_deal(deal_id)
    responsible = deal.responsible_user_id or next((u.id for u in crm.list_users() if u.is_active), None)
    crm.add_note(
        deal_id,
        f"Контакт {other.id} «{other.name}» — тот же пациент, что и контакт {kept}: проверьте дубль",
        idempotency_key=f"mis-dup-note-{deal_id}-{other.id}",
    )
    if responsible is not None:
        crm.create_task(
            NewTask(
                deal_id=deal_id,
                responsible_user_id=responsible,
                text=f"{DUPLICATE_TASK}: контакт {other.id}",
                due_at=now_utc(),
            ),
            idempotency_key=f"mis-dup-task-{deal_id}-{other.id}",
        )


# --- intake leads for IDENT's GetTickets ------------------------------------------------------------------


def offer_intake_lead(portal_id: int, event: CrmEvent) -> None:
    """A deal created in, moved into or routed out of the intake pipeline (`mis.intake_pipeline_id`; seed
    002's «Определение типа приёма» routes leads on at once) becomes a ticket IDENT pulls, with the name,
    phone and e-mail of the deal's contact. Once per deal: later moves cost no CRM read."""
    assert isinstance(event, DealCreated | DealStageChanged)
    rt = runtime.current()
    with rt.db.transaction() as s:
        portal = s.get(Portal, portal_id)
        if portal is None or not portal.is_usable:
            return
        intake = ((portal.settings or {}).get("mis") or {}).get("intake_pipeline_id")
        known = s.scalar(
            select(MisLead.id).where(MisLead.portal_id == portal_id, MisLead.deal_id == event.deal_id)
        )
        s.expunge(portal)
    if not intake or known is not None:
        return
    if isinstance(event, DealStageChanged):
        passed = {event.stage.pipeline_id, event.previous.pipeline_id if event.previous else None}
        if intake not in passed:
            return
    crm = crm_for(portal, rt)
    deal = crm.get_deal(event.deal_id)
    if deal.is_closed or (isinstance(event, DealCreated) and deal.stage.pipeline_id != intake):
        # A deal already routed on is taken by its stage-change event, which names the pipeline it left.
        return
    contact = crm.get_contact(deal.contact_ids[0]) if deal.contact_ids else None
    phones = contact.phones if contact else ()
    # The first number IDENT can take; else the first as typed (the ticket is withheld and logged).
    phone = next((p for p in phones if ident_phone(p)), phones[0] if phones else None)
    with rt.db.transaction() as s:
        row = s.get(Portal, portal_id)
        assert row is not None
        offer_lead(
            s,
            row,
            deal_id=deal.id,
            created_at=deal.created_at or event.occurred_at or now_utc(),
            name=contact.name if contact else deal.name,
            phone=phone,
            email=contact.emails[0] if contact and contact.emails else None,
        )


# --- Helix file import (upload and watch folder) -------------------------------------------------------


class HelixImportRefused(ValueError):
    """The file cannot be imported at all: nothing of it was written. `field` names what is wrong."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _first_import(session: Session, portal: Portal, data: bytes) -> tuple[str, MisSyncRun | None]:
    """The file's SHA-256, and the run that first took the same bytes (upload, folder or CLI), if any."""
    digest = hashlib.sha256(data).hexdigest()
    first = session.scalar(
        select(MisSyncRun).where(MisSyncRun.portal_id == portal.id, MisSyncRun.file_sha256 == digest)
    )
    return digest, first


def import_helix_file(session: Any, portal: Portal, data: bytes, file_name: str) -> tuple[MisSyncRun, bool]:
    """(run, True) for a new file; (the first run, False) when the same bytes were imported before."""
    digest, first = _first_import(session, portal, data)
    if first is not None:
        return first, False
    try:
        batch = parse_export(data, tz=ZoneInfo(portal.timezone), filename=file_name)
    except HelixFileError as exc:
        raise HelixImportRefused(exc.field, exc.reason) from None
    run = start_run(
        session, portal, HELIX_SOURCE, file_name=file_name, file_sha256=digest, period=batch.period
    )
    ingest(session, portal, run, batch)
    run.state = "done"
    run.finished_at = now_utc()
    return run, True


# --- Helix uploads: stored at once, imported by a job ----------------------------------------------------

UPLOAD_QUEUED = "queued"
UPLOAD_LOST_AFTER = timedelta(minutes=2)
"""A queued upload older than this lost its wake-up (Redis down at commit): the folder poll re-sends it."""


def helix_upload_path(instance_path: Path, portal: Portal, sha256: str) -> Path:
    return helix_folder(instance_path, portal) / "uploads" / sha256


def accept_helix_upload(
    session: Session, portal: Portal, data: bytes, file_name: str
) -> tuple[MisSyncRun, bool]:
    """(run, True) for a new file: stored on disk, its run `queued` and a job woken after commit; (the first
    run, False) when the same bytes came before. An unreadable file (format, encoding, a required column) is
    `HelixImportRefused` with nothing stored: reading it is cheap next to importing it."""
    digest, first = _first_import(session, portal, data)
    if first is not None:
        return first, False
    try:
        read_rows(data, filename=file_name)
    except HelixFileError as exc:
        raise HelixImportRefused(exc.field, exc.reason) from None
    path = helix_upload_path(runtime.current().settings.instance_path, portal, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole before the run commits, so a queued run always has its file.
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)
    run = start_run(session, portal, HELIX_SOURCE, file_name=file_name, file_sha256=digest)
    run.state = UPLOAD_QUEUED
    run_id = run.id
    after_commit(session, lambda: _wake_upload(run_id))
    return run, True


def _wake_upload(run_id: int) -> None:
    runtime.current().queue("mis").enqueue(
        "widget_server.jobs.mis.run_helix_upload", run_id, job_id=f"helix-upload-{run_id}-{time.time_ns()}"
    )


@logged_job("run_helix_upload")
def run_helix_upload(run_id: int) -> str:
    """Import a stored upload into its run, in one transaction: a crash leaves it `queued` for a retry, and
    the run's row lock keeps a second wake-up from importing it twice."""
    rt = runtime.current()
    with rt.db.transaction() as s:
        run = s.scalar(select(MisSyncRun).where(MisSyncRun.id == run_id).with_for_update())
        if run is None or run.state != UPLOAD_QUEUED:
            return "skipped"
        portal = s.get(Portal, run.portal_id)
        assert portal is not None and run.file_sha256 is not None
        path = helix_upload_path(rt.settings.instance_path, portal, run.file_sha256)
        try:
            data = path.read_bytes()
            batch = parse_export(data, tz=ZoneInfo(portal.timezone), filename=run.file_name or "")
        except (HelixFileError, OSError) as exc:
            reason = f"{exc.field}: {exc.reason}" if isinstance(exc, HelixFileError) else f"file: {exc}"
            run.state, run.error, run.finished_at = "failed", reason, now_utc()
            return "failed"
        if batch.period is not None:
            run.period_from, run.period_to = batch.period
        ingest(s, portal, run, batch)
        run.state, run.finished_at = "done", now_utc()
    path.unlink(missing_ok=True)
    return "done"


def _wake_lost_uploads(portal_id: int) -> int:
    with runtime.current().db.transaction() as s:
        lost = list(
            s.scalars(
                select(MisSyncRun.id).where(
                    MisSyncRun.portal_id == portal_id,
                    MisSyncRun.state == UPLOAD_QUEUED,
                    MisSyncRun.created_at < now_utc() - UPLOAD_LOST_AFTER,
                )
            )
        )
    for run_id in lost:
        _wake_upload(run_id)
    return len(lost)


# --- watch folder and log retention ---------------------------------------------------------------------

SYNC_LOG_TTL = timedelta(days=90)
SETTLE_S = 5.0
"""A file modified more recently than this may still be being copied in: the next poll takes it."""


def helix_folder(instance_path: Path, portal: Portal) -> Path:
    """`<instance>/mis/<slug>/helix`, unless the admin set `mis.helix_watch_dir`."""
    configured = ((portal.settings or {}).get("mis") or {}).get("helix_watch_dir")
    return Path(configured) if configured else instance_path / "mis" / portal.slug / "helix"


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / path.name
    if target.exists():
        target = folder / f"{path.stem}-{int(time.time())}{path.suffix}"
    return Path(shutil.move(str(path), target))


def _write_report(path: Path, lines: list[str]) -> None:
    path.with_name(path.name + ".report.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def _poll_portal_folder(portal_id: int, instance_path: Path) -> dict[str, int]:
    db = runtime.current().db
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        if portal is None:
            return {}
        base = helix_folder(instance_path, portal)
    incoming = base / "incoming"
    if not incoming.is_dir():
        return {}
    counts = {"imported": 0, "failed": 0, "duplicate": 0}
    now = time.time()
    for path in sorted(incoming.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix in (".part", ".tmp"):
            continue
        if now - path.stat().st_mtime < SETTLE_S:
            continue
        data = path.read_bytes()
        try:
            with db.transaction() as s:
                portal = s.get(Portal, portal_id)
                assert portal is not None
                run, new = import_helix_file(s, portal, data, path.name)
                run_id, run_counts = run.id, dict(run.counts)
                rejects = [
                    f"строка {r.row}, {r.field}: {r.reason} ({r.value})"
                    for r in s.scalars(
                        select(MisSyncRecord)
                        .where(MisSyncRecord.run_id == run.id, MisSyncRecord.outcome == "rejected")
                        .order_by(MisSyncRecord.id)
                    )
                ]
        except HelixImportRefused as refused:
            moved = _move(path, base / "failed")
            _write_report(moved, [f"Файл не импортирован / not imported: {refused.field}: {refused.reason}"])
            counts["failed"] += 1
            continue
        moved = _move(path, base / "done")
        summary = ", ".join(f"{k} {v}" for k, v in sorted(run_counts.items()))
        head = (
            f"Импорт / import {run_id}: {summary}"
            if new
            else f"Уже импортирован / already imported: {run_id}"
        )
        _write_report(moved, [head, *rejects])
        counts["imported" if new else "duplicate"] += 1
    return counts


@logged_job("poll_helix_folders")
def poll_helix_folders() -> str:
    """Every active portal's Helix watch folder: `incoming/` → `done/` or `failed/`, each with a report; and
    uploads whose wake-up was lost are woken again."""
    rt = runtime.current()
    with rt.db.transaction() as s:
        portal_ids = list(s.scalars(select(Portal.id).where(Portal.status == "active").order_by(Portal.id)))
    totals: dict[str, int] = {}
    for portal_id in portal_ids:
        for key, value in _poll_portal_folder(portal_id, rt.settings.instance_path).items():
            totals[key] = totals.get(key, 0) + value
        if woken := _wake_lost_uploads(portal_id):
            totals["uploads_rewoken"] = totals.get("uploads_rewoken", 0) + woken
    return " ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "nothing"


def _purge_portal_sync_log(portal_id: int, day: date) -> dict[str, Any]:
    cutoff = now_utc() - SYNC_LOG_TTL
    with runtime.current().db.transaction() as s:
        records = s.execute(
            delete(MisSyncRecord).where(
                MisSyncRecord.portal_id == portal_id, MisSyncRecord.created_at < cutoff
            )
        ).rowcount
        runs = s.execute(
            delete(MisSyncRun).where(MisSyncRun.portal_id == portal_id, MisSyncRun.created_at < cutoff)
        ).rowcount
    return {"records": records, "runs": runs, "day": day.isoformat()}


@logged_job("purge_mis_sync_log")
def purge_mis_sync_log() -> str:
    """The sync log keeps 90 days; once a day per portal."""
    from .periodic import run_once_per_portal_day  # periodic → inbox → this module (intake reaction)

    counts = run_once_per_portal_day("purge_mis_sync_log", _purge_portal_sync_log)
    return f"done {counts['done']} skipped {counts['skipped']}"


# --- IDENT database: incremental poll and daily reconciliation ------------------------------------------

IDENT_SOURCE = "ident_db"
BACKFILL = timedelta(days=731)
"""24 months of receptions on the first read: the completed-visit history primary vs repeat needs."""
RECONCILE_BACK = timedelta(days=30)
RECONCILE_AHEAD = timedelta(days=90)


def ident_connect(dsn: str) -> Any:
    """A read-only pyodbc connection (extra `ident-db`); imported here so the app runs without it."""
    import pyodbc  # type: ignore[import-not-found]

    return pyodbc.connect(dsn, readonly=True, timeout=30)


def set_ident_dsn(portal: Portal, dsn: str | None) -> None:
    """Store the clinic's ODBC connection string encrypted (it carries the SQL login's password). The first
    connection also sets `mirror_from` to today: the backfill's past visits are history for primary vs
    repeat, not deals to create."""
    settings = dict(portal.settings or {})
    mis = dict(settings.get("mis") or {})
    if dsn:
        token = OAuthToken(access_token=dsn, refresh_token=None, expires_at=None)
        mis["ident_db"] = {"dsn_ciphertext": runtime.current().cipher.encrypt_token(token)}
        mis.setdefault("mirror_from", local_today(portal.timezone).isoformat())
    else:
        mis.pop("ident_db", None)
    settings["mis"] = mis
    portal.settings = settings


def ident_reader(portal: Portal) -> IdentDbReader | None:
    mis = (portal.settings or {}).get("mis") or {}
    ciphertext = (mis.get("ident_db") or {}).get("dsn_ciphertext")
    if not ciphertext:
        return None
    dsn = runtime.current().cipher.decrypt_token(ciphertext).access_token
    return IdentDbReader(
        lambda: ident_connect(dsn),
        tz=ZoneInfo(portal.timezone),
        no_show_reasons=mis_settings(portal.settings).no_show_reasons,
        backfill_from=local_today(portal.timezone) - BACKFILL,
    )


def _ident_portals() -> list[int]:
    with runtime.current().db.transaction() as s:
        return [
            p.id
            for p in s.scalars(select(Portal).where(Portal.status == "active").order_by(Portal.id))
            if ((p.settings or {}).get("mis") or {}).get("ident_db")
        ]


def sync_ident_portal(portal_id: int) -> dict[str, int]:
    """Receptions changed since the cursor (re-read from five minutes before it) into the sync engine."""
    db = runtime.current().db
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        if portal is None:
            return {}
        reader = ident_reader(portal)
        cursor = ((portal.settings or {}).get("mis") or {}).get("ident_cursor")
    if reader is None:
        return {}
    batch = reader.fetch(cursor)
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        assert portal is not None
        run = start_run(s, portal, IDENT_SOURCE)
        result = ingest(s, portal, run, batch)
        run.state, run.finished_at = "done", now_utc()
        if batch.next_cursor and batch.next_cursor != cursor:
            settings = dict(portal.settings)
            settings["mis"] = {**settings.get("mis", {}), "ident_cursor": batch.next_cursor}
            portal.settings = settings
    return dict(result.counts)


@logged_job("poll_ident_databases")
def poll_ident_databases() -> str:
    totals: dict[str, int] = {}
    for portal_id in _ident_portals():
        for key, value in sync_ident_portal(portal_id).items():
            totals[key] = totals.get(key, 0) + value
    return " ".join(f"{k} {v}" for k, v in sorted(totals.items())) or "nothing"


def reconcile_ident_portal(portal_id: int, today: date) -> dict[str, Any]:
    """The whole window −30…+90 days re-read: what changed is applied, what is gone becomes `void`."""
    db = runtime.current().db
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        reader = ident_reader(portal) if portal is not None else None
    if reader is None:
        return {"skipped": "no IDENT database"}
    batch = reader.fetch_window(today - RECONCILE_BACK, today + RECONCILE_AHEAD)
    with db.transaction() as s:
        portal = s.get(Portal, portal_id)
        assert portal is not None
        run = start_run(s, portal, IDENT_SOURCE, period=batch.period)
        result = ingest(s, portal, run, batch)
        run.state, run.finished_at = "done", now_utc()
    return {"counts": dict(result.counts), "day": today.isoformat()}


def _reconcile_if_configured(portal_id: int, day: date) -> dict[str, Any]:
    return reconcile_ident_portal(portal_id, day)


@logged_job("reconcile_ident_databases")
def reconcile_ident_databases() -> str:
    from .periodic import run_once_per_portal_day  # periodic → inbox → this module (intake reaction)

    counts = run_once_per_portal_day("reconcile_ident_databases", _reconcile_if_configured)
    return f"done {counts['done']} skipped {counts['skipped']}"
