"""The behaviour every `CrmClient` must show, written once and run against each connector.

A connector's test module subclasses `CrmContract` as `Test<Connector>Contract` and provides two
fixtures:

- `crm`: the client under test.
- `crm_world`: a `CrmWorld`, that is, the platform behind the client. For the sandbox this is its
  database. For amoCRM and Bitrix24 it is a fake platform behind mocked HTTP. The world sets up
  preconditions (users, deals, contacts) and reads back what the client wrote (notes, tasks, files,
  notifications) without going through the method under test.

`CrmContract` itself is not collected, because pytest only collects classes named `Test*`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Protocol

import pytest

from connectors.base import CrmClient
from connectors.errors import Rejected
from connectors.types import (
    DealUpdate,
    FieldValue,
    Handover,
    NewContact,
    NewDeal,
    NewTask,
    OutgoingMessage,
    StageRef,
)

__all__ = ["MISSING_ID", "CrmContract", "CrmWorld", "WorldFile", "WorldTask"]

MISSING_ID = "987654321"
"""An id no world hands out: the contract's "unknown deal / user"."""

MSK = timezone(timedelta(hours=3))


@dataclass(frozen=True)
class WorldTask:
    deal_id: str
    responsible_user_id: str
    text: str
    due_at: datetime


@dataclass(frozen=True)
class WorldFile:
    deal_id: str
    name: str
    mime_type: str
    content: bytes


class CrmWorld(Protocol):
    """The platform side of a contract run."""

    # Stages: two open ones in one pipeline, an open one in another pipeline, and the closed ones.
    open_stage: StageRef
    next_stage: StageRef
    other_pipeline_stage: StageRef
    won_stage: StageRef
    lost_stage: StageRef
    # Custom-field keys as the connector names them, one per kind of value, plus three valid options
    # (enum ids on platforms that have them) of the multi-value field.
    text_field: str
    number_field: str
    flag_field: str
    date_field: str
    multi_field: str
    multi_options: tuple[str, str, str]
    # What a patient message names besides the text field: amoCRM's Salesbot; None where a robot reacts.
    message_bot_id: str | None
    # Where deals have no native tags (Bitrix24), the multiple string field that keeps them; else None.
    tag_field_id: str | None

    def make_user(self, name: str, *, active: bool = True) -> str: ...

    def make_deal(
        self,
        name: str,
        stage: StageRef | None = None,
        *,
        fields: Mapping[str, FieldValue] | None = None,
        responsible_user_id: str | None = None,
    ) -> str:
        """A deal in `stage` (default `open_stage`)."""
        ...

    def make_contact(
        self, name: str, phones: tuple[str, ...], *, responsible_user_id: str | None = None
    ) -> str:
        """A contact with phones as a person typed them into the CRM."""
        ...

    def make_company(self, name: str, *, responsible_user_id: str | None = None) -> str: ...

    def link(self, deal_id: str, contact_id: str, company_id: str | None = None) -> None:
        """Link the contact (and the company, to the deal and the contact) as a person would in the card."""
        ...

    def responsible(self, entity: str, entity_id: str) -> str | None:
        """The responsible user of a "contact" or "company", read on the platform."""
        ...

    def complete_task(self, deal_id: str, text: str) -> None: ...

    def company_notes(self, company_id: str) -> list[str]: ...

    def notes(self, deal_id: str) -> list[str]: ...

    def tasks(self, deal_id: str) -> list[WorldTask]: ...

    def files(self, deal_id: str) -> list[WorldFile]: ...

    def notifications(self, user_id: str) -> list[str]: ...

    def loss_reason(self, deal_id: str) -> str | None: ...

    def messages(self, deal_id: str) -> list[str]:
        """Patient messages the CRM's channel sent on the deal (bot runs, robot triggers), oldest first."""
        ...

    def deal_tags(self, deal_id: str) -> list[str]:
        """The deal's tags as the platform keeps them (names)."""
        ...

    def set_deal_tags(self, deal_id: str, tags: list[str]) -> None:
        """Tags a person or another integration put on the deal."""
        ...


