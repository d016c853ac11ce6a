"""AmoCrmClient: the requests it sends, how it reads answers, and how it fails (research/amocrm.md §5-6).

Outgoing requests are read from the fake's log (method, URL, JSON body); exact answers come from
tests/fixtures/amocrm/api/*.json via `responses`. Nothing reaches the network.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import responses

from connectors.amocrm.client import AmoCrmClient, reference_for
from connectors.amocrm.const import MAX_RPS
from connectors.amocrm.limits import BURST_WINDOW_S, AmoLimiter, amo_http, amo_limiter, amo_limiter_key
from connectors.errors import ReauthRequired, Rejected, RetryLater
from connectors.http import PortalHttp
from connectors.ratelimit import NullRateLimiter, RedisRateLimiter
from connectors.types import (
    DealUpdate,
    NewContact,
    NewDeal,
    NewNote,
    NewTask,
    OAuthToken,
    OutgoingMessage,
    StageRef,
)
from tests.connectors.amocrm.test_contract import AmoWorld, MemoryTokens
from tests.support.fake_amocrm import FakeAmo, load_fixture

ROOT = Path(__file__).resolve().parents[3]
BASE = "https://clinic.amocrm.ru"
MSK_DUE = datetime(2030, 5, 6, 12, 0, tzinfo=UTC)


def make_client(
    base: str = BASE,
    *,
    tokens: MemoryTokens | None = None,
    refresh: Any = None,
    limiter: Any = None,
    sleeps: list[float] | None = None,
    on_blocked: Any = None,
) -> AmoCrmClient:
    slept = sleeps if sleeps is not None else []
    http = amo_http(name="amo:test", limiter=limiter or NullRateLimiter(), sleep=slept.append)
    return AmoCrmClient(
        base_url=base,
        tokens=tokens or MemoryTokens(OAuthToken("access-1", "refresh-1", None)),
        refresh=refresh,
        http=http,
        timezone="Europe/Moscow",
        on_blocked=on_blocked,
        reference_fields={"leads": "1009", "contacts": "2009"},
    )


@pytest.fixture
def fake() -> Iterator[FakeAmo]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield FakeAmo(rsps, rate_limit=None)


@pytest.fixture
def world(fake: FakeAmo) -> AmoWorld:
    return AmoWorld(fake)


def bodies(fake: FakeAmo, method: str, path: str) -> list[Any]:
    return [body for _, _, body in fake.calls(method, path)]


# --- deals ----------------------------------------------------------------------------------------------


def test_get_deal_reads_the_documented_shape() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"{BASE}/api/v4/leads/19619",
            json=load_fixture("api/leads_get__with_contacts.json"),
            match=[
                responses.matchers.query_param_matcher({"with": "contacts,loss_reason"}),
                responses.matchers.header_matcher({"Authorization": "Bearer access-1"}),
            ],
        )
        deal = make_client().get_deal("19619")

    assert (deal.id, deal.name, deal.stage) == ("19619", "Орлов В. Н.", StageRef("3177727", "32392156"))
    assert deal.price_minor == 13_650_000
    assert deal.contact_ids == ("7143599",)
    assert deal.fields == {
        "1001": "Палата 3",
        "1002": 650_000,
        "1003": True,
        "1004": date(2024, 2, 29),
        "1005": ("5001", "5002"),
    }


def test_update_sends_only_the_given_fields_and_null_clears(fake: FakeAmo, world: AmoWorld) -> None:
    deal = world.make_deal("Орлов", fields={"1001": "Палата 5"})
    crm = make_client()

    crm.update_deal_fields(deal, {"1002": 200, "1001": None, "1004": date(2025, 1, 9)})

    assert fake.calls("GET", "/api/v4/leads/custom_fields")
    assert bodies(fake, "PATCH", f"/api/v4/leads/{deal}") == [
        {
            "custom_fields_values": [
                {"field_id": 1002, "values": [{"value": 200}]},
                {"field_id": 1001, "values": None},
                {"field_id": 1004, "values": [{"value": 1736370000}]},  # 2025-01-09 00:00 MSK
            ]
        }
    ]


def test_update_deals_sends_batches_of_50(fake: FakeAmo, world: AmoWorld) -> None:
    deals = [world.make_deal(f"Д{i}") for i in range(120)]

    make_client().update_deals([DealUpdate(d, {"1002": i}) for i, d in enumerate(deals)])

    assert [len(b) for b in bodies(fake, "PATCH", "/api/v4/leads")] == [50, 50, 20]
    assert fake.leads[int(deals[119])]["custom_fields_values"][0]["values"] == [{"value": "119"}]


@pytest.mark.parametrize(
    ("value", "sent"), [("35000.00", 35000), ("1234.50", "1234.5"), ("-12.3", "-12.3"), (7, 7)]
)
def test_a_number_field_takes_the_ledger_decimal_strings_exactly(
    fake: FakeAmo, world: AmoWorld, value: Any, sent: Any
) -> None:
    deal = world.make_deal("Орлов")
    make_client().update_deal_fields(deal, {"1002": value})
    [body] = bodies(fake, "PATCH", f"/api/v4/leads/{deal}")
    assert body["custom_fields_values"] == [{"field_id": 1002, "values": [{"value": sent}]}]


@pytest.mark.parametrize("value", ["12,30", "1e5", "NaN", "", "12.3.4", True])
def test_a_number_field_refuses_what_is_not_a_plain_decimal_without_a_call(
    fake: FakeAmo, world: AmoWorld, value: Any
) -> None:
    deal = world.make_deal("Орлов")
    with pytest.raises(Rejected) as exc:
        make_client().update_deal_fields(deal, {"1002": value})
    assert "fields.1002" in str(exc.value)
    assert not fake.calls("PATCH", f"/api/v4/leads/{deal}")


def test_every_lead_write_reports_the_updated_at_amo_gave_it(fake: FakeAmo, world: AmoWorld) -> None:
    deals = [world.make_deal(f"Д{i}") for i in range(3)]
    heard: list[tuple[str, str, int]] = []
    crm = make_client()
    crm.on_write = lambda entity, entity_id, updated_at: heard.append((entity, entity_id, updated_at))

    crm.update_deal_fields(deals[0], {"1001": "Палата 5"})
    crm.update_deals([DealUpdate(d, {"1002": 1}) for d in deals[1:]])

    assert [(e, i) for e, i, _ in heard] == [("leads", deals[0]), ("leads", deals[1]), ("leads", deals[2])]
    assert [ts for *_, ts in heard] == [fake.leads[int(d)]["updated_at"] for d in deals]


def test_field_definitions_are_read_once_per_host_across_clients(fake: FakeAmo, world: AmoWorld) -> None:
    from connectors.amocrm.fields import FieldDefsCache

    cache = FieldDefsCache(ttl_s=300)
    deals = [world.make_deal(f"Д{i}") for i in range(3)]
    for deal in deals:  # a fresh client per outbox wake-up, as the registry builds them
        client = make_client()
        client._field_cache = cache
        client.update_deal_fields(deal, {"1001": "Палата 5"})
    assert len(fake.calls("GET", "/api/v4/leads/custom_fields")) == 1


def test_a_field_created_after_the_cached_copy_is_found_by_reading_again(
    fake: FakeAmo, world: AmoWorld
) -> None:
    from connectors.amocrm.fields import FieldDefsCache

    cache = FieldDefsCache(ttl_s=300)
    deal = world.make_deal("Орлов")
    first = make_client()
    first._field_cache = cache
    first.update_deal_fields(deal, {"1001": "Палата 5"})
    new_field = {**fake.lead_fields[1001], "id": 1777, "name": "Новое поле", "code": None}
    fake.lead_fields[1777] = new_field

    second = make_client()
    second._field_cache = cache
    second.update_deal_fields(deal, {"1777": "значение"})

    assert len(fake.calls("GET", "/api/v4/leads/custom_fields")) == 2
    with pytest.raises(Rejected):  # a field that truly does not exist is still refused, after one re-read
        second.update_deal_fields(deal, {"4242": "x"})
    assert len(fake.calls("GET", "/api/v4/leads/custom_fields")) == 2


def test_the_cached_definitions_expire() -> None:
    from connectors.amocrm.fields import FieldDef, FieldDefsCache

    now = [1000.0]
    cache = FieldDefsCache(ttl_s=300, clock=lambda: now[0])
    cache.put("https://clinic.amocrm.ru", {"1": FieldDef("1", None, "text")})
    now[0] += 299
    assert cache.get("https://clinic.amocrm.ru") is not None
    now[0] += 2
    assert cache.get("https://clinic.amocrm.ru") is None


def test_a_504_batch_is_resent_in_halves(fake: FakeAmo, world: AmoWorld) -> None:
    deals = [world.make_deal(f"Д{i}") for i in range(50)]
    fake.inject(504, 1, method="PATCH", path=r"^/api/v4/leads$")

    make_client().update_deals([DealUpdate(d, {"1001": "x"}) for d in deals])

    assert [len(b) for b in bodies(fake, "PATCH", "/api/v4/leads")] == [50, 25, 25]
    assert all(fake.leads[int(d)]["custom_fields_values"] for d in deals)


def test_move_to_lost_maps_the_loss_reason(fake: FakeAmo, world: AmoWorld) -> None:
    deal = world.make_deal("Волкова")
    crm = make_client()

    crm.move_deal(deal, StageRef("3177727", "143"), loss_reason="Дорого")
    with pytest.raises(Rejected) as exc:
        crm.move_deal(deal, StageRef("3177727", "143"), loss_reason="Погода")

    assert exc.value.code == "unknown_loss_reason"
    assert len(fake.calls("GET", "/api/v4/leads/loss_reasons")) == 1  # cached
    assert bodies(fake, "PATCH", f"/api/v4/leads/{deal}") == [
        {"pipeline_id": 3177727, "status_id": 143, "loss_reason_id": 7002}
    ]


def test_move_across_pipelines_sends_both_ids(fake: FakeAmo, world: AmoWorld) -> None:
    deal = world.make_deal("Орлов")
    make_client().move_deal(deal, StageRef("3177730", "32392170"))
    assert bodies(fake, "PATCH", f"/api/v4/leads/{deal}") == [{"pipeline_id": 3177730, "status_id": 32392170}]


def test_create_deal_uses_complex_with_request_id_and_reference(fake: FakeAmo, world: AmoWorld) -> None:
    contact = world.make_contact("Елена", ("+79161234567",))
    user = world.make_user("Мария")
    for i in range(45):
        fake.lead_fields[3000 + i] = {
            "id": 3000 + i,
            "name": f"f{i}",
            "type": "text",
            "code": None,
            "enums": None,
        }
    fields = {str(3000 + i): f"v{i}" for i in range(45)}

    deal = make_client().create_deal(
        NewDeal(
            "Петрова",
            StageRef("3177727", "32392156"),
            responsible_user_id=user,
            price_minor=500_000,
            fields=fields,
            contact_ids=(contact,),
        ),
        idempotency_key="k-1",
    )

    [[lead]] = bodies(fake, "POST", "/api/v4/leads/complex")
    assert lead["request_id"] == "k-1"
    assert lead["price"] == 5000 and lead["status_id"] == 32392156 and lead["pipeline_id"] == 3177727
    assert lead["_embedded"]["contacts"] == [{"id": int(contact)}]
    assert len(lead["custom_fields_values"]) == 40
    assert lead["custom_fields_values"][-1] == {"field_id": 1009, "values": [{"value": reference_for("k-1")}]}
    [rest] = bodies(fake, "PATCH", f"/api/v4/leads/{deal.id}")
    assert len(rest["custom_fields_values"]) == 6
    assert deal.fields["3044"] == "v44" and deal.contact_ids == (contact,)


def test_an_ambiguous_create_that_landed_is_read_back_not_resent(fake: FakeAmo) -> None:
    fake.inject("timeout_after", 1, method="POST", path="complex")

    deal = make_client().create_deal(
        NewDeal("Петрова", StageRef("3177727", "32392156")), idempotency_key="k-2"
    )

    assert len(fake.calls("POST", "/api/v4/leads/complex")) == 1
    assert [c[1] for c in fake.calls("GET", "/api/v4/leads")][-1].find(reference_for("k-2")) > 0
    assert list(fake.leads) == [int(deal.id)]


def test_an_ambiguous_create_that_did_not_land_is_resent_once(fake: FakeAmo) -> None:
    fake.inject("timeout", 1, method="POST", path="complex")

    make_client().create_deal(NewDeal("Петрова", StageRef("3177727", "32392156")), idempotency_key="k-3")

    assert len(fake.calls("POST", "/api/v4/leads/complex")) == 2
    assert len(fake.leads) == 1


def test_a_429_on_a_create_is_read_back_before_any_resend(fake: FakeAmo, world: AmoWorld) -> None:
    deal = world.make_deal("Орлов")
    fake.inject(429, 1, method="POST", path="notes")

    make_client().add_note(deal, "Списание", idempotency_key="n-429")

    assert len(fake.calls("POST", f"/api/v4/leads/{deal}/notes")) == 2
    assert len(fake.calls("GET", f"/api/v4/leads/{deal}/notes")) == 1
    assert world.notes(deal) == ["Списание"]


def test_an_ambiguous_note_that_landed_is_not_duplicated(fake: FakeAmo, world: AmoWorld) -> None:
    deal = world.make_deal("Орлов")
    fake.inject("timeout_after", 1, method="POST", path="notes")

    make_client().add_note(deal, "Пополнение", idempotency_key="n-1")

    assert len(fake.calls("POST", f"/api/v4/leads/{deal}/notes")) == 1
    assert world.notes(deal) == ["Пополнение"]


def test_notes_go_50_per_request_in_order_and_a_repeat_sends_nothing(fake: FakeAmo, world: AmoWorld) -> None:
    deals = [world.make_deal(f"Д{i}") for i in range(3)]
    notes = [NewNote(deals[i % 3], f"Запись {i}", f"n-{i}") for i in range(120)]
    crm = make_client()

    refs = crm.add_notes(notes)

    posts = bodies(fake, "POST", "/api/v4/leads/notes")
    assert [len(b) for b in posts] == [50, 50, 20]
    assert posts[0][0]["entity_id"] == int(deals[0]) and posts[0][0]["request_id"] == "n-0"
    assert posts[0][0]["is_need_to_trigger_digital_pipeline"] is False
    assert [fake.notes[int(r.id)]["params"]["text"] for r in refs] == [f"Запись {i}" for i in range(120)]
    assert crm.add_notes(notes) == refs  # every key already created: no request at all
    assert len(fake.calls("POST", "/api/v4/leads/notes")) == 3


@pytest.mark.parametrize("fault", ["timeout_after", 504])
def test_a_note_batch_with_an_unknown_outcome_is_settled_note_by_note_without_doubles(
    fake: FakeAmo, world: AmoWorld, fault: Any
) -> None:
    deals = [world.make_deal(f"Д{i}") for i in range(2)]
    notes = [NewNote(deals[i % 2], f"Запись {i}", f"n-{i}") for i in range(4)]
    crm = make_client()
    fake.inject(fault, 1, method="POST", path="/api/v4/leads/notes")

    with pytest.raises(RetryLater):
        crm.add_notes(notes)  # the outbox will retry the jobs
    refs = crm.add_notes(notes)

    assert sorted(world.notes(deals[0]) + world.notes(deals[1])) == sorted(f"Запись {i}" for i in range(4))
    assert len({r.id for r in refs}) == 4


def test_a_refused_note_batch_creates_nothing_and_keeps_no_pending_marks(
    fake: FakeAmo, world: AmoWorld
) -> None:
    deal = world.make_deal("Орлов")
    crm = make_client()
    with pytest.raises(Rejected):
        crm.add_notes([NewNote(deal, "Запись", "n-1"), NewNote("99999", "Чужая", "n-2")])
    assert world.notes(deal) == []
    assert crm.created.get("note:n-1") is None


# --- contacts -------------------------------------------------------------------------------------------


def test_find_by_phone_queries_digits_and_keeps_exact_matches() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(
            f"{BASE}/api/v4/contacts",
            json=load_fixture("api/contacts_query.json"),
            match=[responses.matchers.query_param_matcher({"query": "9161234567", "limit": "250"})],
        )
        found = make_client().find_contacts_by_phone("+79161234567")

    assert [(c.id, c.phones) for c in found] == [("7143599", ("+79161234567",))]


@pytest.mark.parametrize("phone", ["8 916 123-45-67", "79161234567", "", "+7 916 1234567"])
def test_find_by_phone_refuses_non_e164_without_a_call(phone: str) -> None:
    with responses.RequestsMock() as rsps:  # any request would fail: nothing is registered
        with pytest.raises(Rejected):
            make_client().find_contacts_by_phone(phone)
        assert len(rsps.calls) == 0


def test_create_contact_sends_phone_and_email_multitext(fake: FakeAmo) -> None:
    contact = make_client().create_contact(
        NewContact("Дмитрий", phones=("8 (903) 555-12-34",), emails=("d@example.ru",)), idempotency_key="c-1"
    )

    [[body]] = bodies(fake, "POST", "/api/v4/contacts")
    assert body["request_id"] == "c-1"
    assert body["custom_fields_values"][:2] == [
        {"field_code": "PHONE", "values": [{"value": "+79035551234", "enum_code": "WORK"}]},
        {"field_code": "EMAIL", "values": [{"value": "d@example.ru", "enum_code": "WORK"}]},
    ]
    assert contact.phones == ("+79035551234",) and contact.emails == ("d@example.ru",)


# --- notes, tasks, users, files --------------------------------------------------------------------------


def test_add_note_is_an_extended_service_message_without_dp(fake: FakeAmo, world: AmoWorld) -> None:
    deal = world.make_deal("Орлов")
    make_client().add_note(deal, "Текст", idempotency_key="n-2")
    assert bodies(fake, "POST", f"/api/v4/leads/{deal}/notes") == [
        [
            {
                "note_type": "extended_service_message",
                "params": {"service": "ClinicBridge", "text": "Текст"},
                "request_id": "n-2",
                "is_need_to_trigger_digital_pipeline": False,
            }
        ]
    ]


def test_create_task_body(fake: FakeAmo, world: AmoWorld) -> None:
    deal, user = world.make_deal("Орлов"), world.make_user("Мария")
    make_client().create_task(NewTask(deal, user, "Позвонить", MSK_DUE), idempotency_key="t-1")
    assert bodies(fake, "POST", "/api/v4/tasks") == [
        [
            {
                "text": "Позвонить",
                "complete_till": int(MSK_DUE.timestamp()),
                "entity_type": "leads",
                "entity_id": int(deal),
                "task_type_id": 1,
                "responsible_user_id": int(user),
                "request_id": "t-1",
            }
        ]
    ]


def test_notify_user_is_a_task_due_now_without_entity(fake: FakeAmo, world: AmoWorld) -> None:
    user = world.make_user("Игорь")
    make_client().notify_user(user, "Баланс низкий", idempotency_key="u-1")
    [[task]] = bodies(fake, "POST", "/api/v4/tasks")
    assert "entity_id" not in task and task["responsible_user_id"] == int(user)
    assert abs(task["complete_till"] - time.time()) < 120


def test_list_users_403_is_admin_only(fake: FakeAmo) -> None:
    fake.admin = False
    with pytest.raises(Rejected) as exc:
        make_client().list_users()
    assert (exc.value.status, exc.value.code) == (403, "admin_only")


def test_attach_file_uploads_parts_then_adds_an_attachment_note(fake: FakeAmo, world: AmoWorld) -> None:
    fake.max_part_size = 4
    deal = world.make_deal("Орлов")
    ref = make_client().attach_file(deal, "a.pdf", b"%PDF-1.7 x", "application/pdf", idempotency_key="f-1")

    assert [urlsplit(u).path for m, u, _ in fake.log if "drive-b" in u] == [
        "/v1.0/sessions",
        "/upload/session-31415/part-0",
        "/upload/session-31415/part-1",
        "/upload/session-31415/part-2",
    ]
    assert fake.calls("GET", "/api/v4/account")[0][1].endswith("with=drive_url")
    [[note]] = bodies(fake, "POST", f"/api/v4/leads/{deal}/notes")
    assert note["note_type"] == "attachment" and note["params"]["file_uuid"] == ref.id
    assert fake.files[ref.id]["data"] == b"%PDF-1.7 x"


# --- lists ----------------------------------------------------------------------------------------------


def test_lists_follow_links_next_over_three_pages() -> None:
    page = load_fixture("api/users_list.json")
    with responses.RequestsMock() as rsps:
        for n in (1, 2, 3):
            body = json.loads(json.dumps(page))
            body["_embedded"]["users"] = [{**page["_embedded"]["users"][0], "id": n}]
            body["_links"] = {"self": {"href": f"{BASE}/api/v4/users?p={n}"}}
            if n < 3:
                body["_links"]["next"] = {"href": f"{BASE}/api/v4/users?opaque=x{n + 1}"}
            query = {"limit": "250"} if n == 1 else {"opaque": f"x{n}"}
            rsps.get(f"{BASE}/api/v4/users", json=body, match=[responses.matchers.query_param_matcher(query)])
        users = make_client().list_users()
    assert [u.id for u in users] == ["1", "2", "3"]


def test_204_is_an_empty_list() -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{BASE}/api/v4/users", status=204)
        assert make_client().list_users() == []


def test_limit_over_250_and_batches_over_250_are_refused_by_the_fake(fake: FakeAmo, world: AmoWorld) -> None:
    crm = make_client()
    assert crm.transport.request("GET", "/api/v4/users", params={"limit": 250}).status_code == 200
    with pytest.raises(Rejected) as exc:
        crm.transport.request("GET", "/api/v4/users", params={"limit": 251})
    assert exc.value.status == 400
    deal = int(world.make_deal("Орлов"))
    with pytest.raises(Rejected) as exc:
        crm.transport.send_json("PATCH", "/api/v4/leads", [{"id": deal}] * 251)
    assert exc.value.status == 422


# --- errors ---------------------------------------------------------------------------------------------


def test_validation_error_names_path_and_code(fake: FakeAmo, world: AmoWorld) -> None:
    deal = world.make_deal("Орлов")
    fake.inject(400, 1, method="PATCH", body=load_fixture("errors/validation_errors__400.json"))
    with pytest.raises(Rejected) as exc:
        make_client().update_deal_fields(deal, {"1001": "x"})
    assert (exc.value.status, exc.value.code, exc.value.path) == (
        400,
        "NotSupportedChoice",
        "custom_fields_values.0.field_id",
    )


def test_404_is_rejected_with_status_404(fake: FakeAmo) -> None:
    with pytest.raises(Rejected) as exc:
        make_client().get_deal("555")
    assert exc.value.status == 404


def test_429_with_retry_after_300_reschedules_without_sleeping(fake: FakeAmo) -> None:
    sleeps: list[float] = []
    limiter = NullRateLimiter()
    fake.inject(429, 5, body=load_fixture("errors/too_many_requests__429.json"))
    started = time.monotonic()
    with pytest.raises(RetryLater) as exc:
        make_client(limiter=limiter, sleeps=sleeps).list_users()
    assert exc.value.retry_after >= 300
    assert time.monotonic() - started < 2 and sleeps == []
    assert limiter.pauses == [300]


def test_429_without_json_defaults_to_60(fake: FakeAmo) -> None:
    fake.inject(429, 10, body="<html>slow down</html>")
    with pytest.raises(RetryLater) as exc:
        make_client().list_users()
    assert exc.value.retry_after == 60


def test_nginx_403_blocks_the_portal_and_stops_all_calls(fake: FakeAmo, world: AmoWorld) -> None:
    deal = world.make_deal("Орлов")
    alerts: list[str] = []
    crm = make_client(on_blocked=alerts.append)
    fake.inject("nginx403", 1)

    with pytest.raises(Rejected) as exc:
        crm.get_deal(deal)
    sent = len(fake.log)
    with pytest.raises(Rejected) as again:
        crm.add_note(deal, "x", idempotency_key="n-b")

    assert (exc.value.status, exc.value.code) == (403, "blocked")
    assert again.value.code == "blocked" and crm.blocked
    assert len(alerts) == 1 and len(fake.log) == sent


def test_401_refreshes_once_then_succeeds(fake: FakeAmo) -> None:
    tokens = MemoryTokens(OAuthToken("old", "r-1", None))
    fake.tokens = {"new"}
    seen: list[str | None] = []

    def refresh(token: OAuthToken) -> OAuthToken:
        seen.append(token.refresh_token)
        return OAuthToken("new", "r-2", datetime.now(UTC) + timedelta(days=1))

    assert make_client(tokens=tokens, refresh=refresh).list_users()
    assert seen == ["r-1"] and tokens.token is not None and tokens.token.refresh_token == "r-2"


def test_a_refused_refresh_is_reauth_required(fake: FakeAmo) -> None:
    tokens = MemoryTokens(OAuthToken("old", "r-1", None))
    fake.tokens = {"new"}

    def refresh(token: OAuthToken) -> OAuthToken:
        raise ReauthRequired("Token has been revoked")

    with pytest.raises(ReauthRequired):
        make_client(tokens=tokens, refresh=refresh).list_users()
    assert tokens.reauth == ["Token has been revoked"]


def test_a_second_401_is_reauth_required(fake: FakeAmo) -> None:
    fake.tokens = set()
    tokens = MemoryTokens(OAuthToken("old", "r-1", None))
    with pytest.raises(ReauthRequired):
        make_client(tokens=tokens, refresh=lambda t: OAuthToken("new", "r-2", None)).list_users()
    assert len(fake.calls("GET", "/api/v4/users")) == 2


def test_an_expiring_token_is_refreshed_before_the_call(fake: FakeAmo) -> None:
    fake.tokens = {"new"}
    tokens = MemoryTokens(OAuthToken("old", "r-1", datetime.now(UTC) + timedelta(minutes=2)))
    make_client(tokens=tokens, refresh=lambda t: OAuthToken("new", "r-2", None)).list_users()
    assert len(fake.calls("GET", "/api/v4/users")) == 1


@pytest.mark.parametrize("base", ["https://www.amocrm.ru", "http://clinic.amocrm.ru", "https://evil.example"])
def test_base_url_must_be_an_account_host(base: str) -> None:
    with pytest.raises(ValueError):
        make_client(base)


@pytest.mark.parametrize("base", ["https://clinic.amocrm.com", "https://clinic.kommo.com"])
def test_kommo_and_amocrm_com_share_the_code_path(base: str) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(f"{base}/api/v4/users", status=204)
        assert make_client(base).list_users() == []


# --- limiter --------------------------------------------------------------------------------------------


def test_amo_limiter_keys_and_validation(redis_client: redis.Redis) -> None:
    assert amo_limiter_key(account_id="1", scope="ip") == "amo:ip"
    assert amo_limiter_key(account_id="1", scope="account") == "amo:account:1"
    limiter = amo_limiter(redis_client, account_id="1", rps=Decimal("6.5"), scope="account")
    assert isinstance(limiter, AmoLimiter)
    assert (limiter.burst.limit, limiter.sustained.limit) == (7, 65)  # type: ignore[attr-defined]
    for bad in (Decimal("7.1"), Decimal("0")):
        with pytest.raises(ValueError):
            amo_limiter(redis_client, account_id="1", rps=bad, scope="ip")
    with pytest.raises(ValueError):
        amo_limiter(redis_client, account_id="1", rps=Decimal(5), scope="planet")
    limiter.pause(1)
    assert limiter.paused_for() > 0.5 and limiter.try_acquire() > 0


# --- several processes ----------------------------------------------------------------------------------


class RedisTokens:
    """A TokenSource shared by processes: the pair in Redis, the refresh under a Redis lock."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.r, self.prefix = client, prefix

    def get(self) -> OAuthToken | None:
        raw = self.r.get(f"{self.prefix}:token")
        if raw is None:
            return None
        doc = json.loads(raw)
        expires = datetime.fromtimestamp(doc["exp"], UTC) if doc["exp"] is not None else None
        return OAuthToken(doc["access"], doc["refresh"], expires)

    def save(self, token: OAuthToken) -> None:
        exp = token.expires_at.timestamp() if token.expires_at else None
        self.r.set(
            f"{self.prefix}:token",
            json.dumps({"access": token.access_token, "refresh": token.refresh_token, "exp": exp}),
        )

    def refresh_lock(self) -> AbstractContextManager[Any]:
        return self.r.lock(f"{self.prefix}:lock", timeout=10, blocking_timeout=10)

    def mark_reauth_required(self, reason: str) -> None:
        self.r.rpush(f"{self.prefix}:reauth", reason)


