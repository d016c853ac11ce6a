"""Neutral, platform-free values that cross the connector boundary.

Money is integer minor units; datetimes are timezone-aware; ids are strings because amoCRM uses integers
and Bitrix24 uses strings, and we never do arithmetic on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

__all__ = [
    "APPOINTMENT_STATUSES",
    "AppUninstalled",
    "Appointment",
    "AppointmentBatch",
    "AppointmentReject",
    "Company",
    "Contact",
    "CrmEvent",
    "CrmUser",
    "Deal",
    "DealCreated",
    "DealStageChanged",
    "DealUpdate",
    "FieldValue",
    "FileRef",
    "Handover",
    "NewContact",
    "NewDeal",
    "NewTask",
    "NoteRef",
    "OAuthToken",
    "OutgoingMessage",
    "RobotCall",
    "StageRef",
    "TaskRef",
]

FieldValue = str | int | bool | date | None | tuple[str, ...]
"""A custom-field value as we exchange it: scalars, dates, or a tuple for multi-value (enum ids, phones)."""


@dataclass(frozen=True)
class StageRef:
    pipeline_id: str
    stage_id: str


@dataclass(frozen=True)
class Stage:
    id: str
    name: str


@dataclass(frozen=True)
class Pipeline:
    """A pipeline (amoCRM) or deal category (Bitrix24) with its stages in board order: what the settings
    screen offers, so that no stage id is ever typed by hand."""

    id: str
    name: str
    stages: tuple[Stage, ...] = ()


@dataclass(frozen=True)
class Deal:
    id: str
    name: str
    stage: StageRef
    responsible_user_id: str | None = None
    price_minor: int | None = None
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    contact_ids: tuple[str, ...] = ()
    is_closed: bool = False
    created_at: datetime | None = None
    # The CRM's own reason of a lost deal, by name (amoCRM's loss_reason_id), where the read carries it.
    loss_reason: str | None = None


@dataclass(frozen=True)
class NewDeal:
    name: str
    stage: StageRef
    responsible_user_id: str | None = None
    price_minor: int | None = None
    fields: Mapping[str, FieldValue] = field(default_factory=dict)
    contact_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class DealUpdate:
    """One deal's changes in a batch: custom fields, and optionally a new responsible user (a lead
    distribution run reassigns many deals at once)."""

    deal_id: str
    fields: Mapping[str, FieldValue]
    responsible_user_id: str | None = None


@dataclass(frozen=True)
class Contact:
    id: str
    name: str
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    responsible_user_id: str | None = None
    # Filled by `get_contact` (a phone search or a create does not read links): the contact's company and
    # its deals still open, oldest first (lead distribution's sticky owner looks there).
    company_id: str | None = None
    open_deal_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Company:
    id: str
    name: str
    responsible_user_id: str | None = None


@dataclass(frozen=True)
class Handover:
    """A deal's new responsible carried to what hangs off the deal: its contacts, its company and its
    open tasks (a lead distribution reassignment, a shift handover). The deal itself is reassigned by
    `update_deals`; the connector reads the links itself."""

    deal_id: str
    user_id: str
    contacts: bool = True
    company: bool = True
    open_tasks: bool = True


@dataclass(frozen=True)
class NewContact:
    name: str
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()
    responsible_user_id: str | None = None


@dataclass(frozen=True)
class NoteRef:
    id: str
    deal_id: str
    # Set for a note in a company's feed (`add_company_note`), whose `deal_id` is empty.
    company_id: str | None = None


@dataclass(frozen=True)
class NewNote:
    """One feed note of a batch (`NoteBatching.add_notes`); `idempotency_key` as for `add_note`."""

    deal_id: str
    text: str
    idempotency_key: str


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to the patient sent through the CRM's own channel. We never talk to messengers
    ourselves: the text goes into a deal field the channel reads (an amoCRM Salesbot's
    `{{lead.cf.<id>}}`, a Bitrix24 robot triggered on the field), then amoCRM runs the mapped bot.
    `bot_id` is required on amoCRM and ignored where a robot reacts to the field."""

    deal_id: str
    text: str
    text_field_id: str
    bot_id: str | None = None


@dataclass(frozen=True)
class NewTask:
    deal_id: str
    responsible_user_id: str
    text: str
    due_at: datetime


@dataclass(frozen=True)
class TaskRef:
    id: str
    deal_id: str


@dataclass(frozen=True)
class CrmUser:
    id: str
    name: str
    email: str | None = None
    is_active: bool = True
    is_admin: bool = False
    # Bitrix24 IS_ONLINE / timeman; amoCRM has no presence, so its connector reports None.
    is_online: bool | None = None


