"""amoCRM hooks over HTTP: verified, stored once per dedupe key, acknowledged at once, never a call to amo.

Every refusal is checked in the response (status, the field it names) and in the database (no row, no
job), as STYLE-ANCHORS §6.3 asks.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from urllib.parse import urlencode

import pytest
import responses
from sqlalchemy import select

from connectors.amocrm.forms import flatten_form, parse_form
from connectors.amocrm.hooks import parse_account_hook, parse_dp_hook
from widget_server.amocrm_hooks import (
    OWN_WRITE_TTL_S,
    dp_secret_matches,
    install_dp_secret,
    install_webhook_secret,
    is_own_write,
    remember_own_write,
    webhook_secret_matches,
)
from widget_server.http.hooks_amocrm import amocrm_hooks
from widget_server.jobs.inbox import PARSERS
from widget_server.models import InboxEvent, Portal

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "amocrm"
ACCOUNT = "29842716"
DP_FIXTURE_SECRET = "dp-fixture-secret-3f9c1a7e5b2d4c6a8e0f"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    # Until the lead registers the blueprint in widget_server/http/__init__.py.
    if "amocrm_hooks" not in app.blueprints:
        app.register_blueprint(amocrm_hooks)
    return app.test_client()


@pytest.fixture(autouse=True)
def no_http():  # type: ignore[no-untyped-def]
    # Active with nothing registered: any outbound request (to amo or anywhere) raises ConnectionError.
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
        assert list(mock.calls) == []


@pytest.fixture
def amo(make_portal, rt):  # type: ignore[no-untyped-def]
    """An installed amoCRM portal: (portal, URL secret); its DP secret is the fixtures' one."""
    portal = make_portal(kind="amocrm", slug="clinic-amo", external_id=ACCOUNT, domain="clinic.amocrm.ru")
    with rt.db.transaction() as session:
        stored = session.get(Portal, portal.id)
        secret = install_webhook_secret(stored)
        amocrm = dict(stored.settings["amocrm"])
        amocrm["dp_secret_sha256"] = hashlib.sha256(DP_FIXTURE_SECRET.encode()).hexdigest()
        stored.settings = {**stored.settings, "amocrm": amocrm}
    return portal, secret


def hook_body(name: str) -> str:
    return (FIXTURES / "hooks" / f"{name}.form").read_text()


def dp_file(name: str) -> Path:
    [path] = [p for p in (FIXTURES / "dp").iterdir() if p.stem == name]
    return path


def post_hook(client, slug: str, secret: str, body: str):  # type: ignore[no-untyped-def]
    return client.post(f"/hooks/amocrm/{slug}/{secret}", data=body.encode(), content_type=FORM)


def post_dp(client, name: str, *, path: str = "/hooks/amocrm/dp", body: str | None = None):  # type: ignore[no-untyped-def]
    fixture = dp_file(name)
    content_type = "application/json" if fixture.suffix == ".json" else FORM
    data = fixture.read_text() if body is None else body
    return client.post(path, data=data.encode(), content_type=content_type)


def events(rt) -> list[InboxEvent]:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        return list(session.scalars(select(InboxEvent).order_by(InboxEvent.id)))


def queued(rt) -> int:  # type: ignore[no-untyped-def]
    return rt.queues["default"].count


def set_status(rt, portal: Portal, status: str) -> None:  # type: ignore[no-untyped-def]
    with rt.db.transaction() as session:
        session.get(Portal, portal.id).status = status


# --- account webhooks -------------------------------------------------------------------------------------


def test_a_webhook_is_stored_and_acknowledged(client, rt, amo):
    portal, secret = amo
    response = post_hook(client, portal.slug, secret, hook_body("leads_status__moved"))
    assert response.status_code == 200
    assert response.get_json()["status"] == "accepted"
    [event] = events(rt)
    assert (event.source, event.event_type, event.dedupe_key, event.outcome) == (
        "amocrm",
        "leads.status",
        "amocrm:leads.status:15318175:1763888400",
        "pending",
    )
    assert event.content_type == FORM and event.raw_body == hook_body("leads_status__moved")
    assert response.get_json()["inbox_id"] == event.id
    assert queued(rt) == 1