def run_refresh_worker(redis_url: str, prefix: str, threads: str) -> None:
    """A process of `threads` threads calling one account with a stale token (entry point)."""
    client = redis.Redis.from_url(redis_url)
    tokens = RedisTokens(client, prefix)

    def token_endpoint(token: OAuthToken) -> OAuthToken:
        # amoCRM's token endpoint: every refresh token works once (§1.2, strict reading).
        if client.sadd(f"{prefix}:used", token.refresh_token or "") == 0:
            raise ReauthRequired("Token has been revoked")
        n = client.incr(f"{prefix}:refreshes")
        time.sleep(0.05)  # a slow endpoint widens the race
        client.set(f"{prefix}:valid", f"access-{n}")
        return OAuthToken(f"access-{n}", f"refresh-{n}", datetime.now(UTC) + timedelta(days=1))

    def api(request: Any) -> tuple[int, dict[str, str], str]:
        valid = (client.get(f"{prefix}:valid") or b"").decode()
        if request.headers.get("Authorization") != f"Bearer {valid}":
            return 401, {}, json.dumps(load_fixture("errors/unauthorized__401.json"))
        return 200, {}, json.dumps(load_fixture("api/users_list.json"))

    errors: list[str] = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback("GET", re.compile(rf"{BASE}/api/v4/users.*"), callback=api)
        client.rpush(f"{prefix}:ready", 1)
        if client.blpop([f"{prefix}:go"], timeout=20) is None:
            raise SystemExit("no go signal")

        def call() -> None:
            try:
                crm = AmoCrmClient(
                    base_url=BASE,
                    tokens=tokens,
                    refresh=token_endpoint,
                    http=PortalHttp(name="amo:race", limiter=NullRateLimiter()),
                    timezone="Europe/Moscow",
                )
                crm.list_users()
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

        workers = [threading.Thread(target=call) for _ in range(int(threads))]
        for w in workers:
            w.start()
        for w in workers:
            w.join(30)
    print(json.dumps(errors))
    client.close()


