"""SandboxCrm: a `CrmClient` that keeps its CRM in our own database, for the demo and the contract suite.

It copies the rules that amoCRM and Bitrix24 both follow, so that code tested against it behaves the
same way against them:

- **Tenancy.** An instance serves one portal. A deal, user or contact id of another portal, like an
  unknown or malformed id, is `Rejected(status=404)`. Invalid input is `Rejected(status=422)` with
  `path` naming the argument.
- **Stages.** Pipeline and stage ids are free-form strings; the sandbox keeps no list of pipelines. By
  convention the stage ids ``"won"`` and ``"lost"`` are closed stages in every pipeline. Creating a deal
  in one of them, or moving a deal to one, closes the deal. Moving it to any other stage reopens it and
  clears the loss reason. A `loss_reason` is accepted only with a ``"lost"`` stage, because a closed-won
  or open deal with a loss reason is a caller bug.
- **Idempotency.** Each create takes a key that is unique per portal and per kind of record (deals,
  contacts, notes, tasks, files, notifications). A replay returns the first record, even if the body
  differs, which is what the outbox relies on.
- **Custom fields** hold `FieldValue`s. Dates are stored as ``{"$date": "YYYY-MM-DD"}`` and tuples as
  JSON lists, so both read back as `date` and `tuple`. `update_deal_fields` merges, and a value of None
  removes the field.
- **Phones** are normalised to E.164 when a contact is created (`phonenumbers`, default region RU).
  `find_contacts_by_phone` takes E.164 and compares exactly.

Each public call runs in exactly one `Database.transaction()`. On SQLite every transaction is BEGIN
IMMEDIATE, so nesting a second one in the same thread would wait on itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connectors.errors import Rejected
from connectors.phones import e164
from connectors.types import (
    Company,
    Contact,
    CrmUser,
    Deal,
    DealUpdate,
    FieldValue,
    FileRef,
    Handover,
    NewContact,
    NewDeal,
    NewTask,
    NoteRef,
    OutgoingMessage,
    StageRef,
    TaskRef,
)
from widget_server.db import Database, mark_read_only

from .models import (
    KEY_LENGTH,
    SandboxCompany,
    SandboxCompanyNote,
    SandboxContact,
    SandboxDeal,
    SandboxFile,
    SandboxNote,
    SandboxNotification,
    SandboxTask,
    SandboxUser,
)

__all__ = [
    "CLOSED_STAGES",
    "DEFAULT_PHONE_REGION",
    "LOST_STAGE",
    "MESSAGE_NOTE_PREFIX",
    "WON_STAGE",
    "FileRecord",
    "SandboxCrm",
    "TaskRecord",
    "decode_field",
    "encode_field",
    "normalize_phone",
]

WON_STAGE = "won"
LOST_STAGE = "lost"
CLOSED_STAGES = frozenset({WON_STAGE, LOST_STAGE})
DEFAULT_PHONE_REGION = "RU"
MESSAGE_NOTE_PREFIX = "Сообщение пациенту: "

_DATE_TAG = "$date"
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Row ids are BIGINT; a longer number cannot be ours and would overflow the PostgreSQL parameter.
_MAX_ID_DIGITS = 18

_Keyed = TypeVar(
    "_Keyed",
    SandboxDeal,
    SandboxContact,
    SandboxNote,
    SandboxTask,
    SandboxFile,
    SandboxNotification,
    SandboxCompanyNote,
)


@dataclass(frozen=True)
class TaskRecord:
    """A task as the sandbox stores it (read-back for the demo and tests)."""

    id: str
    deal_id: str
    responsible_user_id: str
    text: str
    due_at: datetime
    is_completed: bool


@dataclass(frozen=True)
class FileRecord:
    """A file attached to a deal (read-back for the demo and tests)."""

    id: str
    deal_id: str
    name: str
    mime_type: str
    size: int
    content: bytes


# --- values ---------------------------------------------------------------------------------------------


def _invalid(path: str, reason: str) -> Rejected:
    return Rejected(f"{path}: {reason}", status=422, code="invalid", path=path)


def _not_found(path: str, what: str, value: object) -> Rejected:
    return Rejected(f"{path}: {what} {value!r} not found", status=404, code="not_found", path=path)


def encode_field(path: str, value: FieldValue) -> Any:
    """The JSON form of a custom-field value; `Rejected` for anything that is not a `FieldValue`."""
    # bool before int (bool is an int) and datetime before date (datetime is a date).
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, datetime):
        raise _invalid(path, f"a datetime is not a field value, pass a date (got {value!r})")
    if isinstance(value, date):
        return {_DATE_TAG: value.isoformat()}
    if isinstance(value, tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    raise _invalid(path, f"unsupported field value {value!r} (str, int, bool, date, None or tuple of str)")


def decode_field(stored: Any) -> FieldValue:
    if isinstance(stored, dict) and _DATE_TAG in stored:
        return date.fromisoformat(stored[_DATE_TAG])
    if isinstance(stored, list):
        return tuple(stored)
    return stored


def _encode_fields(fields: Mapping[str, FieldValue], path: str = "fields") -> dict[str, Any]:
    encoded: dict[str, Any] = {}
    for name, value in fields.items():
        if not isinstance(name, str) or not name:
            raise _invalid(path, f"field names are non-empty strings (got {name!r})")
        encoded[name] = encode_field(f"{path}.{name}", value)
    return encoded


def normalize_phone(raw: str, region: str = DEFAULT_PHONE_REGION) -> str:
    """E.164 form of a phone as people type it ("8 (916) 123-45-67" → "+79161234567")."""
    number = e164(raw, region)
    if number is None:
        raise Rejected(
            f"phones: invalid phone number {raw!r}", status=422, code="invalid_phone", path="phones"
        )
    return number


def _text(path: str, value: object, max_length: int | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(path, f"a non-empty string is required (got {value!r})")
    if max_length is not None and len(value) > max_length:
        raise _invalid(path, f"at most {max_length} characters (got {len(value)})")
    return value


def _key(value: object) -> str:
    return _text("idempotency_key", value, KEY_LENGTH)


def _stage(stage: StageRef) -> StageRef:
    _text("stage.pipeline_id", stage.pipeline_id, 64)
    _text("stage.stage_id", stage.stage_id, 64)
    return stage


def _price(value: object) -> int | None:
    # Money is integer minor units; a float here is a bug upstream, not something to round.
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    raise _invalid("price_minor", f"integer minor units or None (got {value!r})")


def _parse_id(value: object) -> int | None:
    text = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else ""
    if not text.isascii() or not text.isdigit() or len(text) > _MAX_ID_DIGITS:
        return None
    return int(text)


def _str_id(value: int | None) -> str | None:
    return None if value is None else str(value)


# --- client ---------------------------------------------------------------------------------------------


class SandboxCrm:
    """The `CrmClient` of one sandbox portal."""

    def __init__(self, db: Database, portal_id: int, *, timezone: str = "UTC") -> None:
        self._db = db
        self._portal_id = portal_id
        self.timezone = ZoneInfo(timezone)

    @property
    def portal_id(self) -> int:
        return self._portal_id

    # deals

    def get_deal(self, deal_id: str) -> Deal:
        with self._db.transaction() as s:
            # A reader: on SQLite it must not queue behind the write lock a request already holds.
            mark_read_only(s)
            return _to_deal(self._deal(s, deal_id))

    def update_deal_fields(self, deal_id: str, fields: dict[str, FieldValue]) -> None:
        changes = _encode_fields(fields)
        with self._db.transaction() as s:
            _merge_fields(self._deal(s, deal_id, lock=True), changes)

    def update_deals(self, updates: Sequence[DealUpdate]) -> None:
        # Validate the whole batch first; the sandbox then applies it in one transaction (all or nothing).
        batch = [(u.deal_id, _encode_fields(u.fields, f"updates[{i}].fields")) for i, u in enumerate(updates)]
        if not batch:
            return
        with self._db.transaction() as s:
            for i, (update, (deal_id, changes)) in enumerate(zip(updates, batch, strict=True)):
                row = self._deal(s, deal_id, lock=True)
                _merge_fields(row, changes)
                if update.responsible_user_id is not None:
                    path = f"updates[{i}].responsible_user_id"
                    row.responsible_user_id = self._user(s, update.responsible_user_id, path=path).id

    def move_deal(self, deal_id: str, stage: StageRef, *, loss_reason: str | None = None) -> None:
        _stage(stage)
        if loss_reason is not None:
            _text("loss_reason", loss_reason)
            if stage.stage_id != LOST_STAGE:
                raise _invalid("loss_reason", f"only a {LOST_STAGE!r} stage takes a loss reason")
        with self._db.transaction() as s:
            row = self._deal(s, deal_id, lock=True)
            row.pipeline_id, row.stage_id = stage.pipeline_id, stage.stage_id
            row.is_closed = stage.stage_id in CLOSED_STAGES
            if stage.stage_id != LOST_STAGE:
                row.loss_reason = None
            elif loss_reason is not None:
                # Moving a lost deal to "lost" again without a reason keeps the reason it has.
                row.loss_reason = loss_reason

    def create_deal(self, deal: NewDeal, *, idempotency_key: str) -> Deal:
        key = _key(idempotency_key)
        name = _text("name", deal.name, 255)
        stage = _stage(deal.stage)
        price = _price(deal.price_minor)
        fields = {k: v for k, v in _encode_fields(deal.fields).items() if v is not None}
        with self._db.transaction() as s:
            existing = self._existing(s, SandboxDeal, key)
            if existing is not None:
                return _to_deal(existing)
            responsible = self._responsible(s, deal.responsible_user_id)
            contact_ids = [str(self._contact(s, cid).id) for cid in deal.contact_ids]
            row = SandboxDeal(
                portal_id=self._portal_id,
                name=name,
                pipeline_id=stage.pipeline_id,
                stage_id=stage.stage_id,
                responsible_user_id=responsible,
                price_minor=price,
                fields=fields,
                contact_ids=contact_ids,
                is_closed=stage.stage_id in CLOSED_STAGES,
                created_key=key,
            )
            return _to_deal(self._insert_once(s, SandboxDeal, key, row))

    def set_responsible(self, deal_id: str, user_id: str) -> None:
        with self._db.transaction() as s:
            row = self._deal(s, deal_id, lock=True)
            row.responsible_user_id = self._user(s, user_id, path="user_id").id

    # contacts

    def find_contacts_by_phone(self, phone_e164: str) -> list[Contact]:
        if not isinstance(phone_e164, str) or not _E164.match(phone_e164):
            raise _invalid(
                "phone_e164", f"an E.164 number like +79161234567 is required (got {phone_e164!r})"
            )
        with self._db.transaction() as s:
            mark_read_only(s)
            # Phones live in a JSON list; a sandbox holds few contacts, so filtering here stays portable.
            rows = s.scalars(
                select(SandboxContact)
                .where(SandboxContact.portal_id == self._portal_id)
                .order_by(SandboxContact.id)
            )
            return [_to_contact(row) for row in rows if phone_e164 in row.phones]

    def create_contact(self, contact: NewContact, *, idempotency_key: str) -> Contact:
        key = _key(idempotency_key)
        name = _text("name", contact.name, 255)
        phones = list(dict.fromkeys(normalize_phone(_text("phones", p)) for p in contact.phones))
        emails = list(dict.fromkeys(_text("emails", e, 255).strip() for e in contact.emails))
        with self._db.transaction() as s:
            existing = self._existing(s, SandboxContact, key)
            if existing is not None:
                return _to_contact(existing)
            row = SandboxContact(
                portal_id=self._portal_id,
                name=name,
                phones=phones,
                emails=emails,
                responsible_user_id=self._responsible(s, contact.responsible_user_id),
                created_key=key,
            )
            return _to_contact(self._insert_once(s, SandboxContact, key, row))

    def get_contact(self, contact_id: str) -> Contact:
        with self._db.transaction() as s:
            mark_read_only(s)
            row = self._contact(s, contact_id, path="contact_id")
            # Deals keep their contacts in a JSON list; a sandbox holds few deals, so filter here (portable).
            deals = s.scalars(
                select(SandboxDeal)
                .where(SandboxDeal.portal_id == self._portal_id, SandboxDeal.is_closed.is_(False))
                .order_by(SandboxDeal.id)
            )
            open_deals = tuple(str(d.id) for d in deals if str(row.id) in (d.contact_ids or ()))
            return _to_contact(row, open_deals)

    def get_company(self, company_id: str) -> Company:
        with self._db.transaction() as s:
            mark_read_only(s)
            row = self._company(s, company_id)
            return Company(str(row.id), row.name, _str_id(row.responsible_user_id))

    def add_company_note(self, company_id: str, text: str, *, idempotency_key: str) -> NoteRef:
        key = _key(idempotency_key)
        _text("text", text)
        with self._db.transaction() as s:
            existing = self._existing(s, SandboxCompanyNote, key)
            if existing is None:
                company = self._company(s, company_id)
                row = SandboxCompanyNote(
                    portal_id=self._portal_id, company_id=company.id, text=text, created_key=key
                )
                existing = self._insert_once(s, SandboxCompanyNote, key, row)
            return NoteRef(id=str(existing.id), deal_id="", company_id=str(existing.company_id))

    def hand_over(self, handovers: Sequence[Handover]) -> None:
        # One transaction: a refused user or deal anywhere leaves every responsible as it was.
        if not handovers:
            return
        with self._db.transaction() as s:
            for i, handover in enumerate(handovers):
                deal = self._deal(s, handover.deal_id, path=f"handovers[{i}].deal_id")
                user = self._user(s, handover.user_id, path=f"handovers[{i}].user_id")
                contacts = [self._contact(s, cid) for cid in deal.contact_ids or ()]
                if handover.contacts:
                    for contact in contacts:
                        contact.responsible_user_id = user.id
                if handover.company:
                    for company_id in {c.company_id for c in contacts if c.company_id is not None}:
                        self._company(s, str(company_id)).responsible_user_id = user.id
                if handover.open_tasks:
                    tasks = s.scalars(
                        select(SandboxTask).where(
                            SandboxTask.deal_id == deal.id, SandboxTask.is_completed.is_(False)
                        )
                    )
                    for task in tasks:
                        task.responsible_user_id = user.id

    # timeline

    def add_note(self, deal_id: str, text: str, *, idempotency_key: str) -> NoteRef:
        key = _key(idempotency_key)
        _text("text", text)
        with self._db.transaction() as s:
            existing = self._existing(s, SandboxNote, key)
            if existing is None:
                deal = self._deal(s, deal_id)
                row = SandboxNote(portal_id=self._portal_id, deal_id=deal.id, text=text, created_key=key)
                existing = self._insert_once(s, SandboxNote, key, row)
            return NoteRef(id=str(existing.id), deal_id=str(existing.deal_id))

    def create_task(self, task: NewTask, *, idempotency_key: str) -> TaskRef:
        key = _key(idempotency_key)
        _text("text", task.text)
        if not isinstance(task.due_at, datetime) or task.due_at.utcoffset() is None:
            raise _invalid("due_at", f"a timezone-aware datetime is required (got {task.due_at!r})")
        with self._db.transaction() as s:
            existing = self._existing(s, SandboxTask, key)
            if existing is None:
                deal = self._deal(s, task.deal_id)
                user = self._user(s, task.responsible_user_id, path="responsible_user_id")
                row = SandboxTask(
                    portal_id=self._portal_id,
                    deal_id=deal.id,
                    responsible_user_id=user.id,
                    text=task.text,
                    due_at=task.due_at,
                    created_key=key,
                )
                existing = self._insert_once(s, SandboxTask, key, row)
            return TaskRef(id=str(existing.id), deal_id=str(existing.deal_id))

    def attach_file(
        self, deal_id: str, name: str, content: bytes, mime_type: str, *, idempotency_key: str
    ) -> FileRef:
        key = _key(idempotency_key)
        _text("name", name, 255)
        _text("mime_type", mime_type, 255)
        if not isinstance(content, bytes | bytearray) or not content:
            raise _invalid("content", "a file needs non-empty bytes")
        with self._db.transaction() as s:
            existing = self._existing(s, SandboxFile, key)
            if existing is None:
                deal = self._deal(s, deal_id)
                row = SandboxFile(
                    portal_id=self._portal_id,
                    deal_id=deal.id,
                    name=name,
                    mime_type=mime_type,
                    content=bytes(content),
                    size=len(content),
                    created_key=key,
                )
                existing = self._insert_once(s, SandboxFile, key, row)
            return FileRef(id=str(existing.id), deal_id=str(existing.deal_id), name=existing.name)

    # users

    def list_users(self) -> list[CrmUser]:
        with self._db.transaction() as s:
            mark_read_only(s)
            rows = s.scalars(
                select(SandboxUser).where(SandboxUser.portal_id == self._portal_id).order_by(SandboxUser.id)
            )
            return [_to_user(row) for row in rows]

    def notify_user(self, user_id: str, text: str, *, idempotency_key: str) -> None:
        key = _key(idempotency_key)
        _text("text", text)
        with self._db.transaction() as s:
            if self._existing(s, SandboxNotification, key) is not None:
                return
            user = self._user(s, user_id, path="user_id")
            row = SandboxNotification(portal_id=self._portal_id, user_id=user.id, text=text, created_key=key)
            self._insert_once(s, SandboxNotification, key, row)

    def send_message(self, message: OutgoingMessage, *, idempotency_key: str) -> None:
        # Like a real channel: the text lands in the mapped field, and the sent message shows in the feed
        # (the note is the sandbox's "delivery"; its key makes a retry send nothing more).
        key = _key(idempotency_key)
        _text("text", message.text)
        field_id = _text("text_field_id", message.text_field_id, max_length=64)
        with self._db.transaction() as s:
            if self._existing(s, SandboxNote, key) is not None:
                return
            deal = self._deal(s, message.deal_id, lock=True)
            _merge_fields(deal, _encode_fields({field_id: message.text}))
            text = f"{MESSAGE_NOTE_PREFIX}{message.text}"
            self._insert_once(s, SandboxNote, key, SandboxNote(
                portal_id=self._portal_id, deal_id=deal.id, text=text, created_key=key
            ))

    def add_deal_tag(self, deal_id: str, tag: str, *, tag_field_id: str | None = None) -> None:
        # Native tags like amoCRM's (`tag_field_id` is Bitrix24's stand-in, not needed here).
        name = _text("tag", tag, 255).strip()
        with self._db.transaction() as s:
            row = self._deal(s, deal_id, lock=True)
            if name not in (row.tags or []):
                row.tags = [*(row.tags or []), name]

    # --- helpers for the demo and tests (not part of CrmClient) -----------------------------------------

    def tags_for(self, deal_id: str) -> list[str]:
        with self._db.transaction() as s:
            return list(self._deal(s, deal_id).tags or [])

    def messages_for(self, deal_id: str) -> list[str]:
        """Patient messages sent on this deal, oldest first."""
        n = len(MESSAGE_NOTE_PREFIX)
        return [text[n:] for text in self.notes_for(deal_id) if text.startswith(MESSAGE_NOTE_PREFIX)]


    def seed_user(
        self,
        name: str,
        email: str | None = None,
        is_admin: bool = False,
        *,
        is_active: bool = True,
        is_online: bool = False,
    ) -> CrmUser:
        """Add a CRM user. With an e-mail this is idempotent: an existing user with it is returned as is."""
        _text("name", name, 255)
        if email is not None:
            email = _text("email", email, 255).strip().lower()
        with self._db.transaction() as s:
            if email is not None:
                existing = s.scalars(
                    select(SandboxUser).where(
                        SandboxUser.portal_id == self._portal_id, SandboxUser.email == email
                    )
                ).one_or_none()
                if existing is not None:
                    return _to_user(existing)
            row = SandboxUser(
                portal_id=self._portal_id,
                name=name,
                email=email,
                is_admin=is_admin,
                is_active=is_active,
                is_online=is_online,
            )
            s.add(row)
            s.flush()
            return _to_user(row)

    def seed_company(self, name: str, *, responsible_user_id: str | None = None) -> str:
        _text("name", name, 255)
        with self._db.transaction() as s:
            responsible = self._responsible(s, responsible_user_id)
            row = SandboxCompany(portal_id=self._portal_id, name=name, responsible_user_id=responsible)
            s.add(row)
            s.flush()
            return str(row.id)

    def link_contact(self, deal_id: str, contact_id: str, company_id: str | None = None) -> None:
        """Add the contact to the deal and, if given, put the contact in the company. Without a company this
        is `CrmClient.link_contact` (a contact already on the deal stays once)."""
        with self._db.transaction() as s:
            deal = self._deal(s, deal_id, lock=True)
            contact = self._contact(s, contact_id, path="contact_id")
            if str(contact.id) not in (deal.contact_ids or ()):
                deal.contact_ids = [*(deal.contact_ids or ()), str(contact.id)]
            if company_id is not None:
                contact.company_id = self._company(s, company_id).id

    def complete_task(self, task_id: str) -> None:
        with self._db.transaction() as s:
            row = s.get(SandboxTask, _parse_id(task_id))
            if row is None or row.portal_id != self._portal_id:
                raise _not_found("task_id", "task", task_id)
            row.is_completed = True

    def company_notes_for(self, company_id: str) -> list[str]:
        with self._db.transaction() as s:
            company = self._company(s, company_id)
            rows = s.scalars(
                select(SandboxCompanyNote)
                .where(SandboxCompanyNote.company_id == company.id)
                .order_by(SandboxCompanyNote.id)
            )
            return [row.text for row in rows]

    def notes_for(self, deal_id: str) -> list[str]:
        with self._db.transaction() as s:
            deal = self._deal(s, deal_id)
            rows = s.scalars(
                select(SandboxNote).where(SandboxNote.deal_id == deal.id).order_by(SandboxNote.id)
            )
            return [row.text for row in rows]

    def tasks_for(self, deal_id: str) -> list[TaskRecord]:
        with self._db.transaction() as s:
            deal = self._deal(s, deal_id)
            rows = s.scalars(
                select(SandboxTask).where(SandboxTask.deal_id == deal.id).order_by(SandboxTask.id)
            )
            return [
                TaskRecord(
                    id=str(r.id),
                    deal_id=str(r.deal_id),
                    responsible_user_id=str(r.responsible_user_id),
                    text=r.text,
                    due_at=r.due_at,
                    is_completed=r.is_completed,
                )
                for r in rows
            ]

    def files_for(self, deal_id: str) -> list[FileRecord]:
        with self._db.transaction() as s:
            deal = self._deal(s, deal_id)
            rows = s.scalars(
                select(SandboxFile).where(SandboxFile.deal_id == deal.id).order_by(SandboxFile.id)
            )
            return [
                FileRecord(
                    id=str(r.id),
                    deal_id=str(r.deal_id),
                    name=r.name,
                    mime_type=r.mime_type,
                    size=r.size,
                    content=r.content,
                )
                for r in rows
            ]

    def notifications_for(self, user_id: str) -> list[str]:
        with self._db.transaction() as s:
            user = self._user(s, user_id, path="user_id", require_active=False)
            rows = s.scalars(
                select(SandboxNotification)
                .where(SandboxNotification.user_id == user.id)
                .order_by(SandboxNotification.id)
            )
            return [row.text for row in rows]

    def loss_reason_for(self, deal_id: str) -> str | None:
        with self._db.transaction() as s:
            return self._deal(s, deal_id).loss_reason

    # --- internals ------------------------------------------------------------------------------------------

    def _deal(self, s: Session, deal_id: str, *, lock: bool = False, path: str = "deal_id") -> SandboxDeal:
        pk = _parse_id(deal_id)
        row = None
        if pk is not None:
            stmt = select(SandboxDeal).where(SandboxDeal.id == pk, SandboxDeal.portal_id == self._portal_id)
            # Read-modify-write of the fields JSON: lock the row on PostgreSQL (SQLite is BEGIN IMMEDIATE).
            row = s.scalars(stmt.with_for_update() if lock else stmt).one_or_none()
        if row is None:
            raise _not_found(path, "deal", deal_id)
        return row

    def _user(self, s: Session, user_id: str, *, path: str, require_active: bool = True) -> SandboxUser:
        pk = _parse_id(user_id)
        row = None
        if pk is not None:
            row = s.scalars(
                select(SandboxUser).where(SandboxUser.id == pk, SandboxUser.portal_id == self._portal_id)
            ).one_or_none()
        if row is None:
            raise _not_found(path, "user", user_id)
        if require_active and not row.is_active:
            raise _invalid(path, f"user {user_id!r} is deactivated")
        return row

    def _responsible(self, s: Session, user_id: str | None) -> int | None:
        return None if user_id is None else self._user(s, user_id, path="responsible_user_id").id

    def _contact(self, s: Session, contact_id: str, *, path: str = "contact_ids") -> SandboxContact:
        pk = _parse_id(contact_id)
        row = None
        if pk is not None:
            row = s.scalars(
                select(SandboxContact).where(
                    SandboxContact.id == pk, SandboxContact.portal_id == self._portal_id
                )
            ).one_or_none()
        if row is None:
            raise _not_found(path, "contact", contact_id)
        return row

    def _company(self, s: Session, company_id: str) -> SandboxCompany:
        pk = _parse_id(company_id)
        row = None
        if pk is not None:
            row = s.scalars(
                select(SandboxCompany).where(
                    SandboxCompany.id == pk, SandboxCompany.portal_id == self._portal_id
                )
            ).one_or_none()
        if row is None:
            raise _not_found("company_id", "company", company_id)
        return row

    def _existing(self, s: Session, model: type[_Keyed], key: str) -> _Keyed | None:
        return s.scalars(
            select(model).where(model.portal_id == self._portal_id, model.created_key == key)
        ).one_or_none()

    def _insert_once(self, s: Session, model: type[_Keyed], key: str, row: _Keyed) -> _Keyed:
        """Insert `row`; if a concurrent call with the same key committed first, return its row instead."""
        try:
            # A savepoint, so that losing the race on PostgreSQL does not abort the whole transaction.
            with s.begin_nested():
                s.add(row)
                s.flush()
        except IntegrityError:
            winner = self._existing(s, model, key)
            if winner is None:
                raise
            return winner
        return row


def _merge_fields(row: SandboxDeal, changes: Mapping[str, Any]) -> None:
    merged = dict(row.fields or {})
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    # Assign a new dict: the JSON column does not track in-place mutation. Unchanged → no write.
    if merged != row.fields:
        row.fields = merged


def _to_deal(row: SandboxDeal) -> Deal:
    return Deal(
        id=str(row.id),
        name=row.name,
        stage=StageRef(pipeline_id=row.pipeline_id, stage_id=row.stage_id),
        responsible_user_id=_str_id(row.responsible_user_id),
        price_minor=row.price_minor,
        fields={name: decode_field(value) for name, value in (row.fields or {}).items()},
        contact_ids=tuple(row.contact_ids or ()),
        is_closed=row.is_closed,
        created_at=row.created_at,
        loss_reason=row.loss_reason,
    )


def _to_contact(row: SandboxContact, open_deal_ids: tuple[str, ...] = ()) -> Contact:
    return Contact(
        id=str(row.id),
        name=row.name,
        phones=tuple(row.phones or ()),
        emails=tuple(row.emails or ()),
        responsible_user_id=_str_id(row.responsible_user_id),
        company_id=_str_id(row.company_id),
        open_deal_ids=open_deal_ids,
    )


def _to_user(row: SandboxUser) -> CrmUser:
    return CrmUser(
        id=str(row.id),
        name=row.name,
        email=row.email,
        is_active=row.is_active,
        is_admin=row.is_admin,
        is_online=row.is_online,
    )