def test_a_webhook_replayed_on_amos_retry_schedule_is_stored_once(client, rt, amo):
    portal, secret = amo
    body = hook_body("leads_update__price")
    # The first delivery, then the retries at 5, 15, 15 min and 1 h (§4.3): the same body each time.
    statuses = [post_hook(client, portal.slug, secret, body).get_json()["status"] for _ in range(5)]
    assert statuses == ["accepted", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert len(events(rt)) == 1
    assert queued(rt) == 1


def test_a_body_with_two_leads_is_one_event(client, rt, amo):
    portal, secret = amo
    assert post_hook(client, portal.slug, secret, hook_body("leads_status__two_leads")).status_code == 200
    [event] = events(rt)
    assert event.dedupe_key.startswith("amocrm:sha256:")


@pytest.mark.parametrize("wrong", ["x" * 43, "", "short"])
def test_a_wrong_url_secret_is_refused_and_stores_nothing(client, rt, amo, wrong):
    portal, _ = amo
    response = client.post(
        f"/hooks/amocrm/{portal.slug}/{wrong}", data=hook_body("leads_status__moved"), content_type=FORM
    )
    assert response.status_code in (403, 404, 405)
    assert events(rt) == [] and queued(rt) == 0


def test_another_portals_secret_is_refused(client, rt, amo, make_portal):
    portal, _ = amo
    other = make_portal(kind="amocrm", slug="clinic-other", external_id="1312313", domain="other.amocrm.ru")
    with rt.db.transaction() as session:
        other_secret = install_webhook_secret(session.get(Portal, other.id))
    response = post_hook(client, portal.slug, other_secret, hook_body("leads_status__moved"))
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "invalid_secret"
    assert events(rt) == []


def test_a_portal_without_a_webhook_secret_accepts_nothing(client, rt, make_portal):
    portal = make_portal(kind="amocrm", slug="clinic-new", external_id=ACCOUNT, domain="clinic.amocrm.ru")
    response = post_hook(client, portal.slug, "anything", hook_body("leads_status__moved"))
    assert response.status_code == 403
    assert events(rt) == []


def test_an_unknown_portal_is_404(client, rt, amo, make_portal):
    _, secret = amo
    assert post_hook(client, "no-such-clinic", secret, hook_body("leads_status__moved")).status_code == 404
    sandbox = make_portal(slug="clinic-sandbox")
    assert post_hook(client, sandbox.slug, secret, hook_body("leads_status__moved")).status_code == 404
    assert events(rt) == []


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("leads[status=1&account[id]=29842716", "leads[status"),
        ("leads[status][0][id]=1&leads[status][2][id]=2&account[id]=29842716", "leads[status][1]"),
        ("leads[status][0][id]=1&leads[status][x][id]=2&account[id]=29842716", "leads[status][x]"),
        ("not a form", "body"),
        ('{"leads": {"status": []}}', "body"),
        ("account[id]=29842716&account[subdomain]=clinic", "body"),
        (
            "leads[status][0][id]=1&account[id]=29842716&account[subdomain]=clinic",
            "leads[status][0][pipeline_id]",
        ),
        ("leads[status][0][id]=1&leads[status][0][status_id]=2&leads[status][0][pipeline_id]=3", "account"),
    ],
)
def test_a_malformed_body_is_400_naming_the_key(client, rt, amo, body, key):
    portal, secret = amo
    response = post_hook(client, portal.slug, secret, body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert error["code"] == "malformed_hook"
    assert key in error["fields"] or any(name.startswith(key) for name in error["fields"]), error
    assert events(rt) == [] and queued(rt) == 0


def test_a_body_that_is_not_utf8_is_400(client, rt, amo):
    portal, secret = amo
    response = client.post(f"/hooks/amocrm/{portal.slug}/{secret}", data=b"a=\xff", content_type=FORM)
    assert response.status_code == 400
    assert events(rt) == []


def test_another_accounts_body_is_403(client, rt, amo):
    portal, secret = amo
    body = hook_body("leads_status__moved").replace("account%5Bid%5D=29842716", "account%5Bid%5D=1312313")
    response = post_hook(client, portal.slug, secret, body)
    assert response.status_code == 403
    assert response.get_json()["error"]["fields"] == {"account[id]": ["not this portal's amoCRM account"]}
    assert events(rt) == [] and queued(rt) == 0


def test_an_uninstalled_portal_answers_410(client, rt, amo):
    portal, secret = amo
    set_status(rt, portal, "uninstalled")
    response = post_hook(client, portal.slug, secret, hook_body("leads_status__moved"))
    assert response.status_code == 410
    assert events(rt) == []


def test_a_portal_needing_reauth_still_keeps_its_events(client, rt, amo):
    # Refusing would make amo disable the hook (§4.3) and lose the events the job can act on after re-auth.
    portal, secret = amo
    set_status(rt, portal, "needs_reauth")
    assert post_hook(client, portal.slug, secret, hook_body("leads_status__moved")).status_code == 200
    assert len(events(rt)) == 1


@pytest.mark.parametrize(
    ("name", "event_type"),
    [
        ("unsorted_add__ignored", "unsorted.add"),
        ("contacts_add__company", "companies.add"),
        ("customers_add__unsupported", "customers.add"),
    ],
)
def test_ignored_and_unsupported_events_are_stored_and_acknowledged(client, rt, amo, name, event_type):
    portal, secret = amo
    response = post_hook(client, portal.slug, secret, hook_body(name))
    assert response.status_code == 200
    [event] = events(rt)
    assert event.event_type == event_type


def test_the_job_gives_each_stored_hook_its_outcome(client, rt, amo, jobs, monkeypatch, caplog):
    # The lead registers these parsers in widget_server/jobs/inbox.py; here they are patched in.
    monkeypatch.setitem(PARSERS, "amocrm", parse_account_hook)
    monkeypatch.setitem(PARSERS, "amocrm_dp", parse_dp_hook)
    portal, secret = amo
    for name in ("contacts_add__with_phone", "unsorted_add__ignored", "customers_add__unsupported"):
        assert post_hook(client, portal.slug, secret, hook_body(name)).status_code == 200
    for name in ("lead_added__json", "lead_appeared_in_status__went_from_trigger", "mail_in__unsupported"):
        assert post_dp(client, name).status_code == 200
    jobs()
    outcomes = {e.event_type: (e.outcome, e.error) for e in events(rt)}
    assert outcomes == {
        "contacts.add": ("handled", None),
        "unsorted.add": ("ignored", None),
        "customers.add": ("unsupported", "unsupported event 'customers.add'"),
        "dp.lead_added": ("handled", None),
        "dp.went_from_trigger": ("ignored", None),
        "dp.mail_in": ("unsupported", "unsupported event 'dp.mail_in'"),
    }
    assert any(r.name == "widget_server.unsupported_events" for r in caplog.records)


# --- Digital Pipeline widget hook -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "event_type", "key"),
    [
        ("lead_added__json", "dp.lead_added", "amocrm_dp:1:15320001:67548607:1763899200"),
        ("lead_status_changed__form", "dp.lead_status_changed", "amocrm_dp:14:15318175:67548619:1763888400"),
        (
            "lead_appeared_in_status__json",
            "dp.lead_appeared_in_status",
            "amocrm_dp:15:15318175:67548620:1763892000",
        ),
    ],
)
def test_a_dp_hook_is_stored_without_its_secret(client, rt, amo, name, event_type, key):
    response = post_dp(client, name)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["status"] == "accepted"
    [event] = events(rt)
    assert (event.source, event.event_type, event.dedupe_key) == ("amocrm_dp", event_type, key)
    assert DP_FIXTURE_SECRET not in event.raw_body
    assert parse_dp_hook(ACCOUNT, event.raw_body) == parse_dp_hook(ACCOUNT, dp_file(name).read_text())
    assert queued(rt) == 1