def _spawn(code: str, args: list[list[str]], client: redis.Redis, ready: str, go: str) -> list[str]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, *a], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for a in args
    ]
    try:
        deadline = time.monotonic() + 30
        while client.llen(ready) < len(procs):
            assert time.monotonic() < deadline, "workers did not start"
            assert all(p.poll() is None for p in procs), "a worker died while starting"
            time.sleep(0.01)
        client.rpush(go, *[1] * len(procs))
        outs = []
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()
            outs.append(out.decode())
        return outs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.parametrize("case", ["expired", "revoked_by_401"])
def test_40_threads_in_2_processes_refresh_exactly_once(
    redis_url: str, redis_client: redis.Redis, case: str
) -> None:
    prefix = f"test:race:{case}"
    expired = datetime.now(UTC) - timedelta(hours=1)
    # "expired": the stored pair is past its expiry; "revoked_by_401": it looks valid, the API says 401.
    RedisTokens(redis_client, prefix).save(
        OAuthToken("access-0", "refresh-0", expired if case == "expired" else None)
    )
    redis_client.set(f"{prefix}:valid", "access-0" if case == "expired" else "nope")
    code = (
        "import sys; from tests.connectors.amocrm.test_client import run_refresh_worker; "
        "run_refresh_worker(*sys.argv[1:])"
    )

    outs = _spawn(code, [[redis_url, prefix, "20"]] * 2, redis_client, f"{prefix}:ready", f"{prefix}:go")

    assert [json.loads(o.strip().splitlines()[-1]) for o in outs] == [[], []]
    assert int(redis_client.get(f"{prefix}:refreshes") or 0) == 1
    assert redis_client.llen(f"{prefix}:reauth") == 0
    stored = RedisTokens(redis_client, prefix).get()
    assert stored is not None and stored.refresh_token == "refresh-1"