@dataclass(frozen=True)
class FileRef:
    id: str
    deal_id: str
    name: str
    url: str | None = None


@dataclass(frozen=True)
class OAuthToken:
    access_token: str
    refresh_token: str | None
    expires_at: datetime | None
    extra: Mapping[str, Any] = field(default_factory=dict)


# Events parsed from webhooks / robot calls. Parsers return one of these, None (ignored) or raise
# UnsupportedEvent / AnomalousPayload.
@dataclass(frozen=True)
class CrmEvent:
    portal_external_id: str
    occurred_at: datetime | None


@dataclass(frozen=True)
class DealCreated(CrmEvent):
    deal_id: str


@dataclass(frozen=True)
class DealStageChanged(CrmEvent):
    deal_id: str
    stage: StageRef
    previous: StageRef | None = None


@dataclass(frozen=True)
class RobotCall(CrmEvent):
    deal_id: str
    action: str
    params: Mapping[str, str] = field(default_factory=dict)
    user_id: str | None = None


@dataclass(frozen=True)
class AppUninstalled(CrmEvent):
    clean: bool = False


@dataclass(frozen=True)
class DealUpdated(CrmEvent):
    """A deal's fields, stage or responsible changed. `fields` holds custom-field values by field id as the
    hook carried them (text; several values as a tuple); the job re-reads the deal before trusting them."""

    deal_id: str
    stage: StageRef | None = None
    responsible_user_id: str | None = None
    fields: Mapping[str, FieldValue] = field(default_factory=dict)


@dataclass(frozen=True)
class DealDeleted(CrmEvent):
    deal_id: str


@dataclass(frozen=True)
class DealRestored(CrmEvent):
    """A deleted deal came back from the CRM's recycle bin."""

    deal_id: str


@dataclass(frozen=True)
class ContactChanged(CrmEvent):
    """A contact was added, updated or deleted (`change`); phones and emails as the hook carried them."""

    contact_id: str
    change: str
    phones: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()


@dataclass(frozen=True)
class DpAction(CrmEvent):
    """A pipeline automation (amo Digital Pipeline, Bitrix24 robot-like) fired for a deal at a stage.

    `trigger` is why (lead_added, lead_status_changed, lead_appeared_in_status); `settings` are the values
    the clinic chose in the action's form, minus our secret."""

    deal_id: str
    stage: StageRef
    trigger: str
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventBatch(CrmEvent):
    """Several events from one delivery (amo puts every changed entity of a moment into one body)."""

    events: tuple[CrmEvent, ...] = ()


APPOINTMENT_STATUSES = (
    "requested",
    "booked",
    "confirmed",
    "arrived",
    "completed",
    "cancelled",
    "no_show",
    "void",
)
"""Canonical visit statuses (research/mis.md §5); terminal ones are completed, cancelled, no_show, void."""


@dataclass(frozen=True)
class Appointment:
    """A visit as a MIS reports it. (source, source_id) names the visit; `changed_at` then `version` order
    its versions. Times are aware: naive MIS times were read in the portal's timezone by the reader."""

    source: str
    source_id: str
    status: str
    starts_at: datetime
    ends_at: datetime | None
    patient_id: str | None
    patient_name: str
    patient_phone: str | None
    changed_at: datetime | None = None
    version: str | None = None
    # Further numbers of the patient (IDENT keeps a mobile and a landline): leads may come from either.
    patient_other_phones: tuple[str, ...] = ()
    status_reason: str | None = None
    doctor_id: str | None = None
    doctor_name: str | None = None
    specialty: str | None = None
    branch: str | None = None
    card_number: str | None = None
    booked_by: str | None = None
    waiting_list: bool = False
    # What the MIS says; the sync engine decides primary from our own visit history and only logs this.
    mis_primary: bool | None = None
    # Integer kopecks, as all money crossing the boundary.
    amount_minor: int | None = None
    channel: str | None = None
    comment: str | None = None
    rescheduled_from: str | None = None


@dataclass(frozen=True)
class AppointmentReject:
    """A row a reader could not turn into an appointment: `row` is 1-based as a person counts data rows."""

    row: int
    field: str
    reason: str
    value: str
    # The visit's id when the row has one, so a refused row does not make its visit look deleted.
    source_id: str | None = None


@dataclass(frozen=True)
class AppointmentBatch:
    appointments: tuple[Appointment, ...]
    rejects: tuple[AppointmentReject, ...]
    next_cursor: str | None
    # Set when the file declares the days it covers: visits of those days missing from it are void.
    period: tuple[date, date] | None = None