def _message(world: CrmWorld, deal_id: str, text: str = "Ждём вас 12.03 в 10:00") -> OutgoingMessage:
    return OutgoingMessage(deal_id, text, world.text_field, world.message_bot_id)


def _linked_deal(crm: CrmClient, w: CrmWorld) -> tuple[str, str, str, str, str]:
    """(anna, maria, company, contact, deal): Anna is responsible for the contact, its company and the deal,
    and has an open task «Перезвонить» on it."""
    anna, maria = w.make_user("Анна Смирнова"), w.make_user("Мария Козлова")
    company = w.make_company("ООО «Ромашка»", responsible_user_id=anna)
    contact = w.make_contact("Елена Орлова", (), responsible_user_id=anna)
    deal = w.make_deal("Орлов В. Н.", responsible_user_id=anna)
    w.link(deal, contact, company)
    crm.create_task(_task(deal, anna, "Перезвонить"), idempotency_key="c-ho-open")
    return anna, maria, company, contact, deal


def _task(
    deal_id: str, user_id: str, text: str = "Позвонить пациенту", due_at: datetime | None = None
) -> NewTask:
    return NewTask(
        deal_id=deal_id,
        responsible_user_id=user_id,
        text=text,
        due_at=due_at or datetime(2030, 5, 6, 15, 0, tzinfo=MSK),
    )


# Every call that names a deal, so one parametrised test proves each of them refuses an unknown one.
_DEAL_CALLS: dict[str, Callable[[CrmClient, CrmWorld, str, str], object]] = {
    "get_deal": lambda crm, w, deal, user: crm.get_deal(deal),
    "update_deal_fields": lambda crm, w, deal, user: crm.update_deal_fields(deal, {w.text_field: "x"}),
    "update_deals": lambda crm, w, deal, user: crm.update_deals([DealUpdate(deal, {w.text_field: "x"})]),
    "move_deal": lambda crm, w, deal, user: crm.move_deal(deal, w.next_stage),
    "add_note": lambda crm, w, deal, user: crm.add_note(deal, "заметка", idempotency_key="c-note-404"),
    "create_task": lambda crm, w, deal, user: crm.create_task(
        _task(deal, user), idempotency_key="c-task-404"
    ),
    "set_responsible": lambda crm, w, deal, user: crm.set_responsible(deal, user),
    "send_message": lambda crm, w, deal, user: crm.send_message(
        _message(w, deal), idempotency_key="c-message-404"
    ),
    "attach_file": lambda crm, w, deal, user: crm.attach_file(
        deal, "a.pdf", b"%PDF", "application/pdf", idempotency_key="c-file-404"
    ),
    "link_contact": lambda crm, w, deal, user: crm.link_contact(
        deal, w.make_contact("Петрова О. П.", ("+7 916 123-45-67",))
    ),
    "add_deal_tag": lambda crm, w, deal, user: crm.add_deal_tag(
        deal, "Комплексное лечение", tag_field_id=w.tag_field_id
    ),
}