PER_WORKER = 8


class _RecordedLimiter(RedisRateLimiter):
    """The same Redis limiter, logging each admission as the Redis time just before and just after it was
    decided (µs): the decision lies between, however long the OS keeps this process waiting elsewhere."""

    def __init__(self, client: redis.Redis, real: RedisRateLimiter, log_key: str) -> None:
        super().__init__(client, real.key, limit=real.limit, window_s=real.window_s)
        self._client, self._log_key = client, log_key

    def _now_us(self) -> int:
        seconds, micros = self._client.time()
        return int(seconds) * 1_000_000 + int(micros)

    def try_acquire(self) -> float:
        before = self._now_us()
        wait = super().try_acquire()
        if wait == 0:
            self._client.rpush(self._log_key, json.dumps([before, self._now_us()]))
        return wait


def run_limiter_worker(redis_url: str, url: str, tag: str) -> None:
    """A process sending PER_WORKER GETs through amo_limiter, its burst admissions logged (entry point)."""
    client = redis.Redis.from_url(redis_url)
    limiter = amo_limiter(client, account_id="29876543", rps=Decimal("7"), scope="ip")
    assert isinstance(limiter.burst, RedisRateLimiter)
    limiter.burst = _RecordedLimiter(client, limiter.burst, f"{tag}:grants")
    with PortalHttp(name="amo:limit", limiter=limiter) as http:
        client.rpush(f"{tag}:ready", 1)
        if client.blpop([f"{tag}:go"], timeout=20) is None:
            raise SystemExit("no go signal")
        for _ in range(PER_WORKER):
            http.request("GET", url).raise_for_status()
    client.close()