def test_a_dp_hook_at_the_portals_own_url(client, rt, amo):
    portal, _ = amo
    response = post_dp(client, "lead_appeared_in_status__json", path=f"/hooks/amocrm/dp/{portal.slug}")
    assert response.status_code == 200
    assert len(events(rt)) == 1


def test_went_from_trigger_is_acknowledged_for_the_job_to_ignore(client, rt, amo):
    response = post_dp(client, "lead_appeared_in_status__went_from_trigger")
    assert response.status_code == 200
    [event] = events(rt)
    assert event.event_type == "dp.went_from_trigger"


def test_a_resent_dp_hook_is_stored_once(client, rt, amo):
    # "API: send webhook" retries up to 4 times in an hour (§3, open question 4); widget hooks may too.
    statuses = [post_dp(client, "lead_status_changed__form").get_json()["status"] for _ in range(5)]
    assert statuses == ["accepted", *["duplicate"] * 4]
    assert len(events(rt)) == 1 and queued(rt) == 1


@pytest.mark.parametrize("secret", ["wrong-secret", ""])
def test_a_dp_hook_with_a_wrong_secret_is_refused(client, rt, amo, secret):
    body = dp_file("lead_added__json").read_text().replace(DP_FIXTURE_SECRET, secret)
    response = post_dp(client, "lead_added__json", body=body)
    assert response.status_code == 403
    assert events(rt) == [] and queued(rt) == 0


