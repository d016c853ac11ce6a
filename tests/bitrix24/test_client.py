"""Bitrix24Client beyond the contract: batches, OAuth refresh, domain moves, limits."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import redis

from connectors.bitrix24.client import Bitrix24Client, check_stage
from connectors.bitrix24.limits import STANDARD, LeakyBucketLimiter, OperatingBudget
from connectors.errors import ReauthRequired, Rejected, RetryLater
from connectors.types import DealUpdate, NewDeal, StageRef
from tests.bitrix24.conftest import MemoryTokens, make_client, stored_token
from tests.support.fake_bitrix24 import FakeBitrix24


def test_120_updates_go_as_3_batches_with_per_command_errors(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    deals = [str(fake.new_deal(f"Пациент {i}")["id"]) for i in range(119)]
    updates = [DealUpdate(d, {"UF_CRM_NUMBER": i}) for i, d in enumerate(deals)]
    updates.append(DealUpdate("987654321", {"UF_CRM_NUMBER": 1}))  # refused inside a batch, HTTP 200

    with pytest.raises(Rejected) as exc:
        crm.update_deals(updates)

    batches = fake.calls("batch")
    assert sorted(len(b["cmd"]) for b in batches) == [20, 50, 50]  # two travel at once: any order
    assert exc.value.status == 404
    assert "1 of 120" in str(exc.value) and "987654321" in str(exc.value)
    # Every other command was applied: a failed command does not hide its neighbours' results.
    assert [fake.deals[int(d)]["UF_CRM_NUMBER"] for d in deals] == list(range(119))


def test_stage_of_another_category_is_refused_before_any_call(
    fake: FakeBitrix24, crm: Bitrix24Client
) -> None:
    deal = str(fake.new_deal("Орлов")["id"])
    before = len(fake.log)
    for stage in (
        StageRef("1", "NEW"),
        StageRef("0", "C1:NEW"),
        StageRef("2", "C1:NEW"),
        StageRef("x", "NEW"),
    ):
        with pytest.raises(Rejected) as exc:
            crm.move_deal(deal, stage)
        assert exc.value.path in ("stage.stage_id", "stage.pipeline_id")
    assert len(fake.log) == before
    assert check_stage(StageRef("1", "C1:WON")) == 1


def test_move_across_categories_sets_category_and_stage(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    deal = str(fake.new_deal("Орлов")["id"])
    crm.move_deal(deal, StageRef("1", "C1:WORK"))
    [update] = fake.calls("crm.item.update")
    assert (update["fields"]["categoryId"], update["fields"]["stageId"]) == (1, "C1:WORK")


def test_find_contacts_asks_for_e164_and_national_forms(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    fake.new_contact("Елена Орлова", ("8 916 123 45 67",))
    crm.find_contacts_by_phone("+79161234567")
    [call] = fake.calls("crm.duplicate.findbycomm")
    assert call["type"] == "PHONE" and call["entity_type"] == "CONTACT"
    assert {"+79161234567", "79161234567", "89161234567"} <= set(call["values"])
    assert len(call["values"]) <= 20


def test_create_after_a_lost_answer_finds_the_first_record(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    from connectors.types import NewDeal

    fake.inject("timeout_after", 1, method="crm.item.add")
    deal = crm.create_deal(NewDeal("Петрова", StageRef("0", "NEW")), idempotency_key="k-lost")
    assert len(fake.deals) == 1
    assert fake.deals[int(deal.id)]["originId"].startswith("cb-")
    assert len(fake.calls("crm.item.add")) == 1


def test_notification_tag_is_the_idempotency_key(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    user = fake.new_user("Игорь Петров")
    crm.notify_user(user["ID"], "первый", idempotency_key="n-1")
    crm.notify_user(user["ID"], "второй", idempotency_key="n-1")
    assert list(fake.notifications[int(user["ID"])].values()) == ["второй"]
    tags = {c["TAG"] for c in fake.calls("im.notify.system.add")}
    assert len(tags) == 1


def test_patient_folder_is_reused_on_disk_obj_22000(fake: FakeBitrix24, redis_client: redis.Redis) -> None:
    deal = str(fake.new_deal("Орлов")["id"])
    first, _ = make_client(fake, redis_client)
    second, _ = make_client(fake, redis_client)
    folder_a, link = first.patient_folder(deal)
    folder_b, _ = second.patient_folder(deal)  # a fresh client: addfolder → DISK_OBJ_22000 → found
    assert folder_a == folder_b and link
    assert len(fake.folders) == 1


def test_users_report_presence(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    fake.new_user("Анна Смирнова", online=True)
    fake.new_user("Олег Сидоров")
    assert [u.is_online for u in crm.list_users()] == [True, False]


def test_users_follow_next_pages(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    for i in range(120):
        fake.new_user(f"Сотрудник {i}")
    assert len(crm.list_users()) == 120
    assert [c.get("start") for c in fake.calls("user.get")] == [0, 50, 100]


def test_export_walks_by_id_without_counting(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    for i in range(120):
        fake.new_deal(f"Пациент {i}")
    got = list(crm.transport.export("crm.item.list", {"entityTypeId": 2}, lambda r: r["items"]))
    assert len(got) == 120
    assert all(c["start"] == -1 for c in fake.calls("crm.item.list"))
    assert [c["filter"][">id"] for c in fake.calls("crm.item.list")] == [0, got[49]["id"], got[99]["id"]]


# --- OAuth ------------------------------------------------------------------------------------------


def test_20_threads_on_expired_token_make_one_refresh(fake: FakeBitrix24, redis_client: redis.Redis) -> None:
    deal = str(fake.new_deal("Орлов")["id"])
    client, tokens = make_client(fake, redis_client)
    fake.expire("access-1")
    errors: list[BaseException] = []
    start = threading.Barrier(20)

    def work() -> None:
        try:
            start.wait()
            client.get_deal(deal)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert fake.refreshes == [("oauth.bitrix.info", "refresh-1")]
    assert tokens.token is not None and tokens.token.refresh_token == "refresh-r1"
    # Each thread: one call with the stale token, at most one retry with the new one.
    gets = [p for m, p in fake.log if m == "crm.item.get"]
    assert len(gets) == 20
    assert "refresh-1" in fake.spent_refresh


@pytest.mark.parametrize("host", ["oauth.bitrix.info", "oauth.bitrix24.tech"])
def test_refresh_goes_to_the_portals_oauth_host(
    fake: FakeBitrix24, redis_client: redis.Redis, host: str
) -> None:
    fake.server_host = host
    deal = str(fake.new_deal("Орлов")["id"])
    client, tokens = make_client(fake, redis_client)
    fake.expire("access-1")
    client.get_deal(deal)
    assert fake.refreshes == [(host, "refresh-1")]
    assert tokens.token.extra["server_endpoint"] == f"https://{host}/rest/"  # type: ignore[union-attr]


def test_refresh_at_a_host_off_the_list_is_refused(fake: FakeBitrix24, redis_client: redis.Redis) -> None:
    token = stored_token(fake)
    token = type(token)(
        token.access_token,
        token.refresh_token,
        token.expires_at,
        {**token.extra, "server_endpoint": "https://oauth.evil.example/rest/"},
    )
    client, tokens = make_client(fake, redis_client, MemoryTokens(token))
    fake.expire("access-1")
    with pytest.raises(ReauthRequired):
        client.get_deal(str(fake.new_deal("Орлов")["id"]))
    assert fake.refreshes == []
    assert tokens.reauth


def test_invalid_grant_marks_reauth(fake: FakeBitrix24, redis_client: redis.Redis) -> None:
    client, tokens = make_client(fake, redis_client)
    fake.refresh_tokens.clear()
    fake.expire("access-1")
    with pytest.raises(ReauthRequired):
        client.get_deal(str(fake.new_deal("Орлов")["id"]))
    assert tokens.reauth and "invalid_grant" in tokens.reauth[0]
    assert tokens.saved == []


def test_a_moved_portal_is_re_posted_and_remembered(fake: FakeBitrix24, redis_client: redis.Redis) -> None:
    deal = str(fake.new_deal("Орлов")["id"])
    client, _ = make_client(fake, redis_client)
    moved: list[str] = []
    client.transport._on_moved = moved.append
    fake.move_domain("newclinic.bitrix24.ru")

    client.update_deal_fields(deal, {"UF_CRM_TEXT": "Палата 9"})

    assert fake.deals[int(deal)]["UF_CRM_TEXT"] == "Палата 9"  # applied: the POST was not turned into a GET
    assert moved == ["https://newclinic.bitrix24.ru/rest/"]
    assert client.transport.client_endpoint == "https://newclinic.bitrix24.ru/rest/"


# --- limits -----------------------------------------------------------------------------------------


def test_query_limit_exceeded_backs_off_and_marks_the_bucket_full(
    fake: FakeBitrix24, redis_client: redis.Redis
) -> None:
    sleeps: list[float] = []
    client, _ = make_client(fake, redis_client, sleep=sleeps.append)
    deal = str(fake.new_deal("Орлов")["id"])
    fake.inject(503, 2, method="crm.item.update", error="QUERY_LIMIT_EXCEEDED")

    client.update_deal_fields(deal, {"UF_CRM_NUMBER": 5})  # a write, resent: a 503 was never applied

    assert fake.deals[int(deal)]["UF_CRM_NUMBER"] == 5
    assert len(sleeps) == 2 and sleeps[1] >= sleeps[0] * 0.5
    limiter = client.transport._http.limiter
    assert isinstance(limiter, LeakyBucketLimiter)
    # Marked full: only what drained during the pauses is left, not the 48 of an idle bucket.
    assert sum(1 for _ in range(10) if limiter.try_acquire() == 0) <= 3


def test_operation_time_limit_pauses_only_that_method(fake: FakeBitrix24, redis_client: redis.Redis) -> None:
    client, _ = make_client(fake, redis_client)
    budget = OperatingBudget(redis_client, "b24:op-test")
    client.transport.budget = budget
    deal = str(fake.new_deal("Орлов")["id"])
    client.get_deal(deal)  # a successful answer tells operating_reset_at
    fake.inject(429, 1, method="crm.item.update", error="OPERATION_TIME_LIMIT")

    with pytest.raises(RetryLater) as exc:
        client.update_deal_fields(deal, {"UF_CRM_NUMBER": 5})
    assert exc.value.retry_after > 500
    sent = len(fake.calls("crm.item.update"))
    with pytest.raises(RetryLater):
        client.update_deal_fields(deal, {"UF_CRM_NUMBER": 6})
    assert len(fake.calls("crm.item.update")) == sent  # paused locally, nothing sent
    client.get_deal(deal)  # other methods go on
    assert client.transport._http.limiter.paused_for() == 0


def test_operating_time_is_summed_and_defers_before_the_limit(redis_client: redis.Redis) -> None:
    now = [1_000_000.0]
    budget = OperatingBudget(redis_client, "b24:sum", limit_s=480, clock=lambda: now[0])
    for _ in range(9):
        budget.record("crm.item.list", 47.0)
        now[0] += 55
    budget.check("crm.item.list")  # 423 s < 432 s (90 %)
    budget.record("crm.item.list", 20.0)
    with pytest.raises(RetryLater):
        budget.check("crm.item.list")
    budget.check("crm.item.get")
    now[0] += 600
    budget.check("crm.item.list")  # the window slid past


def test_leaky_bucket_admits_a_burst_then_the_drain_rate(redis_client: redis.Redis) -> None:
    limiter = LeakyBucketLimiter(redis_client, "b24:burst")
    admitted = sum(1 for _ in range(60) if limiter.try_acquire() == 0)
    assert admitted == STANDARD.capacity
    wait = limiter.try_acquire()
    assert 0 < wait <= 1 / STANDARD.rate + 0.01


def test_slow_batches_are_halved(
    fake: FakeBitrix24, crm: Bitrix24Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connectors.bitrix24.transport as transport

    monkeypatch.setattr(transport, "SLOW_BATCH_S", 0.0)
    crm.transport.in_flight = 1  # one at a time, so each batch sees its predecessor's timing
    deals = [str(fake.new_deal(f"П {i}")["id"]) for i in range(100)]
    crm.update_deals([DealUpdate(d, {"UF_CRM_NUMBER": 1}) for d in deals])
    sizes = [len(b["cmd"]) for b in fake.calls("batch")]
    assert sizes[:5] == [50, 25, 12, 6, 3] and sum(sizes) == 100


def test_every_request_times_out_under_60_seconds(crm: Bitrix24Client) -> None:
    timeout = crm.transport._http.timeout
    assert isinstance(timeout, tuple) and sum(timeout) < 60
    assert datetime.now(UTC)  # keeps the import honest


def test_batch_chains_results_within_one_call(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    deal = fake.new_deal("Орлов", UF_CRM_TEXT="Палата 7")
    result = crm.transport.batch(
        {
            "get": ("crm.item.get", {"entityTypeId": 2, "id": deal["id"], "useOriginalUfNames": "Y"}),
            "copy": (
                "crm.item.update",
                {"entityTypeId": 2, "id": deal["id"], "fields": {"title": "$result[get][item][UF_CRM_TEXT]"}},
            ),
        }
    )
    assert result.errors == {}
    assert fake.deals[deal["id"]]["title"] == "Палата 7"
    assert len(fake.calls("batch")) == 1


def test_batches_travel_two_at_a_time(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    import threading

    deals = [str(fake.new_deal(f"П {i}")["id"]) for i in range(200)]
    inside, peak = [0], [0]
    lock = threading.Lock()
    original = fake._batch

    def slow_batch(params: dict) -> dict:
        with lock:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
        fake.lock.release()  # let the other batch in while this one "works"
        try:
            import time

            time.sleep(0.05)
        finally:
            fake.lock.acquire()
        with lock:
            inside[0] -= 1
        return original(params)

    fake._batch = slow_batch  # type: ignore[method-assign]
    crm.update_deals([DealUpdate(d, {"UF_CRM_NUMBER": 1}) for d in deals])
    assert peak[0] == 2
    assert all(fake.deals[int(d)]["UF_CRM_NUMBER"] == 1 for d in deals)


def test_pipelines_are_the_deal_categories_with_their_stages(fake: FakeBitrix24, crm: Bitrix24Client) -> None:
    pipelines = crm.list_pipelines()
    assert [(p.id, p.name) for p in pipelines] == [("0", "Общее"), ("1", "Стационар")]
    assert [s.id for s in pipelines[1].stages] == ["C1:NEW", "C1:WORK", "C1:WON", "C1:LOSE"]
    # A stage offered by the picker is one move_deal accepts.
    deal = crm.create_deal(NewDeal(name="Орлов", stage=StageRef("0", "NEW")), idempotency_key="p-1")
    crm.move_deal(deal.id, StageRef(pipelines[1].id, pipelines[1].stages[1].id))
    assert crm.get_deal(deal.id).stage == StageRef("1", "C1:WORK")