class _Counter(BaseHTTPRequestHandler):
    hits: list[float]

    def do_GET(self) -> None:
        self.hits.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        pass


def _surely_in_one_window(grants: list[tuple[int, int]], window_us: int) -> int:
    """The most admissions certainly decided within one window: those whose whole (before, after) span lies
    in [before of one of them, + window). A slow process widens spans, which can only lower this count."""
    return max(sum(1 for lo, hi in grants if start <= lo and hi < start + window_us) for start, _ in grants)


def test_3_processes_sharing_amo_limiter_stay_within_7_per_second(
    redis_url: str, redis_client: redis.Redis
) -> None:
    hits: list[float] = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Counter,), {"hits": hits}))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/count"
    code = (
        "import sys; from tests.connectors.amocrm.test_client import run_limiter_worker; "
        "run_limiter_worker(*sys.argv[1:])"
    )
    try:
        _spawn(code, [[redis_url, url, "test:lim"]] * 3, redis_client, "test:lim:ready", "test:lim:go")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    # Judged on the limiter's own decisions (timed by Redis), not on when requests reached the server:
    # under CPU load a process admitted early can send late and bunch up with later ones at the server.
    grants = [tuple(json.loads(g)) for g in redis_client.lrange("test:lim:grants", 0, -1)]
    window_us = round(BURST_WINDOW_S * 1_000_000)
    assert len(hits) == len(grants) == 3 * PER_WORKER
    assert _surely_in_one_window(grants, window_us) <= MAX_RPS
    # 24 admissions, 7 per window: the 22nd comes at least 3 windows after the 1st. Load only adds time.
    spread = max(hi for _, hi in grants) - min(lo for lo, _ in grants)
    assert spread >= (3 * PER_WORKER - 1) // MAX_RPS * window_us


