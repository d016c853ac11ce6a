"""The sync engine: one batch of MIS appointments into our database, in the caller's transaction.

Upsert by (portal, source, id). A version applies when it is newer: `changed_at`, then `version`, then the
content hash as a last tie-break, so any arrival order of the same versions ends in the same row. The same
content again is `unchanged`; an older version is `stale`. Every record's outcome goes to the sync log.

Primary vs repeat comes from our own completed-visit history, never from the MIS flag (a disagreement is
logged). After a batch, the kinds of every touched patient's visits are recomputed in start order, so a
history that arrives late still gives the same answer.

A change the CRM must see queues one outbox job per appointment (`mis_mirror_appointment`); a job still
pending for it already covers the change (it reads the row when it runs). No change, no job.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from connectors.types import Appointment, AppointmentBatch, AppointmentReject

from ..clock import now_utc
from ..journey.hooks import plan_from_visits
from ..models import MisAppointment, MisLead, MisPatient, MisSyncRecord, MisSyncRun, OutboxJob, Portal
from ..outbox import after_commit, wake_outbox_jobs
from .matching import e164, name_key
from .settings import MisSettings, mis_settings

__all__ = [
    "MIRROR_OPERATION",
    "SyncResult",
    "content_hash",
    "ingest",
    "mirror_hash",
    "start_run",
    "void_missing",
]

MIRROR_OPERATION = "mis_mirror_appointment"
INTAKE_WINDOW = timedelta(days=30)
CLOCK_SLACK = timedelta(hours=1)
"""A lead the CRM stamped this much after the MIS stamped the booking still came first (two clocks, and a
telephony integration that creates the deal a little after the call)."""
WAKE_GROUP = 50
log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1).astimezone()


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


_FIELDS = tuple(f.name for f in dataclasses.fields(Appointment))


def appointment_doc(a: Appointment) -> dict[str, Any]:
    # Not dataclasses.asdict: its deep copy was a fifth of the import's time.
    return {name: _jsonable(getattr(a, name)) for name in _FIELDS}


def content_hash(a: Appointment) -> str:
    """Hash of what the visit says, not of when the MIS stamped it: a re-export of the same visit matches."""
    doc = appointment_doc(a)
    doc.pop("changed_at")
    doc.pop("version")
    # Instants compare in UTC so the same visit read in another offset hashes the same.
    for key in ("starts_at", "ends_at"):
        value = getattr(a, key)
        doc[key] = None if value is None else value.timestamp()
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _version_key(version: str | None) -> tuple[int, int, str]:
    if version is None:
        return (0, 0, "")
    return (1, int(version), "") if version.isdigit() else (2, 0, version)


def _order(changed_at: datetime | None, version: str | None, digest: str) -> tuple[Any, ...]:
    return (changed_at or _EPOCH, _version_key(version), digest)


@dataclasses.dataclass
class SyncResult:
    run_id: int
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    jobs: int = 0


def start_run(
    session: Session,
    portal: Portal,
    source: str,
    *,
    file_name: str | None = None,
    file_sha256: str | None = None,
    period: tuple[date, date] | None = None,
) -> MisSyncRun:
    run = MisSyncRun(
        portal_id=portal.id,
        source=source,
        file_name=file_name,
        file_sha256=file_sha256,
        period_from=period[0] if period else None,
        period_to=period[1] if period else None,
        counts={},
    )
    session.add(run)
    session.flush()
    return run


class _Engine:
    """One batch's work. New rows are flushed once, after the loop: a flush per record would cost more than
    everything else together (the import floor is 1,000 appointments/s)."""

    def __init__(self, session: Session, portal: Portal, run: MisSyncRun) -> None:
        self.s = session
        self.portal = portal
        self.run = run
        self.settings: MisSettings = mis_settings(portal.settings)
        self.result = SyncResult(run.id)
        self.records: list[dict[str, Any]] = []
        self.changed: set[MisAppointment] = set()
        self.logged: set[MisAppointment] = set()
        self._patients: dict[tuple[str, str], MisPatient] = {}
        self._by_phone: dict[str, list[MisPatient]] = {}
        self._rows: dict[tuple[str, str], MisAppointment] = {}
        self._new: list[tuple[MisAppointment, MisPatient, Appointment]] = []
        self._aliases: dict[MisPatient, MisPatient] = {}
        self.moved: set[MisAppointment] = set()

    def record(self, outcome: str, appointment: MisAppointment | None = None, **values: Any) -> None:
        self.result.counts[outcome] += 1
        self.records.append({"outcome": outcome, "appointment": appointment, **values})
        if appointment is not None and outcome in ("created", "updated", "void"):
            self.logged.add(appointment)

    # patients

    def preload(self, appointments: Sequence[Appointment]) -> None:
        portal_id = self.portal.id
        ids = {a.source_id for a in appointments}
        sources = {a.source for a in appointments}
        if not ids:
            return
        for chunk in _chunks(sorted(ids), 500):
            for row in self.s.scalars(
                select(MisAppointment).where(
                    MisAppointment.portal_id == portal_id,
                    MisAppointment.source.in_(sources),
                    MisAppointment.source_id.in_(chunk),
                )
            ):
                self._rows[(row.source, row.source_id)] = row
        phones = {p for p in (e164(a.patient_phone) for a in appointments) if p}
        keys = {_patient_key(a) for a in appointments}
        found: dict[int, MisPatient] = {}
        for chunk in _chunks(sorted(phones), 500):
            for p in self.s.scalars(
                select(MisPatient).where(MisPatient.portal_id == portal_id, MisPatient.phone_e164.in_(chunk))
            ):
                found[p.id] = p
        for chunk in _chunks(sorted(k[1] for k in keys), 500):
            for p in self.s.scalars(
                select(MisPatient).where(
                    MisPatient.portal_id == portal_id,
                    MisPatient.source.in_(sources),
                    MisPatient.source_patient_id.in_(chunk),
                )
            ):
                found[p.id] = p
        for p in found.values():
            self._remember(p)

    def _remember(self, p: MisPatient) -> None:
        self._patients[(p.source, p.source_patient_id)] = p
        if p.phone_e164:
            bucket = self._by_phone.setdefault(p.phone_e164, [])
            if p not in bucket:
                bucket.append(p)

    def _root(self, p: MisPatient) -> MisPatient:
        if p in self._aliases:
            return self._aliases[p]
        if p.alias_of_id is not None:
            return self.s.get(MisPatient, p.alias_of_id) or p
        return p

    def patient_for(self, a: Appointment) -> tuple[MisPatient, bool]:
        """(patient, linked as an alias of an earlier patient)."""
        key = _patient_key(a)
        known = self._patients.get(key)
        if known is not None:
            return known, False
        phone = e164(a.patient_phone)
        nkey = name_key(a.patient_name)
        flags: list[str] = []
        alias_of: MisPatient | None = None
        if phone is None:
            flags.append("invalid_phone")
        else:
            same_phone = self._by_phone.get(phone, [])
            namesakes = [p for p in same_phone if p.name_key == nkey]
            if namesakes:
                alias_of = self._root(namesakes[0])
            elif same_phone:
                flags.append("shared_phone")
                for other in same_phone:
                    if "shared_phone" not in other.flags:
                        other.flags = [*other.flags, "shared_phone"]
        patient = MisPatient(
            portal_id=self.portal.id,
            source=key[0],
            source_patient_id=key[1],
            name=a.patient_name,
            name_key=nkey,
            phone_raw=a.patient_phone,
            phone_e164=phone,
            other_phones=[p for p in (e164(raw) for raw in a.patient_other_phones) if p and p != phone],
            flags=flags,
        )
        if alias_of is not None:
            self._aliases[patient] = alias_of
        self.s.add(patient)
        self._remember(patient)
        return patient, alias_of is not None

    # appointments

    def apply(self, a: Appointment) -> None:
        digest = content_hash(a)
        row = self._rows.get((a.source, a.source_id))
        if row is not None:
            current = _order(row.changed_at, row.version, row.content_hash)
            if row.content_hash == digest:
                # Same content, newer stamp: keep the stamp, or an older version of other content would
                # later look newer than this one and the end state would depend on arrival order.
                if _order(a.changed_at, a.version, digest) > current:
                    row.changed_at, row.version = a.changed_at, a.version
                self.record("unchanged", row, source_id=a.source_id)
                return
            if _order(a.changed_at, a.version, digest) <= current:
                self.record("stale", row, source_id=a.source_id, reason="older version")
                return
            self._write(row, a, digest)
            self.record("void" if a.status == "void" else "updated", row, source_id=a.source_id)
            return
        patient, linked = self.patient_for(a)
        row = MisAppointment(portal_id=self.portal.id, source=a.source, source_id=a.source_id, kind="primary")
        row.flags = [f for f in patient.flags if f in ("invalid_phone", "shared_phone")]
        self._write(row, a, digest)
        self._rows[(a.source, a.source_id)] = row
        self._new.append((row, patient, a))
        self.record("created", row, source_id=a.source_id)
        if "invalid_phone" in patient.flags:
            self.record(
                "invalid_phone",
                row,
                source_id=a.source_id,
                field="phone",
                reason="not a valid phone number",
                value=a.patient_phone or "",
            )
        if linked:
            self.record(
                "duplicate_linked",
                row,
                source_id=a.source_id,
                reason="same phone and name as an earlier patient",
            )

    def flush_patients(self) -> None:
        """Insert the batch's new patients (one flush) and point the new visits at them."""
        if not self._new:
            return
        _assign_ids(self.s, [p for p in self.s.new if isinstance(p, MisPatient)])
        self.s.flush()
        for patient, root in self._aliases.items():
            patient.alias_of_id = root.id
        for row, patient, _ in self._new:
            row.patient_id = patient.id

    def insert_new(self) -> None:
        """Insert the new visits once their kind and target are decided: one INSERT, no UPDATE after it."""
        if not self._new:
            return
        # The ORM sends consecutive rows with the same set of non-null columns as one executemany: grouped,
        # ten thousand visits go in a handful of statements instead of thousands.
        columns = [c.key for c in MisAppointment.__table__.columns]
        rows = sorted(
            (row for row, _, _ in self._new), key=lambda r: tuple(getattr(r, c) is None for c in columns)
        )
        _assign_ids(self.s, rows)
        self.s.add_all(rows)
        self.s.flush()
        self._take_intake_deals()

    def _take_intake_deals(self) -> None:
        """A booking continues the inquiry: the patient's oldest untaken intake lead of the last 30 days
        gives its deal (reached by any of the patient's numbers). The mirror checks the deal is still open."""
        wanted: list[tuple[MisAppointment, set[str], datetime]] = []
        tz = ZoneInfo(self.portal.timezone)
        for row, patient, a in self._new:
            if a.status in ("void", "cancelled", "no_show") or self._history(row, tz):
                continue
            phones = {p for p in (patient.phone_e164, *patient.other_phones) if p}
            root = self._root(patient)
            if root is not patient:
                phones |= {p for p in (root.phone_e164, *root.other_phones) if p}
            if phones:
                wanted.append((row, phones, a.changed_at or now_utc()))
        if not wanted:
            return
        leads: dict[str, list[MisLead]] = {}
        all_phones = sorted(set().union(*(phones for _, phones, _ in wanted)))
        for chunk in _chunks(all_phones, 500):
            for lead in self.s.scalars(
                select(MisLead)
                .where(
                    MisLead.portal_id == self.portal.id,
                    MisLead.phone_e164.in_(chunk),
                    MisLead.appointment_id.is_(None),
                )
                .order_by(MisLead.lead_created_at, MisLead.id)
            ):
                leads.setdefault(lead.phone_e164 or "", []).append(lead)
        if not leads:
            return
        for row, phones, booked_at in wanted:
            candidates = [
                lead
                for phone in phones
                for lead in leads.get(phone, [])
                if lead.appointment_id is None
                # The inquiry came before the booking, by at most 30 days: a visit first seen long after it
                # was booked (a history import) must not take the patient's newest inquiry.
                and booked_at - INTAKE_WINDOW <= lead.lead_created_at <= booked_at + CLOCK_SLACK
            ]
            if candidates:
                lead = min(candidates, key=lambda c: (c.lead_created_at, c.id))
                lead.appointment_id = row.id
                row.deal_id = lead.deal_id

    def _write(self, row: MisAppointment, a: Appointment, digest: str) -> None:
        row.status = a.status
        row.starts_at = a.starts_at
        row.ends_at = a.ends_at
        row.changed_at = a.changed_at
        row.version = a.version
        row.content_hash = digest
        row.doc = appointment_doc(a)
        self.changed.add(row)

    # primary vs repeat, targets, jobs

    def decide(self) -> None:
        """Primary or repeat, and the stage target, for every visit of every patient the batch touched."""
        if not self.changed:
            return
        groups = self._patient_groups({row.patient_id for row in self.changed})
        root_of = {member: root for root, members in groups.items() for member in members}
        by_root: dict[int, list[MisAppointment]] = {}
        for chunk in _chunks(sorted(root_of), 500):
            for visit in self.s.scalars(select(MisAppointment).where(MisAppointment.patient_id.in_(chunk))):
                by_root.setdefault(root_of[visit.patient_id], []).append(visit)
        # The batch's new visits are not inserted yet: they join their patient's history from memory.
        for row, _, _ in self._new:
            by_root.setdefault(root_of[row.patient_id], []).append(row)
        gap = self.settings.primary_after_gap_months
        tz = ZoneInfo(self.portal.timezone)
        for visits in by_root.values():
            visits.sort(key=lambda v: (v.starts_at, v.source, v.source_id))
            # A visit moved to another time (IDENT: a new reception naming this one) lives on in the new one,
            # which takes its deal: the old one's cancellation (or deletion) moves nothing.
            moved = {(v.source, v.doc["rescheduled_from"]) for v in visits if v.doc.get("rescheduled_from")}
            last_completed: datetime | None = None
            for visit in visits:
                primary = last_completed is None or (
                    gap is not None and visit.starts_at - last_completed > timedelta(days=gap * 30.44)
                )
                kind = "primary" if primary else "repeat"
                mis_primary = visit.doc.get("mis_primary")
                if mis_primary is not None and mis_primary != primary and visit in self.changed:
                    log.info(
                        "mis primary flag disagrees",
                        extra={"appointment_id": visit.id, "mis_primary": mis_primary, "ours": primary},
                    )
                target = self.settings.target(kind, bool(visit.doc.get("waiting_list")), visit.status)
                if visit.status == "void":
                    target = {"void": "1"}
                ended = visit.status in ("cancelled", "no_show", "void")
                if ended and (visit.source, visit.source_id) in moved:
                    target = None
                    self.moved.add(visit)
                if self._history(visit, tz):
                    target = None
                # Only what differs is assigned: an explicit None in a JSON column is sent as a value, which
                # would split the batch's INSERT into many small ones.
                if kind != visit.kind:
                    visit.kind = kind
                    self.changed.add(visit)
                if target != visit.target:
                    visit.target = target
                    self.changed.add(visit)
                if visit.status == "completed":
                    last_completed = visit.starts_at

    def _history(self, visit: MisAppointment, tz: ZoneInfo) -> bool:
        mirror_from = self.settings.mirror_from
        return mirror_from is not None and visit.starts_at.astimezone(tz).date() < mirror_from

    def queue_changed(self) -> None:
        queue = []
        tz = ZoneInfo(self.portal.timezone)
        for row in sorted(self.changed, key=lambda r: r.id):
            if row.target is None and row in self.logged and not self._history(row, tz):
                reason = (
                    "rescheduled: the new visit continues its deal"
                    if row in self.moved
                    else f"no stage for {row.kind}/{row.status}"
                )
                self.record("unmapped", row, source_id=row.source_id, reason=reason)
            if row.target is not None and row.mirrored_hash != mirror_hash(row):
                queue.append(row)
        self._queue(queue)

    def _patient_groups(self, patient_ids: set[int]) -> dict[int, set[int]]:
        """Root patient id → the patient and its aliases (one person's visits share one history)."""
        root_ids: set[int] = set()
        for chunk in _chunks(sorted(patient_ids), 500):
            for pid, alias_of in self.s.execute(
                select(MisPatient.id, MisPatient.alias_of_id).where(MisPatient.id.in_(chunk))
            ):
                root_ids.add(alias_of or pid)
        roots: dict[int, set[int]] = {}
        for chunk in _chunks(sorted(root_ids), 500):
            for pid, alias_of in self.s.execute(
                select(MisPatient.id, MisPatient.alias_of_id).where(
                    MisPatient.portal_id == self.portal.id,
                    (MisPatient.id.in_(chunk)) | (MisPatient.alias_of_id.in_(chunk)),
                )
            ):
                roots.setdefault(alias_of or pid, set()).add(pid)
        return roots

    def _queue(self, rows: list[MisAppointment]) -> None:
        # A job not yet claimed for a visit will read its newest state when it runs: it covers this change.
        # FOR UPDATE holds a worker's claim (which bumps attempts) until this commits, so the job it then
        # runs sees this change; a job claimed before this read gets a successor below.
        pending: set[str] = set()
        origins = [f"mis:{row.id}" for row in rows]
        for chunk in _chunks(origins, 500):
            pending.update(
                self.s.scalars(
                    select(OutboxJob.origin)
                    .where(
                        OutboxJob.portal_id == self.portal.id,
                        OutboxJob.origin.in_(chunk),
                        OutboxJob.state == "pending",
                        OutboxJob.attempts == 0,
                    )
                    .with_for_update()
                )
            )
        # One INSERT for the batch's jobs, not one round trip each (enqueue_outbox flushes per job): the
        # rows are the same OutboxJob rows, woken after commit in groups like the outbox sweep's.
        jobs = [
            OutboxJob(
                portal_id=self.portal.id,
                operation=MIRROR_OPERATION,
                payload={"appointment_id": row.id},
                # Per run: a visit may return to an earlier state (booked → cancelled → booked) and need a
                # job for it again; within a run it is queued once.
                idempotency_key=f"mis-{row.id}-{self.run.id}-{mirror_hash(row)[:16]}",
                deal_id=row.deal_id,
                origin=origin,
            )
            for row, origin in zip(rows, origins, strict=True)
            if origin not in pending
        ]
        if not jobs:
            return
        _assign_ids(self.s, jobs)
        self.s.add_all(jobs)
        self.s.flush()
        ids = [job.id for job in jobs]

        def wake() -> None:
            for start in range(0, len(ids), WAKE_GROUP):
                wake_outbox_jobs(ids[start : start + WAKE_GROUP])

        after_commit(self.s, wake)
        self.result.jobs += len(jobs)

    def flush_log(self) -> None:
        if self.records:
            now = now_utc()
            self.s.execute(
                MisSyncRecord.__table__.insert(),
                [
                    {
                        "portal_id": self.portal.id,
                        "run_id": self.run.id,
                        "row": r.get("row"),
                        "source_id": r.get("source_id"),
                        "outcome": r["outcome"],
                        "field": r.get("field"),
                        "reason": r.get("reason"),
                        "value": r.get("value"),
                        "appointment_id": r["appointment"].id if r["appointment"] is not None else None,
                        "created_at": now,
                    }
                    for r in self.records
                ],
            )
        counts = dict(self.run.counts or {})
        for outcome, n in self.result.counts.items():
            counts[outcome] = counts.get(outcome, 0) + n
        self.run.counts = counts


