"""The interfaces every connector implements. Domain code depends on these, never on a platform."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Protocol, runtime_checkable

from .types import (
    AppointmentBatch,
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
    NewNote,
    NewTask,
    NoteRef,
    OAuthToken,
    OutgoingMessage,
    StageRef,
    TaskRef,
)

__all__ = ["AppointmentSource", "CrmClient", "NoteBatching", "TokenSource", "WorkDaySource"]


@runtime_checkable
class CrmClient(Protocol):
    """One instance per portal. Every write that creates something takes an idempotency key: calling it
    twice with the same key creates one thing and returns it both times."""

    def get_deal(self, deal_id: str) -> Deal:
        """The deal with its custom fields; `Rejected` (status 404) if it does not exist."""
        ...

    def update_deal_fields(self, deal_id: str, fields: dict[str, FieldValue]) -> None:
        """Set only the given fields; others keep their values. Idempotent by nature."""
        ...

    def update_deals(self, updates: Sequence[DealUpdate]) -> None:
        """Batch form of update_deal_fields; connectors split to the platform's batch size."""
        ...

    def move_deal(self, deal_id: str, stage: StageRef, *, loss_reason: str | None = None) -> None:
        """Move to a stage, also across pipelines. Idempotent by nature."""
        ...

    def create_deal(self, deal: NewDeal, *, idempotency_key: str) -> Deal: ...

    def find_contacts_by_phone(self, phone_e164: str) -> list[Contact]:
        """Exact matches on a normalised phone only; an empty list when none."""
        ...

    def create_contact(self, contact: NewContact, *, idempotency_key: str) -> Contact: ...

    def get_contact(self, contact_id: str) -> Contact:
        """The contact with its company and open deals; `Rejected` (status 404) if it does not exist."""
        ...

    def get_company(self, company_id: str) -> Company:
        """`Rejected` (status 404) if it does not exist."""
        ...

    def link_contact(self, deal_id: str, contact_id: str) -> None:
        """Add an existing contact to the deal's contacts (the main contact stays as it is). Linking one
        already linked changes nothing, so a retry is harmless; `Rejected` (404) names `deal_id`."""
        ...

    def add_company_note(self, company_id: str, text: str, *, idempotency_key: str) -> NoteRef:
        """A note in the company's feed (an invoice paid by a corporate client); `NoteRef.deal_id` is empty.
        Twice with one key adds one."""
        ...

    def hand_over(self, handovers: Sequence[Handover]) -> None:
        """Give each deal's contacts, company and open tasks to its new responsible, batched as the platform
        allows. Idempotent by nature; `Rejected` names the first refused item."""
        ...

    def add_note(self, deal_id: str, text: str, *, idempotency_key: str) -> NoteRef: ...

    def create_task(self, task: NewTask, *, idempotency_key: str) -> TaskRef: ...

    def list_users(self) -> list[CrmUser]: ...

    def set_responsible(self, deal_id: str, user_id: str) -> None: ...

    def attach_file(
        self, deal_id: str, name: str, content: bytes, mime_type: str, *, idempotency_key: str
    ) -> FileRef: ...

    def notify_user(self, user_id: str, text: str, *, idempotency_key: str) -> None: ...

    def send_message(self, message: OutgoingMessage, *, idempotency_key: str) -> None:
        """Send a patient message through the CRM's channel (see `OutgoingMessage`). Sending twice with one
        key sends once; `Rejected` names `text_field_id` or `bot_id` when the mapping is wrong."""
        ...

    def add_deal_tag(self, deal_id: str, tag: str, *, tag_field_id: str | None = None) -> None:
        """Add `tag` to the deal keeping the tags it has; a tag it already has changes nothing (so a retry is
        safe). Where the CRM has no deal tags (Bitrix24) they live in a multiple-value deal field named by
        `tag_field_id`, required there and ignored where tags are native; `Rejected` names `tag` or
        `tag_field_id`."""
        ...


@runtime_checkable
class NoteBatching(Protocol):
    """Optional: a CRM that takes many feed notes in one request. The outbox uses it when a client has it;
    the result is exactly what `add_note` for each would give, in order, and as idempotent."""

    def add_notes(self, notes: Sequence[NewNote]) -> list[NoteRef]: ...


@runtime_checkable
class WorkDaySource(Protocol):
    """Optional: a CRM whose users open, pause and close their working day in it (Bitrix24's work-day,
    `timeman`). Lead distribution may take operators' shifts from it."""

    def work_day_states(self, user_ids: Sequence[str]) -> dict[str, str]:
        """CRM user id → "on_shift" | "paused" | "off", for the users the CRM answered for."""
        ...


class TokenSource(Protocol):
    """Where a connector gets and stores its OAuth token. Refresh tokens rotate on every refresh, so a
    refresh must happen under `refresh_lock()` after re-reading the token."""

    def get(self) -> OAuthToken | None: ...

    def save(self, token: OAuthToken) -> None: ...

    def refresh_lock(self) -> AbstractContextManager[None]: ...

    def mark_reauth_required(self, reason: str) -> None: ...


class AppointmentSource(Protocol):
    """A MIS feed of appointments, read incrementally from an opaque cursor."""

    def fetch(self, cursor: str | None) -> AppointmentBatch: ...

    def iter_all(self, cursor: str | None) -> Iterator[AppointmentBatch]: ...