def test_the_window_count_sees_a_burst_and_forgives_a_slow_process() -> None:
    burst = [(i * 1000, i * 1000 + 200) for i in range(8)]
    assert _surely_in_one_window(burst, 1_100_000) == 8
    # The same 8, one of them decided while its process stalled for 2 s: not surely in the window.
    stalled = [*burst[:7], (7000, 2_007_000)]
    assert _surely_in_one_window(stalled, 1_100_000) == 7


# --- the fake answers in the fixtures' shapes ------------------------------------------------------------


def _shape(doc: Any) -> Any:
    """Keys, recursively (first list item only): what must match between the fake and a fixture."""
    if isinstance(doc, dict):
        return {k: _shape(v) for k, v in doc.items() if k not in ("_links",)}
    if isinstance(doc, list):
        return [_shape(doc[0])] if doc else []
    return None


def test_the_fake_answers_in_the_shapes_of_the_fixtures(fake: FakeAmo, world: AmoWorld) -> None:
    t = make_client().transport
    deal = world.make_deal("Орлов")
    contact = world.make_contact("Елена", ("+79161234567",))
    user = world.make_user("Мария")
    stage = {
        "name": "x",
        "pipeline_id": 3177727,
        "status_id": 32392156,
        "request_id": "c-deal-1",
        "_embedded": {"contacts": [{"id": int(contact)}]},
    }
    answers = {
        "leads_complex__created.json": t.send_json("POST", "/api/v4/leads/complex", [stage]),
        "contacts_add.json": t.send_json("POST", "/api/v4/contacts", [{"name": "y", "request_id": "c"}]),
        "notes_add.json": t.send_json(
            "POST",
            f"/api/v4/leads/{deal}/notes",
            [{"note_type": "common", "params": {"text": "z"}, "request_id": "n"}],
        ),
        "tasks_add.json": t.send_json(
            "POST",
            "/api/v4/tasks",
            [{"text": "t", "complete_till": 1, "responsible_user_id": int(user), "request_id": "t"}],
        ),
        "leads_list__page1.json": t.get_json("/api/v4/leads", {"limit": 1}),
    }
    for name, answer in answers.items():
        assert _shape(answer) == _shape(load_fixture(f"api/{name}")), name


