"""amoCRM install, reinstall, marketplace install, disconnect, widget JWT and CORS — all offline."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from joserfc import jwt
from joserfc.jwk import OctKey
from sqlalchemy import select

from widget_server.models import OutboxJob, Portal, PortalUser
from widget_server.tokens import DbTokenSource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "amocrm" / "oauth"
HOST = "clinic.amocrm.ru"
CLIENT_ID, CLIENT_SECRET = "4b1c5d0e-client-id", "amo-client-secret-0123456789abcdef0123"
ACCOUNT = {"id": 31415926, "name": "Клиника «Здоровье»", "subdomain": "clinic", "currency": "RUB"}


@pytest.fixture
def amo_rt(rt, monkeypatch):
    monkeypatch.setattr(
        rt, "settings", rt.settings.with_overrides(amo_client_id=CLIENT_ID, amo_client_secret=CLIENT_SECRET)
    )
    from widget_server.http import cors

    cors._known.clear()
    return rt


@pytest.fixture
def amo(amo_rt):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(
            f"https://{HOST}/oauth2/access_token", json=json.loads((FIXTURES / "token__ok.json").read_text())
        )
        mock.get(f"https://{HOST}/api/v4/account", json=ACCOUNT)
        mock.get(
            f"https://{HOST}/api/v4/webhooks",
            json={
                "_embedded": {
                    "webhooks": [
                        {
                            "id": 1,
                            "destination": "https://other-integration.example/hook",
                            "settings": ["add_lead"],
                        },
                        {
                            "id": 2,
                            "destination": "http://testserver/hooks/amocrm/amo-clinic/old-secret",
                            "settings": ["add_lead"],
                        },
                    ]
                }
            },
        )
        mock.delete(f"https://{HOST}/api/v4/webhooks", status=204)
        mock.post(f"https://{HOST}/api/v4/webhooks", json={"id": 3})
        yield mock


def _portals(rt):
    with rt.db.transaction() as s:
        return list(s.scalars(select(Portal).where(Portal.kind == "amocrm")))


def _start(client) -> str:
    response = client.get("/install/amocrm")
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert location.netloc == "www.amocrm.ru"
    return parse_qs(location.query)["state"][0]


def test_button_install_creates_the_portal_with_encrypted_tokens(client, amo, amo_rt):
    state = _start(client)
    done = client.get(
        f"/install/amocrm/callback?code=c0de&state={state}&referer={HOST}&client_id={CLIENT_ID}"
    )
    assert done.status_code == 200, done.get_json()
    assert done.get_json()["status"] == "installed"
    [portal] = _portals(amo_rt)
    assert (portal.external_id, portal.domain, portal.status) == ("31415926", HOST, "active")
    assert "def50200refresh-token-1" not in portal.token_ciphertext
    assert DbTokenSource(amo_rt, portal.id).get().refresh_token == "def50200refresh-token-1"
    # Our hook URL is subscribed; only our own old subscription was removed.
    assert portal.settings["amocrm"]["webhooks"]["status"] == "subscribed"
    deleted = [json.loads(c.request.body) for c in amo.calls if c.request.method == "DELETE"]
    assert deleted == [{"destination": "http://testserver/hooks/amocrm/amo-clinic/old-secret"}]
    [added] = [
        json.loads(c.request.body)
        for c in amo.calls
        if c.request.method == "POST" and "webhooks" in c.request.url
    ]
    assert added["destination"].startswith("http://testserver/hooks/amocrm/amo-clinic/")
    assert "status_lead" in added["settings"]
    # The state was single use.
    again = client.get(f"/install/amocrm/callback?code=c0de&state={state}&referer={HOST}")
    assert again.status_code == 400 and again.get_json()["error"]["fields"]["state"]


def test_a_foreign_referer_never_receives_the_secret(client, amo, amo_rt):
    state = _start(client)
    response = client.get(f"/install/amocrm/callback?code=c0de&state={state}&referer=evil.example.ru")
    assert response.status_code == 400
    assert response.get_json()["error"]["fields"] == {"referer": ["not an amoCRM/Kommo host"]}
    assert len(amo.calls) == 0 and _portals(amo_rt) == []


def test_a_forged_state_is_refused(client, amo, amo_rt):
    _start(client)
    response = client.get(f"/install/amocrm/callback?code=c0de&state=forged&referer={HOST}")
    assert response.status_code == 400
    assert len(amo.calls) == 0 and _portals(amo_rt) == []


def test_reinstall_reactivates_the_same_portal(client, amo, amo_rt):
    for _ in range(2):
        state = _start(client)
        assert (
            client.get(f"/install/amocrm/callback?code=c0de&state={state}&referer={HOST}").status_code == 200
        )
    portals = _portals(amo_rt)
    assert len(portals) == 1


def test_marketplace_install_answers_at_once_and_exchanges_in_a_job(client, amo, amo_rt, jobs):
    response = client.get(f"/install/amocrm/callback?code=c0de&referer={HOST}&from_widget=1")
    assert response.status_code == 200 and response.get_json() == {"status": "accepted"}
    assert len(amo.calls) == 0  # nothing outbound inside amo's 3 s
    jobs()
    [portal] = _portals(amo_rt)
    assert portal.status == "active"


def _disconnect(client, account_id="31415926", secret=CLIENT_SECRET, client_uuid=CLIENT_ID):
    signature = hmac.new(secret.encode(), f"{CLIENT_ID}|{account_id}".encode(), hashlib.sha256).hexdigest()
    return client.get(
        f"/hooks/amocrm/disconnect?client_uuid={client_uuid}&account_id={account_id}&signature={signature}"
    )


def test_disconnect_wipes_tokens_cancels_outbox_and_keeps_data(client, amo, amo_rt):
    state = _start(client)
    client.get(f"/install/amocrm/callback?code=c0de&state={state}&referer={HOST}")
    [portal] = _portals(amo_rt)
    with amo_rt.db.transaction() as s:
        s.add(OutboxJob(portal_id=portal.id, operation="add_note", payload={}, idempotency_key="k1"))
    assert _disconnect(client, secret="forged-secret").status_code == 403
    assert _disconnect(client, client_uuid="other").status_code == 403
    assert _portals(amo_rt)[0].status == "active"
    assert _disconnect(client).status_code == 200
    [portal] = _portals(amo_rt)
    assert (portal.status, portal.token_ciphertext) == ("uninstalled", None)
    with amo_rt.db.transaction() as s:
        assert s.scalar(select(OutboxJob.state)) == "cancelled"
    assert _disconnect(client).status_code == 200  # a repeat is a no-op
    assert _disconnect(client, account_id="999").status_code == 404


def _widget_token(**overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": f"https://{HOST}",
        "aud": "http://testserver",
        "jti": "j-1",
        "iat": now,
        "nbf": now,
        "exp": now + 1800,
        "account_id": 31415926,
        "user_id": 7001,
        "subdomain": "clinic",
        "client_uuid": CLIENT_ID,
    }
    claims.update(overrides)
    return jwt.encode({"alg": "HS256"}, claims, OctKey.import_key(CLIENT_SECRET))


@pytest.fixture
def installed(client, amo, amo_rt):
    state = _start(client)
    client.get(f"/install/amocrm/callback?code=c0de&state={state}&referer={HOST}")
    [portal] = _portals(amo_rt)
    with amo_rt.db.transaction() as s:
        s.add(PortalUser(portal_id=portal.id, crm_user_id="7001", name="Анна", roles=["finance"]))
        s.add(PortalUser(portal_id=portal.id, crm_user_id="7002", name="Олег", roles=[]))
    return portal


def test_widget_token_authenticates_the_amo_user(client, installed):
    response = client.get("/api/v1/portal", headers={"X-Auth-Token": _widget_token()})
    assert response.status_code == 200
    assert response.get_json()["your_roles"] == ["finance", "staff", "viewer"]


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        ({"user_id": 7002}, 403),  # a user without a role
        ({"account_id": 27182818}, 401),  # another account
        ({"subdomain": "other"}, 401),
        ({"aud": "https://evil.example"}, 401),
        ({"exp": int(time.time()) - 600}, 401),
    ],
)
def test_widget_tokens_that_do_not_prove_a_user_are_refused(client, installed, claims, status):
    response = client.get("/api/v1/portal", headers={"X-Auth-Token": _widget_token(**claims)})
    assert response.status_code == status


def test_a_token_signed_with_another_secret_is_refused(client, installed):
    forged = jwt.encode(
        {"alg": "HS256"},
        {
            "account_id": 31415926,
            "user_id": 7001,
            "subdomain": "clinic",
            "client_uuid": CLIENT_ID,
            "aud": "http://testserver",
            "exp": int(time.time()) + 600,
        },
        OctKey.import_key("not-the-integration-secret-0123456789"),
    )
    response = client.get("/api/v1/portal", headers={"X-Auth-Token": forged})
    assert response.status_code == 401
    assert "X-Auth-Token" in response.get_json()["error"]["fields"]


def test_cors_echoes_only_installed_account_origins(client, installed):
    ok = client.options(
        "/api/v1/portal",
        headers={
            "Origin": f"https://{HOST}",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-Auth-Token",
        },
    )
    assert ok.headers["Access-Control-Allow-Origin"] == f"https://{HOST}"
    assert "X-Auth-Token" in ok.headers["Access-Control-Allow-Headers"]
    assert "Origin" in ok.headers["Vary"]
    other = client.options("/api/v1/portal", headers={"Origin": "https://stranger.amocrm.ru"})
    assert "Access-Control-Allow-Origin" not in other.headers
    evil = client.options("/api/v1/portal", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_widget_session_tells_the_panel_who_and_what(client, installed):
    session = client.get("/api/v1/widget/session", headers={"X-Auth-Token": _widget_token()}).get_json()
    assert session["user"] == {"crm_user_id": "7001", "name": "Анна"}
    assert session["portal"]["kind"] == "amocrm"
    assert session["features"] == {"stay": True, "money": True, "reversal": False, "settings": False}


def test_a_refused_subscription_does_not_fail_the_install(client, amo_rt):
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.post(
            f"https://{HOST}/oauth2/access_token", json=json.loads((FIXTURES / "token__ok.json").read_text())
        )
        mock.get(f"https://{HOST}/api/v4/account", json=ACCOUNT)
        mock.get(f"https://{HOST}/api/v4/webhooks", status=403, json={"title": "Forbidden", "status": 403})
        state = _start(client)
        assert (
            client.get(f"/install/amocrm/callback?code=c0de&state={state}&referer={HOST}").status_code == 200
        )
    [portal] = _portals(amo_rt)
    assert portal.status == "active"
    assert portal.settings["amocrm"]["webhooks"]["status"] == "refused"