def test_a_form_dp_hook_without_the_secret_setting_is_refused(client, rt, amo):
    tree = parse_form(dp_file("lead_status_changed__form").read_text())
    del tree["action"]["settings"]["widget"]["settings"]["clinicbridge_secret"]
    response = post_dp(client, "lead_status_changed__form", body=urlencode(flatten_form(tree)))
    assert response.status_code == 403
    assert events(rt) == []


def test_a_dp_hook_for_an_unknown_account_is_404(client, rt, amo):
    body = dp_file("lead_added__json").read_text().replace("29842716", "1312313")
    assert post_dp(client, "lead_added__json", body=body).status_code == 404
    assert events(rt) == []


def test_a_dp_hook_for_another_account_at_a_portals_url_is_403(client, rt, amo, make_portal):
    portal, _ = amo
    make_portal(kind="amocrm", slug="clinic-other", external_id="1312313", domain="other.amocrm.ru")
    body = dp_file("lead_added__json").read_text().replace("29842716", "1312313")
    response = post_dp(client, "lead_added__json", body=body, path=f"/hooks/amocrm/dp/{portal.slug}")
    assert response.status_code == 403
    assert response.get_json()["error"]["fields"] == {"account_id": ["not this portal's amoCRM account"]}
    assert events(rt) == []


def test_a_dp_hook_for_an_uninstalled_portal_is_410(client, rt, amo):
    portal, _ = amo
    set_status(rt, portal, "uninstalled")
    assert post_dp(client, "lead_added__json").status_code == 410
    assert events(rt) == []


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('{"event": {"type": 15}', "body"),
        ('{"event": {"type": 15}}', "account_id"),
        (None, "event[data][status_id]"),
    ],
)
def test_a_malformed_dp_hook_is_400_naming_the_key(client, rt, amo, body, key):
    if body is None:
        document = json.loads(dp_file("lead_added__json").read_text())
        del document["event"]["data"]["status_id"]
        body = json.dumps(document)
    response = post_dp(client, "lead_added__json", body=body)
    assert response.status_code == 400
    assert list(response.get_json()["error"]["fields"]) == [key]
    assert events(rt) == []


# --- secrets and the loop guard's memory ------------------------------------------------------------------