def test_pipelines_come_with_their_statuses_in_board_order(fake: FakeAmo, world: AmoWorld) -> None:
    pipelines = make_client().list_pipelines()
    recorded = load_fixture("api/pipelines_list.json")["_embedded"]["pipelines"]
    assert [p.id for p in pipelines] == [str(p["id"]) for p in recorded]
    first = sorted(recorded[0]["_embedded"]["statuses"], key=lambda s: s["sort"])
    assert [s.name for s in pipelines[0].stages] == [s["name"] for s in first]
    assert {"142", "143"} <= {s.id for s in pipelines[0].stages}


# --- patient messages: the lead field, then the Salesbot run (§7) ---------------------------------------

BOT = "36143"


def _runs(fake: FakeAmo) -> list[Any]:
    return [body for _, _, body in fake.calls("POST", "/api/v2/salesbot/run")]


def test_the_field_is_set_before_the_bot_runs_in_the_documented_shape(fake: FakeAmo, world: AmoWorld) -> None:
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")

    crm.send_message(OutgoingMessage(deal_id, "Ждём вас завтра", "1001", BOT), idempotency_key="m-1")

    [run] = _runs(fake)
    documented = load_fixture("api/salesbot_run__request.json")
    assert [sorted(item) for item in run] == [sorted(item) for item in documented]
    assert run == [{"bot_id": 36143, "entity_id": int(deal_id), "entity_type": 2}]
    methods = [(m, u.split("clinic.amocrm.ru")[1]) for m, u, _ in fake.log if m != "GET"]
    assert methods == [("PATCH", f"/api/v4/leads/{deal_id}"), ("POST", "/api/v2/salesbot/run")]
    assert world.messages(deal_id) == ["Ждём вас завтра"]


