"""The CRM contract on SandboxCrm, plus what only the sandbox can show: tenancy and the demo seed."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, date, datetime

import pytest
from sqlalchemy import func, select

from connectors.base import CrmClient
from connectors.errors import Rejected
from connectors.types import DealUpdate, FieldValue, NewContact, NewDeal, OutgoingMessage, StageRef
from widget_server.db import Database
from widget_server.models import Portal
from widget_server.sandbox import models as sm
from widget_server.sandbox.crm import SandboxCrm, decode_field, encode_field, normalize_phone
from widget_server.sandbox.demo import seed_demo

from .crm_contract import CrmContract, WorldFile, WorldTask

_world_keys = itertools.count(1)


def make_portal(database: Database, slug: str) -> int:
    with database.transaction() as s:
        portal = Portal(
            kind="sandbox",
            slug=slug,
            name=f"Клиника {slug}",
            external_id=f"sandbox-{slug}",
            timezone="Europe/Moscow",
            currency="RUB",
        )
        s.add(portal)
        s.flush()
        return portal.id


class SandboxWorld:
    """The sandbox's platform is its own database, reached through SandboxCrm's helper methods."""

    open_stage = StageRef("main", "new")
    next_stage = StageRef("main", "in_work")
    other_pipeline_stage = StageRef("second", "new")
    won_stage = StageRef("main", "won")
    lost_stage = StageRef("main", "lost")
    text_field = "ward"
    number_field = "daily_rate_minor"
    flag_field = "insured"
    date_field = "admission_date"
    multi_field = "diagnosis_codes"
    multi_options = ("I63.9", "G81.9", "S72.0")
    message_bot_id = None
    tag_field_id = None

    def __init__(self, crm: SandboxCrm) -> None:
        self.crm = crm

    def make_user(self, name: str, *, active: bool = True) -> str:
        return self.crm.seed_user(name, is_active=active).id

    def make_deal(
        self,
        name: str,
        stage: StageRef | None = None,
        *,
        fields: Mapping[str, FieldValue] | None = None,
        responsible_user_id: str | None = None,
    ) -> str:
        new = NewDeal(
            name=name,
            stage=stage or self.open_stage,
            fields=dict(fields or {}),
            responsible_user_id=responsible_user_id,
        )
        return self.crm.create_deal(new, idempotency_key=f"world-deal-{next(_world_keys)}").id

    def make_contact(
        self, name: str, phones: tuple[str, ...], *, responsible_user_id: str | None = None
    ) -> str:
        new = NewContact(name=name, phones=phones, responsible_user_id=responsible_user_id)
        return self.crm.create_contact(new, idempotency_key=f"world-contact-{next(_world_keys)}").id

    def make_company(self, name: str, *, responsible_user_id: str | None = None) -> str:
        return self.crm.seed_company(name, responsible_user_id=responsible_user_id)

    def link(self, deal_id: str, contact_id: str, company_id: str | None = None) -> None:
        self.crm.link_contact(deal_id, contact_id, company_id)

    def responsible(self, entity: str, entity_id: str) -> str | None:
        if entity == "contact":
            return self.crm.get_contact(entity_id).responsible_user_id
        return self.crm.get_company(entity_id).responsible_user_id

    def complete_task(self, deal_id: str, text: str) -> None:
        for task in self.crm.tasks_for(deal_id):
            if task.text == text:
                self.crm.complete_task(task.id)

    def company_notes(self, company_id: str) -> list[str]:
        return self.crm.company_notes_for(company_id)

    def notes(self, deal_id: str) -> list[str]:
        return self.crm.notes_for(deal_id)

    def tasks(self, deal_id: str) -> list[WorldTask]:
        return [
            WorldTask(t.deal_id, t.responsible_user_id, t.text, t.due_at) for t in self.crm.tasks_for(deal_id)
        ]

    def files(self, deal_id: str) -> list[WorldFile]:
        return [WorldFile(f.deal_id, f.name, f.mime_type, f.content) for f in self.crm.files_for(deal_id)]

    def notifications(self, user_id: str) -> list[str]:
        return self.crm.notifications_for(user_id)

    def loss_reason(self, deal_id: str) -> str | None:
        return self.crm.loss_reason_for(deal_id)

    def messages(self, deal_id: str) -> list[str]:
        return self.crm.messages_for(deal_id)

    def deal_tags(self, deal_id: str) -> list[str]:
        return self.crm.tags_for(deal_id)

    def set_deal_tags(self, deal_id: str, tags: list[str]) -> None:
        with self.crm._db.transaction() as s:
            s.get(sm.SandboxDeal, int(deal_id)).tags = list(tags)


@pytest.fixture
def portal_id(database: Database) -> int:
    return make_portal(database, "a")


@pytest.fixture
def crm(database: Database, portal_id: int) -> SandboxCrm:
    return SandboxCrm(database, portal_id, timezone="Europe/Moscow")


@pytest.fixture
def crm_world(crm: SandboxCrm) -> SandboxWorld:
    return SandboxWorld(crm)


@pytest.fixture
def other_crm(database: Database) -> SandboxCrm:
    return SandboxCrm(database, make_portal(database, "b"), timezone="Europe/Moscow")


class TestSandboxContract(CrmContract):
    pass


# --- sandbox only ---------------------------------------------------------------------------------------


def test_sandbox_is_a_crm_client(crm: SandboxCrm) -> None:
    assert isinstance(crm, CrmClient)


def test_another_portal_cannot_touch_a_deal(
    crm: SandboxCrm, crm_world: SandboxWorld, other_crm: SandboxCrm
) -> None:
    deal_id = crm_world.make_deal("Орлов В. Н.", fields={"ward": "Палата 3"})
    intruder = other_crm.seed_user("Чужой Пользователь")
    before = crm.get_deal(deal_id)

    attempts = [
        lambda: other_crm.get_deal(deal_id),
        lambda: other_crm.update_deal_fields(deal_id, {"ward": "Палата 13"}),
        lambda: other_crm.update_deals([DealUpdate(deal_id, {"ward": None})]),
        lambda: other_crm.move_deal(deal_id, StageRef("main", "lost"), loss_reason="чужой"),
        lambda: other_crm.add_note(deal_id, "чужая заметка", idempotency_key="x-note"),
        lambda: other_crm.set_responsible(deal_id, intruder.id),
        lambda: other_crm.attach_file(deal_id, "x.txt", b"x", "text/plain", idempotency_key="x-file"),
    ]
    for attempt in attempts:
        with pytest.raises(Rejected) as exc:
            attempt()
        assert exc.value.status == 404

    assert crm.get_deal(deal_id) == before
    assert crm.notes_for(deal_id) == []
    assert crm.files_for(deal_id) == []


def test_users_and_contacts_are_per_portal(crm: SandboxCrm, other_crm: SandboxCrm) -> None:
    anna = crm.seed_user("Анна Смирнова", "anna@clinic-a.ru", is_admin=True)
    contact = crm.create_contact(NewContact("Елена Орлова", phones=("+79161234567",)), idempotency_key="k")
    other_deal = other_crm.create_deal(NewDeal("Пациент Б", StageRef("main", "new")), idempotency_key="k")

    assert other_crm.list_users() == []
    assert other_crm.find_contacts_by_phone("+79161234567") == []
    for attempt in (
        lambda: other_crm.set_responsible(other_deal.id, anna.id),
        lambda: other_crm.notify_user(anna.id, "чужое", idempotency_key="n"),
        lambda: other_crm.create_deal(
            NewDeal("Б", StageRef("main", "new"), contact_ids=(contact.id,)), idempotency_key="k2"
        ),
    ):
        with pytest.raises(Rejected) as exc:
            attempt()
        assert exc.value.status == 404
    assert crm.notifications_for(anna.id) == []


def test_idempotency_keys_are_per_portal(crm: SandboxCrm, other_crm: SandboxCrm) -> None:
    new = NewDeal("Пациент", StageRef("main", "new"))
    assert (
        crm.create_deal(new, idempotency_key="same").id
        != other_crm.create_deal(new, idempotency_key="same").id
    )


def test_a_replay_returns_the_first_record_even_with_another_body(crm: SandboxCrm) -> None:
    first = crm.create_deal(NewDeal("Первый", StageRef("main", "new")), idempotency_key="k")
    again = crm.create_deal(NewDeal("Второй", StageRef("main", "won")), idempotency_key="k")
    assert again == first


def test_update_deals_is_all_or_nothing_in_the_sandbox(crm: SandboxCrm, crm_world: SandboxWorld) -> None:
    deal_id = crm_world.make_deal("Орлов В. Н.", fields={"ward": "Палата 3"})
    with pytest.raises(Rejected):
        crm.update_deals([DealUpdate(deal_id, {"ward": "Палата 4"}), DealUpdate("404404", {"ward": "x"})])
    assert crm.get_deal(deal_id).fields["ward"] == "Палата 3"


def test_malformed_ids_are_not_found(crm: SandboxCrm) -> None:
    for bad in ("", "abc", "-1", "1.0", "٣", "9" * 40):
        with pytest.raises(Rejected) as exc:
            crm.get_deal(bad)
        assert exc.value.status == 404


def test_a_price_must_be_integer_minor_units(crm: SandboxCrm) -> None:
    with pytest.raises(Rejected) as exc:
        crm.create_deal(NewDeal("П", StageRef("main", "new"), price_minor=100.5), idempotency_key="p")  # type: ignore[arg-type]
    assert exc.value.path == "price_minor"


@pytest.mark.parametrize(
    "value", [None, "текст", 0, -5, 10**15, True, False, date(2024, 2, 29), ("a", "b"), ()]
)
def test_field_values_roundtrip_through_json(value: FieldValue) -> None:
    decoded = decode_field(encode_field("f", value))
    assert decoded == value
    assert type(decoded) is type(value)


@pytest.mark.parametrize(
    "value", [1.5, datetime(2024, 1, 1, 12, 0), ["a"], ("a", 1), {"$date": "2024-01-01"}]
)
def test_other_values_are_refused(value: object) -> None:
    with pytest.raises(Rejected) as exc:
        encode_field("fields.x", value)  # type: ignore[arg-type]
    assert exc.value.path == "fields.x"


def test_phones_normalise_to_e164_with_russia_by_default() -> None:
    assert normalize_phone("8 (916) 123-45-67") == "+79161234567"
    assert normalize_phone("+375 29 123-45-67") == "+375291234567"
    with pytest.raises(Rejected, match="'не телефон'"):
        normalize_phone("не телефон")


def test_seed_user_with_an_email_is_idempotent(crm: SandboxCrm) -> None:
    first = crm.seed_user("Анна Смирнова", "Anna@Clinic.ru", is_admin=True)
    assert crm.seed_user("Анна Смирнова", "anna@clinic.ru") == first
    assert len(crm.list_users()) == 1


def _counts(database: Database, portal_id: int) -> dict[str, int]:
    models = (sm.SandboxUser, sm.SandboxDeal, sm.SandboxContact, sm.SandboxNote, sm.SandboxTask,
              sm.SandboxFile, sm.SandboxNotification)  # fmt: skip
    with database.transaction() as s:
        return {
            m.__tablename__: s.scalar(select(func.count()).select_from(m).where(m.portal_id == portal_id))
            or 0
            for m in models
        }


def test_seed_demo_is_idempotent(crm: SandboxCrm, database: Database, portal_id: int) -> None:
    today = date(2025, 3, 10)

    first = seed_demo(crm, today=today)
    counts = _counts(database, portal_id)
    second = seed_demo(crm, today=today)

    assert second == first
    assert _counts(database, portal_id) == counts
    assert counts["sandbox_users"] == 4
    assert counts["sandbox_deals"] == len(first["deals"]) >= 3
    assert {u["role"] for u in first["users"]} == {"admin", "finance", "staff", "viewer"}


def test_seed_demo_data_is_usable(crm: SandboxCrm) -> None:
    summary = seed_demo(crm, today=date(2025, 3, 10))
    deals = {d["name"]: crm.get_deal(d["id"]) for d in summary["deals"]}

    orlov = deals["Орлов Виктор Николаевич"]
    assert orlov.fields["admission_date"] == date(2025, 2, 26)
    assert orlov.price_minor == 21 * 650_000
    assert [c.id for c in crm.find_contacts_by_phone("+79161234567")] == list(orlov.contact_ids)
    lost = [d for d in deals.values() if d.stage.stage_id == "lost"]
    assert [d.is_closed for d in lost] == [True]
    assert crm.loss_reason_for(lost[0].id) == "Выбрали другую клинику"
    [task] = crm.tasks_for(orlov.id)
    assert task.due_at == datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # 15:00 in Moscow
    admin = next(u for u in summary["users"] if u["role"] == "admin")
    assert next(u for u in crm.list_users() if u.id == admin["id"]).is_admin is True


@pytest.mark.postgres
def test_losing_a_create_race_returns_the_winner(crm: SandboxCrm, database: Database, portal_id: int) -> None:
    # SQLite serialises writers with BEGIN IMMEDIATE, so the race only exists on PostgreSQL.
    if database.is_sqlite:
        pytest.skip("needs PostgreSQL: SQLite writers cannot interleave")
    deal_id = int(crm.create_deal(NewDeal("Гонка", StageRef("main", "new")), idempotency_key="race-deal").id)
    with database.transaction() as loser:
        assert crm._existing(loser, sm.SandboxNote, "race") is None
        # The winner commits between the loser's lookup and its insert.
        with database.transaction() as winner:
            winner.add(
                sm.SandboxNote(portal_id=portal_id, deal_id=deal_id, text="первый", created_key="race")
            )
        row = sm.SandboxNote(portal_id=portal_id, deal_id=deal_id, text="второй", created_key="race")
        kept = crm._insert_once(loser, sm.SandboxNote, "race", row)
        assert kept.text == "первый"
    assert crm.notes_for(str(deal_id)) == ["первый"]


def test_a_patient_message_fills_the_field_and_shows_once_in_the_feed(
    crm: SandboxCrm, crm_world: SandboxWorld
) -> None:
    deal_id = crm_world.make_deal("Орлов В. Н.")
    message = OutgoingMessage(deal_id=deal_id, text="Ждём вас 12.03 в 10:00", text_field_id="ward")

    crm.send_message(message, idempotency_key="journey:1:confirm")
    crm.send_message(message, idempotency_key="journey:1:confirm")

    assert crm.get_deal(deal_id).fields["ward"] == "Ждём вас 12.03 в 10:00"
    assert crm.messages_for(deal_id) == ["Ждём вас 12.03 в 10:00"]


def test_a_message_without_text_sends_nothing(crm: SandboxCrm, crm_world: SandboxWorld) -> None:
    deal_id = crm_world.make_deal("Орлов В. Н.")
    with pytest.raises(Rejected) as refused:
        crm.send_message(OutgoingMessage(deal_id, "  ", "ward"), idempotency_key="journey:2")
    assert refused.value.path == "text"
    assert crm.messages_for(deal_id) == []
