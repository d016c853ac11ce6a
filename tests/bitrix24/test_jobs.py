"""Bitrix24 CLI and periodic jobs: rebind, grant keep-alive, re-auth restored by an admin's open."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from click.testing import CliRunner

from connectors.bitrix24.robots import ROBOTS
from connectors.types import OAuthToken
from tests.bitrix24.conftest import FRAME_QUERY, form, post_form
from tests.support.fake_bitrix24 import FakeBitrix24
from widget_server.cli import cli
from widget_server.models import Portal, utcnow
from widget_server.tokens import DbTokenSource


def test_cli_rebind_registers_once(rt: Any, installed: int, portal_fake: FakeBitrix24) -> None:
    for _ in range(2):
        result = CliRunner().invoke(cli, ["bitrix24", "rebind"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    assert "portal" in result.output and "added 0" in result.output
    assert (len(portal_fake.placements), len(portal_fake.handlers), len(portal_fake.robots)) == (
        1,
        10,
        len(ROBOTS),
    )


def test_cli_rebind_names_an_unknown_portal(rt: Any) -> None:
    result = CliRunner().invoke(cli, ["bitrix24", "rebind", "nope"])
    assert result.exit_code != 0 and "no Bitrix24 portal" in result.output


def _age(rt: Any, portal_id: int, days: int) -> None:
    source = DbTokenSource(rt, portal_id)
    token = source.get()
    assert token is not None
    stamp = (utcnow() - timedelta(days=days)).isoformat()
    with rt.db.transaction() as session:
        session.get(Portal, portal_id).token_ciphertext = rt.cipher.encrypt_token(
            OAuthToken(
                token.access_token,
                token.refresh_token,
                token.expires_at,
                {**dict(token.extra), "saved_at": stamp, "refreshed_at": stamp},
            )
        )


def test_grants_idle_150_days_are_refreshed_and_only_those(
    rt: Any, installed: int, portal_fake: FakeBitrix24
) -> None:
    from widget_server.jobs.bitrix24 import keep_grants_alive

    _age(rt, installed, 100)
    keep_grants_alive()
    assert portal_fake.refreshes == []
    _age(rt, installed, 151)
    keep_grants_alive()
    assert portal_fake.refreshes == [("oauth.bitrix.info", "admin-refresh-cb")]
    assert DbTokenSource(rt, installed).get().refresh_token == "refresh-r1"  # type: ignore[union-attr]


def test_a_refused_grant_pauses_until_an_admin_opens_the_app(
    client: Any, rt: Any, installed: int, portal_fake: FakeBitrix24
) -> None:
    from connectors.errors import ReauthRequired
    from widget_server.registry import crm_for

    portal_fake.refresh_tokens.clear()
    portal_fake.expire("admin-access-cb")
    with rt.db.transaction() as session:
        portal = session.get(Portal, installed)
        session.expunge(portal)
    try:
        crm_for(portal, rt).list_users()
    except ReauthRequired:
        pass
    with rt.db.transaction() as session:
        assert session.get(Portal, installed).status == "needs_reauth"

    page = post_form(
        client, "/bitrix24/install", form("install_page"), FRAME_QUERY
    )  # the admin opens the app
    assert "installFinish" in page.get_data(as_text=True)
    with rt.db.transaction() as session:
        assert session.get(Portal, installed).status == "active"


def test_20_workers_on_expired_token_share_one_refresh_stored_encrypted(
    rt: Any, installed: int, portal_fake: FakeBitrix24
) -> None:
    """Each thread builds its own client, as separate workers do: the Redis lock and the re-read inside
    it make one token request; every call is retried once with the new token."""
    import threading

    from widget_server.registry import crm_for

    deal = str(portal_fake.new_deal("Орлов")["id"])
    portal_fake.expire("admin-access-cb")
    with rt.db.transaction() as session:
        portal = session.get(Portal, installed)
        session.expunge(portal)
    start = threading.Barrier(20)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            client = crm_for(portal, rt)
            start.wait()
            client.get_deal(deal)
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert portal_fake.refreshes == [("oauth.bitrix.info", "admin-refresh-cb")]
    gets = portal_fake.calls("crm.item.get")
    assert len(gets) == 20  # every thread got its deal; the 401s carried no parameters to the fake's log
    with rt.db.transaction() as session:
        ciphertext = session.get(Portal, installed).token_ciphertext
    assert "refresh-r1" not in ciphertext and "access-r1" not in ciphertext
    assert rt.cipher.decrypt_token(ciphertext).refresh_token == "refresh-r1"


def test_a_moved_portal_updates_its_domain_and_endpoint(
    rt: Any, installed: int, portal_fake: FakeBitrix24
) -> None:
    from widget_server.registry import crm_for

    deal = str(portal_fake.new_deal("Орлов")["id"])
    portal_fake.move_domain("clinic-new.bitrix24.ru")
    with rt.db.transaction() as session:
        portal = session.get(Portal, installed)
        session.expunge(portal)

    crm_for(portal, rt).update_deal_fields(deal, {"UF_CRM_TEXT": "Палата 2"})

    assert portal_fake.deals[int(deal)]["UF_CRM_TEXT"] == "Палата 2"
    with rt.db.transaction() as session:
        assert session.get(Portal, installed).domain == "clinic-new.bitrix24.ru"
    token = DbTokenSource(rt, installed).get()
    assert token is not None and token.extra["client_endpoint"] == "https://clinic-new.bitrix24.ru/rest/"
    # The next client starts at the new address: no redirect at all.
    redirects = portal_fake.redirects
    assert redirects >= 1
    crm_for(portal, rt).get_deal(deal)
    assert portal_fake.redirects == redirects