def _assign_ids(session: Session, objects: Sequence[Any]) -> None:
    """On PostgreSQL, take ids from the table's sequence first: rows with known ids go in as one executemany,
    where `INSERT … RETURNING id` over thousands of rows spent most of the import building statements."""
    if not objects or session.get_bind().dialect.name != "postgresql":
        return
    table = objects[0].__table__.name
    # Without autoflush: a flush here would insert the objects with ids of their own, and the ids set below
    # would then be UPDATEs of primary keys (refused once other rows, like a patient's phones, point at them).
    with session.no_autoflush:
        sequence = session.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table})
        ids = session.scalars(
            text("SELECT nextval(CAST(:s AS regclass)) FROM generate_series(1, :n)"),
            {"s": sequence, "n": len(objects)},
        ).all()
    for obj, new_id in zip(objects, ids, strict=True):
        obj.id = new_id


def mirror_hash(row: MisAppointment) -> str:
    return hashlib.sha256(
        json.dumps([row.content_hash, row.kind, row.target], sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def _patient_key(a: Appointment) -> tuple[str, str]:
    if a.patient_id:
        return a.source, a.patient_id
    # No MIS patient id (some exports): phone + name stands in, so the same person maps to one patient.
    return a.source, f"~{e164(a.patient_phone) or (a.patient_phone or '').strip()}:{name_key(a.patient_name)}"


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def ingest(session: Session, portal: Portal, run: MisSyncRun, batch: AppointmentBatch) -> SyncResult:
    """Apply one batch in the caller's transaction; rejects are logged by row, column, reason and value."""
    engine = _Engine(session, portal, run)
    for reject in batch.rejects:
        _log_reject(engine, reject)
    engine.preload(batch.appointments)
    with session.no_autoflush:
        for appointment in batch.appointments:
            engine.apply(appointment)
    engine.flush_patients()
    if batch.period is not None:
        _void_missing(engine, batch)
    engine.decide()
    engine.insert_new()
    engine.queue_changed()
    plan_from_visits(session, portal, engine.changed)
    engine.flush_log()
    return engine.result


def _log_reject(engine: _Engine, reject: AppointmentReject) -> None:
    engine.record(
        "rejected",
        None,
        row=reject.row,
        source_id=reject.source_id,
        field=reject.field,
        reason=reject.reason,
        value=reject.value,
    )


def _void_missing(engine: _Engine, batch: AppointmentBatch) -> None:
    assert batch.period is not None
    tz = ZoneInfo(engine.portal.timezone)
    first, last = batch.period
    start = datetime.combine(first, datetime.min.time(), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tzinfo=tz)
    # A visit whose row was refused is still in the file: refusing a row must not void its visit.
    present = {a.source_id for a in batch.appointments} | {r.source_id for r in batch.rejects if r.source_id}
    sources = {a.source for a in batch.appointments} or {engine.run.source}
    void_missing(engine, sources, start, end, present)


def void_missing(
    engine: _Engine, sources: set[str], start: datetime, end: datetime, present: set[str]
) -> None:
    """Visits in [start, end) that the authoritative read no longer has become `void` (newest version)."""
    now = now_utc()
    for row in engine.s.scalars(
        select(MisAppointment).where(
            MisAppointment.portal_id == engine.portal.id,
            MisAppointment.source.in_(sources),
            MisAppointment.starts_at >= start,
            MisAppointment.starts_at < end,
            MisAppointment.status != "void",
        )
    ):
        if row.source_id in present:
            continue
        old = Appointment(**{**_from_doc(row.doc), "status": "void", "changed_at": now})
        engine._rows[(row.source, row.source_id)] = row
        engine._write(row, old, content_hash(old))
        engine.record("void", row, source_id=row.source_id, reason="gone from the MIS")


def _from_doc(doc: dict[str, Any]) -> dict[str, Any]:
    values = dict(doc)
    for key in ("starts_at", "ends_at", "changed_at"):
        if values.get(key):
            values[key] = datetime.fromisoformat(values[key])
    return values