class CrmContract:
    # --- reading deals ----------------------------------------------------------------------------------

    def test_get_deal_roundtrips_every_kind_of_field_value(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        fields: dict[str, FieldValue] = {
            w.text_field: "Палата 3",
            w.number_field: 650_000,
            w.flag_field: True,
            w.date_field: date(2024, 2, 29),
            w.multi_field: w.multi_options[:2],
        }
        deal_id = w.make_deal("Орлов В. Н.", fields=fields)

        got = crm.get_deal(deal_id).fields

        assert {k: got.get(k) for k in fields} == fields
        assert type(got[w.flag_field]) is bool
        assert type(got[w.number_field]) is int
        assert type(got[w.date_field]) is date
        assert type(got[w.multi_field]) is tuple

    def test_get_deal_reports_name_stage_and_responsible(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        user = crm_world.make_user("Мария Козлова")
        deal_id = crm_world.make_deal("Сергеева Г. П.", crm_world.next_stage, responsible_user_id=user)

        deal = crm.get_deal(deal_id)

        assert (deal.id, deal.name, deal.stage) == (deal_id, "Сергеева Г. П.", crm_world.next_stage)
        assert deal.responsible_user_id == user
        assert deal.is_closed is False

    @pytest.mark.parametrize("call", sorted(_DEAL_CALLS))
    def test_every_call_on_an_unknown_deal_is_rejected_with_404(
        self, crm: CrmClient, crm_world: CrmWorld, call: str
    ) -> None:
        user = crm_world.make_user("Анна Смирнова")
        with pytest.raises(Rejected) as exc:
            _DEAL_CALLS[call](crm, crm_world, MISSING_ID, user)
        assert exc.value.status == 404

    # --- updating fields --------------------------------------------------------------------------------

    def test_update_changes_only_the_given_fields(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        deal_id = w.make_deal("Кузнецов Б. И.", fields={w.text_field: "Палата 5", w.number_field: 100})

        crm.update_deal_fields(deal_id, {w.number_field: 200, w.date_field: date(2025, 1, 9)})

        got = crm.get_deal(deal_id).fields
        assert (got[w.text_field], got[w.number_field], got[w.date_field]) == (
            "Палата 5",
            200,
            date(2025, 1, 9),
        )

    def test_update_with_none_clears_only_that_field(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        deal_id = w.make_deal("Волкова Л. А.", fields={w.text_field: "Палата 1", w.flag_field: True})

        crm.update_deal_fields(deal_id, {w.text_field: None})

        got = crm.get_deal(deal_id).fields
        assert got.get(w.text_field) is None
        assert got[w.flag_field] is True

    def test_update_replaces_a_multi_value_as_a_whole(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        deal_id = w.make_deal("Орлов В. Н.", fields={w.multi_field: w.multi_options[:2]})

        crm.update_deal_fields(deal_id, {w.multi_field: w.multi_options[2:]})

        assert crm.get_deal(deal_id).fields[w.multi_field] == w.multi_options[2:]

    def test_update_twice_leaves_the_same_state(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        deal_id = w.make_deal("Орлов В. Н.")

        crm.update_deal_fields(deal_id, {w.number_field: 7})
        first = crm.get_deal(deal_id).fields
        crm.update_deal_fields(deal_id, {w.number_field: 7})

        assert crm.get_deal(deal_id).fields == first

    def test_update_refuses_a_float(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        # Money is integer minor units; a float must fail loudly, not be rounded somewhere.
        deal_id = crm_world.make_deal("Орлов В. Н.", fields={crm_world.number_field: 1})
        with pytest.raises(Rejected):
            crm.update_deal_fields(deal_id, {crm_world.number_field: 6500.5})  # type: ignore[dict-item]
        assert crm.get_deal(deal_id).fields[crm_world.number_field] == 1

    def test_update_deals_applies_every_update(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        a = w.make_deal("А", fields={w.text_field: "a"})
        b = w.make_deal("Б", fields={w.text_field: "b"})

        crm.update_deals([DealUpdate(a, {w.number_field: 1}), DealUpdate(b, {w.text_field: "b2"})])

        assert crm.get_deal(a).fields[w.number_field] == 1
        assert crm.get_deal(a).fields[w.text_field] == "a"
        assert crm.get_deal(b).fields[w.text_field] == "b2"

    def test_update_deals_with_nothing_to_do_is_fine(self, crm: CrmClient) -> None:
        crm.update_deals([])

    def test_update_deals_also_reassigns_deals(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        first, second = w.make_user("Ирина Волкова"), w.make_user("Пётр Лебедев")
        a = w.make_deal("А", responsible_user_id=first)
        b = w.make_deal("Б", fields={w.text_field: "b"}, responsible_user_id=first)

        crm.update_deals(
            [
                DealUpdate(a, {}, responsible_user_id=second),
                DealUpdate(b, {w.text_field: "b2"}, responsible_user_id=second),
            ]
        )

        assert crm.get_deal(a).responsible_user_id == second
        assert (crm.get_deal(b).responsible_user_id, crm.get_deal(b).fields[w.text_field]) == (second, "b2")

    def test_update_deals_refuses_an_unknown_responsible(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("В")
        with pytest.raises(Rejected):
            crm.update_deals([DealUpdate(deal_id, {}, responsible_user_id="987654")])

    # --- stages -----------------------------------------------------------------------------------------

    def test_move_within_a_pipeline(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        crm.move_deal(deal_id, crm_world.next_stage)

        deal = crm.get_deal(deal_id)
        assert (deal.stage, deal.is_closed) == (crm_world.next_stage, False)

    def test_move_across_pipelines(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        crm.move_deal(deal_id, crm_world.other_pipeline_stage)

        assert crm.get_deal(deal_id).stage == crm_world.other_pipeline_stage

    def test_move_twice_to_the_same_stage_is_harmless(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        crm.move_deal(deal_id, crm_world.next_stage)
        crm.move_deal(deal_id, crm_world.next_stage)

        assert crm.get_deal(deal_id).stage == crm_world.next_stage

    def test_lost_with_a_reason_closes_the_deal(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Волкова Л. А.")

        crm.move_deal(deal_id, crm_world.lost_stage, loss_reason="Выбрали другую клинику")

        deal = crm.get_deal(deal_id)
        assert (deal.stage, deal.is_closed) == (crm_world.lost_stage, True)
        assert crm_world.loss_reason(deal_id) == "Выбрали другую клинику"

    def test_won_closes_the_deal(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Кузнецов Б. И.")

        crm.move_deal(deal_id, crm_world.won_stage)

        assert crm.get_deal(deal_id).is_closed is True

    def test_moving_a_closed_deal_to_an_open_stage_reopens_it(
        self, crm: CrmClient, crm_world: CrmWorld
    ) -> None:
        deal_id = crm_world.make_deal("Волкова Л. А.")
        crm.move_deal(deal_id, crm_world.lost_stage, loss_reason="Дорого")

        crm.move_deal(deal_id, crm_world.open_stage)

        deal = crm.get_deal(deal_id)
        assert (deal.stage, deal.is_closed) == (crm_world.open_stage, False)
        assert crm_world.loss_reason(deal_id) is None

    def test_a_loss_reason_needs_the_lost_stage(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")
        with pytest.raises(Rejected):
            crm.move_deal(deal_id, crm_world.next_stage, loss_reason="Дорого")
        assert crm.get_deal(deal_id).stage == crm_world.open_stage

    # --- creating deals ---------------------------------------------------------------------------------

    def test_create_deal_is_readable_back(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        user = w.make_user("Мария Козлова")
        new = NewDeal(
            name="Петрова Е. С.",
            stage=w.open_stage,
            responsible_user_id=user,
            price_minor=13_650_000,
            fields={w.text_field: "Палата 2", w.date_field: date(2025, 3, 1)},
        )

        created = crm.create_deal(new, idempotency_key="c-deal-1")
        got = crm.get_deal(created.id)

        assert (got.name, got.stage, got.responsible_user_id) == ("Петрова Е. С.", w.open_stage, user)
        assert got.price_minor == 13_650_000
        assert (got.fields[w.text_field], got.fields[w.date_field]) == ("Палата 2", date(2025, 3, 1))

    def test_create_deal_twice_with_one_key_creates_one_deal(
        self, crm: CrmClient, crm_world: CrmWorld
    ) -> None:
        new = NewDeal(name="Петрова Е. С.", stage=crm_world.open_stage)

        first = crm.create_deal(new, idempotency_key="c-deal-same")
        second = crm.create_deal(new, idempotency_key="c-deal-same")

        assert second.id == first.id

    def test_create_deal_with_two_keys_creates_two_deals(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        new = NewDeal(name="Петрова Е. С.", stage=crm_world.open_stage)

        first = crm.create_deal(new, idempotency_key="c-deal-a")
        second = crm.create_deal(new, idempotency_key="c-deal-b")

        assert second.id != first.id
        assert crm.get_deal(second.id).name == crm.get_deal(first.id).name

    # --- contacts ---------------------------------------------------------------------------------------

    def test_find_by_phone_matches_a_number_typed_in_any_format(
        self, crm: CrmClient, crm_world: CrmWorld
    ) -> None:
        contact_id = crm_world.make_contact("Елена Орлова", ("8 (916) 123-45-67",))

        found = crm.find_contacts_by_phone("+79161234567")

        assert [c.id for c in found] == [contact_id]
        assert found[0].phones == ("+79161234567",)

    def test_find_by_phone_is_exact(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        crm_world.make_contact("Елена Орлова", ("+7 916 123-45-67",))

        assert crm.find_contacts_by_phone("+79161234568") == []
        assert crm.find_contacts_by_phone("+7916123456") == []

    def test_find_by_phone_without_contacts_is_empty(self, crm: CrmClient) -> None:
        assert crm.find_contacts_by_phone("+79031234567") == []

    def test_find_by_phone_wants_e164(self, crm: CrmClient) -> None:
        with pytest.raises(Rejected):
            crm.find_contacts_by_phone("8 916 123-45-67")

    def test_create_contact_normalises_phones(self, crm: CrmClient) -> None:
        contact = crm.create_contact(
            NewContact(
                name="Дмитрий Сергеев", phones=("8 (903) 555-12-34",), emails=("d.sergeev@example.ru",)
            ),
            idempotency_key="c-contact-1",
        )

        assert contact.phones == ("+79035551234",)
        assert [c.id for c in crm.find_contacts_by_phone("+79035551234")] == [contact.id]

    def test_create_contact_with_an_invalid_phone_names_it(self, crm: CrmClient) -> None:
        with pytest.raises(Rejected) as exc:
            crm.create_contact(NewContact(name="Ошибка", phones=("12-34",)), idempotency_key="c-contact-bad")
        assert "12-34" in str(exc.value)

    def test_create_contact_twice_with_one_key_creates_one(self, crm: CrmClient) -> None:
        new = NewContact(name="Андрей Волков", phones=("+79852345678",))

        first = crm.create_contact(new, idempotency_key="c-contact-same")
        second = crm.create_contact(new, idempotency_key="c-contact-same")

        assert second.id == first.id
        assert len(crm.find_contacts_by_phone("+79852345678")) == 1

    def test_link_contact_adds_a_contact_to_the_deal_once(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Петров П. П.")
        patient = crm_world.make_contact("Петров П. П.", ("+7 916 111-22-33",))
        crm_world.link(deal_id, patient)
        representative = crm_world.make_contact("Петрова О. П.", ("+7 916 123-45-67",))

        crm.link_contact(deal_id, representative)
        crm.link_contact(deal_id, representative)  # a retried job

        assert crm.get_deal(deal_id).contact_ids == (patient, representative)

    # --- notes ------------------------------------------------------------------------------------------

    def test_add_note_appears_on_the_deal(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        ref = crm.add_note(deal_id, "Пополнение баланса: 13 000,00 ₽", idempotency_key="c-note-1")

        assert ref.deal_id == deal_id
        assert crm_world.notes(deal_id) == ["Пополнение баланса: 13 000,00 ₽"]

    def test_add_note_twice_with_one_key_adds_one(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        first = crm.add_note(deal_id, "Списание за сутки", idempotency_key="c-note-same")
        second = crm.add_note(deal_id, "Списание за сутки", idempotency_key="c-note-same")

        assert second.id == first.id
        assert crm_world.notes(deal_id) == ["Списание за сутки"]

    def test_add_note_with_two_keys_adds_two(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        crm.add_note(deal_id, "Списание за сутки", idempotency_key="c-note-day-1")
        crm.add_note(deal_id, "Списание за сутки", idempotency_key="c-note-day-2")

        assert crm_world.notes(deal_id) == ["Списание за сутки", "Списание за сутки"]

    # --- tasks ------------------------------------------------------------------------------------------

    def test_create_task_appears_with_its_due_instant(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        user = crm_world.make_user("Мария Козлова")
        deal_id = crm_world.make_deal("Орлов В. Н.")
        due = datetime(2030, 5, 6, 15, 0, tzinfo=MSK)

        ref = crm.create_task(_task(deal_id, user, "Продлить курс", due), idempotency_key="c-task-1")

        assert ref.deal_id == deal_id
        [task] = crm_world.tasks(deal_id)
        assert (task.responsible_user_id, task.text) == (user, "Продлить курс")
        assert task.due_at == due  # the same instant, whatever zone the platform answers in
        assert task.due_at.astimezone(UTC) == datetime(2030, 5, 6, 12, 0, tzinfo=UTC)

    def test_create_task_refuses_a_naive_due_time(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        user = crm_world.make_user("Мария Козлова")
        deal_id = crm_world.make_deal("Орлов В. Н.")
        naive = datetime(2030, 5, 6, 15, 0)  # naive on purpose

        with pytest.raises(Rejected):
            crm.create_task(_task(deal_id, user, due_at=naive), idempotency_key="c-task-naive")
        assert crm_world.tasks(deal_id) == []

    def test_create_task_twice_with_one_key_creates_one(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        user = crm_world.make_user("Мария Козлова")
        deal_id = crm_world.make_deal("Орлов В. Н.")

        first = crm.create_task(_task(deal_id, user), idempotency_key="c-task-same")
        second = crm.create_task(_task(deal_id, user), idempotency_key="c-task-same")

        assert second.id == first.id
        assert len(crm_world.tasks(deal_id)) == 1

    def test_create_task_for_an_unknown_user_is_rejected(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")
        with pytest.raises(Rejected):
            crm.create_task(_task(deal_id, MISSING_ID), idempotency_key="c-task-nouser")
        assert crm_world.tasks(deal_id) == []

    # --- users ------------------------------------------------------------------------------------------

    def test_list_users_reports_users_in_id_order(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        anna = crm_world.make_user("Анна Смирнова")
        oleg = crm_world.make_user("Олег Сидоров", active=False)

        users = {u.id: u for u in crm.list_users()}
        ours = [uid for uid in users if uid in (anna, oleg)]

        assert ours == [anna, oleg]
        assert (users[anna].name, users[anna].is_active) == ("Анна Смирнова", True)
        assert (users[oleg].name, users[oleg].is_active) == ("Олег Сидоров", False)

    def test_set_responsible(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.", responsible_user_id=crm_world.make_user("Анна Смирнова"))
        maria = crm_world.make_user("Мария Козлова")

        crm.set_responsible(deal_id, maria)

        assert crm.get_deal(deal_id).responsible_user_id == maria

    def test_set_responsible_to_an_unknown_user_is_rejected(
        self, crm: CrmClient, crm_world: CrmWorld
    ) -> None:
        anna = crm_world.make_user("Анна Смирнова")
        deal_id = crm_world.make_deal("Орлов В. Н.", responsible_user_id=anna)

        with pytest.raises(Rejected):
            crm.set_responsible(deal_id, MISSING_ID)
        assert crm.get_deal(deal_id).responsible_user_id == anna

    def test_set_responsible_to_a_deactivated_user_is_rejected(
        self, crm: CrmClient, crm_world: CrmWorld
    ) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")
        gone = crm_world.make_user("Уволенный Сотрудник", active=False)

        with pytest.raises(Rejected):
            crm.set_responsible(deal_id, gone)

    # --- files ------------------------------------------------------------------------------------------

    def test_attach_file_twice_with_one_key_attaches_one(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")
        pdf = b"%PDF-1.7 invoice"

        first = crm.attach_file(
            deal_id, "Счёт №12.pdf", pdf, "application/pdf", idempotency_key="c-file-same"
        )
        second = crm.attach_file(
            deal_id, "Счёт №12.pdf", pdf, "application/pdf", idempotency_key="c-file-same"
        )

        assert second.id == first.id
        assert (first.deal_id, first.name) == (deal_id, "Счёт №12.pdf")
        assert crm_world.files(deal_id) == [WorldFile(deal_id, "Счёт №12.pdf", "application/pdf", pdf)]

    def test_attach_file_refuses_empty_content(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")
        with pytest.raises(Rejected):
            crm.attach_file(deal_id, "пусто.pdf", b"", "application/pdf", idempotency_key="c-file-empty")
        assert crm_world.files(deal_id) == []

    # --- notifications ----------------------------------------------------------------------------------

    def test_notify_user_twice_with_one_key_notifies_once(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        igor = crm_world.make_user("Игорь Петров")

        crm.notify_user(igor, "Баланс пациента ниже трёх дней", idempotency_key="c-notify-same")
        crm.notify_user(igor, "Баланс пациента ниже трёх дней", idempotency_key="c-notify-same")

        assert crm_world.notifications(igor) == ["Баланс пациента ниже трёх дней"]

    def test_notify_an_unknown_user_is_rejected(self, crm: CrmClient) -> None:
        with pytest.raises(Rejected):
            crm.notify_user(MISSING_ID, "Кто здесь?", idempotency_key="c-notify-nouser")

    def test_notify_a_deactivated_user_is_rejected(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        gone = crm_world.make_user("Уволенный Сотрудник", active=False)
        with pytest.raises(Rejected):
            crm.notify_user(gone, "Кто здесь?", idempotency_key="c-notify-gone")
        assert crm_world.notifications(gone) == []

    # --- patient messages -------------------------------------------------------------------------------

    def test_send_message_fills_the_field_and_sends_once_per_key(
        self, crm: CrmClient, crm_world: CrmWorld
    ) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        crm.send_message(_message(crm_world, deal_id), idempotency_key="c-message-same")
        crm.send_message(_message(crm_world, deal_id), idempotency_key="c-message-same")

        assert crm.get_deal(deal_id).fields[crm_world.text_field] == "Ждём вас 12.03 в 10:00"
        assert crm_world.messages(deal_id) == ["Ждём вас 12.03 в 10:00"]

    def test_the_same_words_under_a_new_key_are_sent_again(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        crm.send_message(_message(crm_world, deal_id, "Примите лекарство"), idempotency_key="c-message-d1")
        crm.send_message(_message(crm_world, deal_id, "Примите лекарство"), idempotency_key="c-message-d2")

        assert crm_world.messages(deal_id) == ["Примите лекарство", "Примите лекарство"]

    def test_send_message_without_text_sends_nothing(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")

        with pytest.raises(Rejected) as exc:
            crm.send_message(_message(crm_world, deal_id, "  "), idempotency_key="c-message-blank")

        assert exc.value.path == "text"
        assert crm_world.messages(deal_id) == []

    # --- tags ------------------------------------------------------------------------------------------

    def test_add_deal_tag_keeps_the_tags_the_deal_has(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")
        crm_world.set_deal_tags(deal_id, ["VIP", "Сайт"])

        crm.add_deal_tag(deal_id, "Комплексное лечение", tag_field_id=crm_world.tag_field_id)
        crm.add_deal_tag(deal_id, "Комплексное лечение", tag_field_id=crm_world.tag_field_id)

        assert crm_world.deal_tags(deal_id) == ["VIP", "Сайт", "Комплексное лечение"]

    def test_add_deal_tag_without_a_name_changes_nothing(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        deal_id = crm_world.make_deal("Орлов В. Н.")
        crm_world.set_deal_tags(deal_id, ["VIP"])

        with pytest.raises(Rejected) as exc:
            crm.add_deal_tag(deal_id, "  ", tag_field_id=crm_world.tag_field_id)

        assert exc.value.path == "tag"
        assert crm_world.deal_tags(deal_id) == ["VIP"]

    # --- contacts, companies and hand-over ----------------------------------------------------------------

    def test_get_contact_reads_its_company_and_its_open_deals(
        self, crm: CrmClient, crm_world: CrmWorld
    ) -> None:
        w = crm_world
        anna = w.make_user("Анна Смирнова")
        company = w.make_company("ООО «Ромашка»", responsible_user_id=anna)
        contact = w.make_contact("Елена Орлова", ("8 (916) 123-45-67",), responsible_user_id=anna)
        first, won, second = (
            w.make_deal("Первая"),
            w.make_deal("Закрытая", w.won_stage),
            w.make_deal("Вторая"),
        )
        for deal in (first, won, second):
            w.link(deal, contact, company)

        got = crm.get_contact(contact)

        assert (got.id, got.name, got.phones) == (contact, "Елена Орлова", ("+79161234567",))
        assert (got.responsible_user_id, got.company_id) == (anna, company)
        assert got.open_deal_ids == (first, second)

    def test_a_contact_without_links_has_none(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        contact = crm_world.make_contact("Елена Орлова", ())

        got = crm.get_contact(contact)

        assert (got.company_id, got.open_deal_ids) == (None, ())

    def test_get_company_reads_its_responsible(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        anna = crm_world.make_user("Анна Смирнова")
        company = crm_world.make_company("АО «Страховая»", responsible_user_id=anna)

        got = crm.get_company(company)

        assert (got.id, got.name, got.responsible_user_id) == (company, "АО «Страховая»", anna)

    @pytest.mark.parametrize("call", ["get_contact", "get_company", "add_company_note"])
    def test_an_unknown_contact_or_company_is_rejected_with_404(self, crm: CrmClient, call: str) -> None:
        calls: dict[str, Callable[[], object]] = {
            "get_contact": lambda: crm.get_contact(MISSING_ID),
            "get_company": lambda: crm.get_company(MISSING_ID),
            "add_company_note": lambda: crm.add_company_note(MISSING_ID, "x", idempotency_key="c-cn-404"),
        }
        with pytest.raises(Rejected) as exc:
            calls[call]()
        assert exc.value.status == 404

    def test_add_company_note_twice_with_one_key_adds_one(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        company = crm_world.make_company("АО «Страховая»")

        first = crm.add_company_note(
            company, "Оплата 1 000,00 ₽ по счёту СК-2026-000001", idempotency_key="c-cn"
        )
        second = crm.add_company_note(
            company, "Оплата 1 000,00 ₽ по счёту СК-2026-000001", idempotency_key="c-cn"
        )

        assert (second.id, second.company_id) == (first.id, company)
        assert crm_world.company_notes(company) == ["Оплата 1 000,00 ₽ по счёту СК-2026-000001"]

    def test_hand_over_gives_contact_company_and_open_tasks_to_the_new_responsible(
        self, crm: CrmClient, crm_world: CrmWorld
    ) -> None:
        w = crm_world
        anna, maria, company, contact, deal = _linked_deal(crm, w)
        crm.create_task(_task(deal, anna, "Уже сделано"), idempotency_key="c-ho-done")
        w.complete_task(deal, "Уже сделано")

        crm.hand_over([Handover(deal, maria)])
        crm.hand_over([Handover(deal, maria)])

        assert (w.responsible("contact", contact), w.responsible("company", company)) == (maria, maria)
        assert {t.text: t.responsible_user_id for t in w.tasks(deal)} == {
            "Перезвонить": maria,
            "Уже сделано": anna,
        }

    def test_hand_over_can_leave_the_company_and_tasks(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        anna, maria, company, contact, deal = _linked_deal(crm, w)

        crm.hand_over([Handover(deal, maria, company=False, open_tasks=False)])

        assert (w.responsible("contact", contact), w.responsible("company", company)) == (maria, anna)
        assert [t.responsible_user_id for t in w.tasks(deal)] == [anna]

    def test_hand_over_to_an_unknown_user_changes_nothing(self, crm: CrmClient, crm_world: CrmWorld) -> None:
        w = crm_world
        anna = w.make_user("Анна Смирнова")
        contact = w.make_contact("Елена Орлова", (), responsible_user_id=anna)
        deal = w.make_deal("Орлов В. Н.", responsible_user_id=anna)
        w.link(deal, contact)

        with pytest.raises(Rejected):
            crm.hand_over([Handover(deal, MISSING_ID)])

        assert w.responsible("contact", contact) == anna

    def test_hand_over_of_nothing_is_fine(self, crm: CrmClient) -> None:
        crm.hand_over([])