def test_secrets_are_stored_hashed_and_a_new_one_replaces_the_old(rt, make_portal):
    portal = make_portal(kind="amocrm", slug="clinic-hash", external_id=ACCOUNT)
    with rt.db.transaction() as session:
        stored = session.get(Portal, portal.id)
        first = install_webhook_secret(stored)
        dp = install_dp_secret(stored, rt.settings.secret_key)
    with rt.db.transaction() as session:
        stored = session.get(Portal, portal.id)
        assert first not in json.dumps(stored.settings) and dp not in json.dumps(stored.settings)
        assert (
            stored.settings["amocrm"]["webhook_secret_sha256"] == hashlib.sha256(first.encode()).hexdigest()
        )
        assert webhook_secret_matches(stored, first) and dp_secret_matches(stored, dp)
        assert not webhook_secret_matches(stored, dp) and not dp_secret_matches(stored, first)
        assert len(first) >= 43
        second = install_webhook_secret(stored)
    with rt.db.transaction() as session:
        stored = session.get(Portal, portal.id)
        assert webhook_secret_matches(stored, second) and not webhook_secret_matches(stored, first)
        assert dp_secret_matches(stored, dp)
        assert not webhook_secret_matches(stored, None)


def test_own_writes_are_remembered_for_an_hour(redis_client):
    remember_own_write(redis_client, 7, "leads", 15318175, 1763888400, now=1000.0)
    assert is_own_write(redis_client, 7, "leads", "15318175", "1763888400", now=1000.0 + OWN_WRITE_TTL_S)
    assert not is_own_write(redis_client, 7, "leads", "15318175", "1763888400", now=1001.0 + OWN_WRITE_TTL_S)
    assert not is_own_write(redis_client, 7, "leads", "15318175", "1763888401", now=1000.0)
    assert not is_own_write(redis_client, 8, "leads", "15318175", "1763888400", now=1000.0)
    assert not is_own_write(redis_client, 7, "contacts", "15318175", "1763888400", now=1000.0)
    assert not is_own_write(redis_client, 7, "leads", "15318175", None)
    # A later write prunes marks older than the hour; the key expires with the last one.
    remember_own_write(redis_client, 7, "leads", 15318175, 1763890000, now=1000.0 + 2 * OWN_WRITE_TTL_S)
    assert redis_client.zcard("cb:amo:own:7:leads:15318175") == 1
    assert 0 < redis_client.ttl("cb:amo:own:7:leads:15318175") <= OWN_WRITE_TTL_S


def test_the_widget_gets_the_dp_secret_again_and_again_and_a_hook_carrying_it_is_accepted(
    client, rt, amo, make_api
):
    portal, _ = amo
    admin = make_api(portal, "admin")
    first = admin.get("/api/v1/amocrm/dp-settings").get_json()
    again = admin.get("/api/v1/amocrm/dp-settings").get_json()
    assert first == again  # the same secret each time the admin opens a DP action's form
    assert first["setting"] == "clinicbridge_secret"
    assert first["webhook_url"].endswith("/hooks/amocrm/dp")
    with rt.db.transaction() as session:
        assert first["secret"] not in json.dumps(session.get(Portal, portal.id).settings)

    body = dp_file("lead_added__json").read_text().replace(DP_FIXTURE_SECRET, first["secret"])
    assert post_dp(client, "lead_added__json", body=body).status_code == 200
    assert len(events(rt)) == 1


def test_rotating_the_dp_secret_refuses_hooks_with_the_old_one(client, rt, amo, make_api):
    portal, _ = amo
    admin = make_api(portal, "admin")
    old = admin.get("/api/v1/amocrm/dp-settings").get_json()["secret"]
    new = admin.post("/api/v1/amocrm/dp-settings/rotate", key="rotate-1").get_json()["secret"]
    assert new != old
    assert admin.get("/api/v1/amocrm/dp-settings").get_json()["secret"] == new

    stale = dp_file("lead_added__json").read_text().replace(DP_FIXTURE_SECRET, old)
    assert post_dp(client, "lead_added__json", body=stale).status_code == 403
    assert events(rt) == []


def test_only_admins_of_an_amocrm_portal_get_the_dp_secret(rt, amo, make_api, make_portal):
    portal, _ = amo
    assert make_api(portal, "finance").get("/api/v1/amocrm/dp-settings").status_code == 403
    sandbox = make_portal(slug="sandbox-dp")
    response = make_api(sandbox, "admin").get("/api/v1/amocrm/dp-settings")
    assert response.status_code == 409
    assert response.get_json()["error"]["fields"] == {"portal": ["is sandbox, not amocrm"]}