@pytest.mark.parametrize(
    ("message", "path", "status"),
    [
        (OutgoingMessage("{deal}", "Текст", "1001", None), "bot_id", 422),
        (OutgoingMessage("{deal}", "Текст", "1001", "424242"), "bot_id", 404),
        (OutgoingMessage("{deal}", "Текст", "777777", BOT), "text_field_id", 422),
        (OutgoingMessage("{deal}", "Текст", "", BOT), "text_field_id", 422),
    ],
    ids=["no bot", "unknown bot", "unknown field", "empty field"],
)
def test_a_wrong_mapping_names_its_field_and_keeps_no_key(
    fake: FakeAmo, world: AmoWorld, message: OutgoingMessage, path: str, status: int
) -> None:
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")
    wrong = OutgoingMessage(deal_id, message.text, message.text_field_id, message.bot_id)

    with pytest.raises(Rejected) as exc:
        crm.send_message(wrong, idempotency_key="m-wrong")

    assert (exc.value.path, exc.value.status) == (path, status)
    assert fake.bot_runs == []
    assert crm.created.get("message:m-wrong") is None


def test_a_run_whose_answer_was_lost_is_not_run_again(fake: FakeAmo, world: AmoWorld) -> None:
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")
    message = OutgoingMessage(deal_id, "Ждём вас завтра", "1001", BOT)
    fake.inject("timeout_after", 1, method="POST", path="salesbot")

    with pytest.raises(RetryLater):
        crm.send_message(message, idempotency_key="m-lost")
    with pytest.raises(Rejected) as exc:
        crm.send_message(message, idempotency_key="m-lost")

    assert (exc.value.code, exc.value.path) == ("outcome_unknown", "idempotency_key")
    assert len(fake.bot_runs) == 1


def test_a_throttled_run_was_not_taken_and_is_sent_on_the_retry(fake: FakeAmo, world: AmoWorld) -> None:
    crm = make_client()
    deal_id = world.make_deal("Орлов В. Н.")
    message = OutgoingMessage(deal_id, "Ждём вас завтра", "1001", BOT)
    fake.inject(
        429, 10, method="POST", path="salesbot", body=load_fixture("errors/too_many_requests__429.json")
    )

    with pytest.raises(RetryLater):
        crm.send_message(message, idempotency_key="m-429")
    fake.faults.clear()
    crm.send_message(message, idempotency_key="m-429")
    crm.send_message(message, idempotency_key="m-429")

    assert world.messages(deal_id) == ["Ждём вас завтра"]
