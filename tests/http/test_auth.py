"""API keys: hashed at rest, 401 for anything forged, roles enforced, portals isolated."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from widget_server.apikeys import issue_api_key
from widget_server.models import ApiKey, OutboxJob, Portal


def test_key_is_stored_only_as_a_hash(rt, portal):
    with rt.db.transaction() as s:
        issued = issue_api_key(s, s.get(Portal, portal.id), role="staff", name="robot")
    with rt.db.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT prefix, key_hash FROM api_keys").all()
    assert len(rows) == 1
    prefix, key_hash = rows[0]
    assert issued.plaintext.startswith(f"cb_{prefix}_")
    secret = issued.plaintext.split("_", 2)[2]
    assert secret not in key_hash and issued.plaintext != key_hash


def test_valid_key_authenticates_with_its_role(admin, portal):
    response = admin.get("/api/v1/portal")
    assert response.status_code == 200
    body = response.get_json()
    assert body["slug"] == portal.slug
    assert body["your_roles"] == ["admin", "finance", "staff", "supervisor", "viewer"]


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer ",
        "Bearer not-a-key",
        "Bearer cb_ZZZZZZZZ_" + "A" * 43,
    ],
)
def test_missing_or_forged_credentials_get_401(client, header):
    headers = {"Authorization": header} if header is not None else {}
    response = client.get("/api/v1/portal", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in response.get_json()["error"]["fields"]


def test_forged_secret_for_a_real_prefix_is_401_and_changes_nothing(admin, rt):
    prefix = admin.key.split("_")[1]
    forged = f"cb_{prefix}_" + "B" * 43
    response = admin.client.post(
        "/api/v1/deals/7/notes", json={"text": "x"}, headers={"Authorization": f"Bearer {forged}"}
    )
    assert response.status_code == 401
    with rt.db.transaction() as s:
        assert s.scalars(select(OutboxJob)).all() == []
        assert s.scalar(select(ApiKey.last_used_at)) is None


def test_revoked_key_is_401(admin, rt):
    with rt.db.transaction() as s:
        s.scalar(select(ApiKey)).revoked_at = s.scalar(select(ApiKey)).created_at
    assert admin.get("/api/v1/portal").status_code == 401


def test_role_is_enforced(make_api, portal):
    viewer = make_api(portal, "viewer")
    response = viewer.get("/api/v1/outbox")
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "missing_role"
    assert viewer.post("/api/v1/deals/1/notes", json={"text": "x"}).status_code == 403
    staff = make_api(portal, "staff")
    assert staff.post("/api/v1/deals/1/notes", json={"text": "x"}).status_code == 202
    assert staff.get("/api/v1/outbox").status_code == 403  # admin only


def test_uninstalled_portal_key_is_refused(admin, rt, portal):
    with rt.db.transaction() as s:
        s.get(Portal, portal.id).status = "uninstalled"
    assert admin.get("/api/v1/portal").status_code == 403


def test_a_portal_cannot_see_another_portals_outbox(make_portal, make_api, rt):
    clinic_a, clinic_b = make_portal(slug="clinic-a"), make_portal(slug="clinic-b")
    staff_a, admin_b = make_api(clinic_a, "staff"), make_api(clinic_b, "admin")
    created = staff_a.post("/api/v1/deals/5/notes", json={"text": "А"})
    assert created.status_code == 202
    job_id = created.get_json()["id"]
    assert admin_b.get(f"/api/v1/outbox/{job_id}").status_code == 404
    assert admin_b.post(f"/api/v1/outbox/{job_id}/retry").status_code == 404
    assert admin_b.get("/api/v1/outbox").get_json() == []
    with rt.db.transaction() as s:
        assert s.get(OutboxJob, job_id).portal_id == clinic_a.id


def test_last_used_is_recorded_on_success(admin, rt):
    admin.get("/api/v1/portal")
    with rt.db.transaction() as s:
        assert s.scalar(select(ApiKey.last_used_at)) is not None


def test_a_credential_over_its_rate_gets_429_with_retry_after(make_api, portal, rt, monkeypatch):
    monkeypatch.setattr(rt, "settings", rt.settings.with_overrides(api_rate_limit=3))
    viewer = make_api(portal, "viewer")
    statuses = [viewer.get("/api/v1/portal").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = viewer.get("/api/v1/portal")
    assert limited.get_json()["error"]["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) >= 1
    other = make_api(portal, "viewer")  # another credential has its own budget
    assert other.get("/api/v1/portal").status_code == 200


def test_supervisor_runs_operators_without_seeing_money_and_finance_does_not_run_operators() -> None:
    from widget_server.models import implied_roles

    assert implied_roles(["supervisor"]) == {"viewer", "staff", "supervisor"}
    assert "finance" not in implied_roles(["supervisor"])
    assert "supervisor" not in implied_roles(["finance"])
    assert implied_roles(["admin"]) >= {"supervisor", "finance"}


def test_a_supervisor_key_can_be_issued(portal, make_api) -> None:
    api = make_api(portal, "supervisor")
    response = api.get("/api/v1/portal")
    assert response.status_code == 200
    assert response.get_json()["your_roles"] == ["staff", "supervisor", "viewer"]


def test_a_get_keeps_the_connections_prepared_statements_on_postgresql(admin, rt) -> None:
    """psycopg prepares a statement after a few runs on a connection and forgets all of them on ROLLBACK:
    a GET whose read ended in one would make every request on that pooled connection start over."""
    import collections

    from sqlalchemy import event

    if rt.db.is_sqlite:
        pytest.skip("PostgreSQL's prepared statements")
    used: collections.Counter = collections.Counter()

    def record(conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if "FROM tariffs" in statement:  # read by the view, after authentication's own read
            used[conn.connection.dbapi_connection] += 1

    # A fresh pool: its connections are handed out in turn, and the few sequential requests make need only
    # one or two of them, each then used often enough to prepare.
    rt.db.engine.dispose()
    event.listen(rt.db.engine, "before_cursor_execute", record)
    try:
        for _ in range(30):
            assert admin.get("/api/v1/tariffs").status_code == 200
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", record)
    raw, runs = used.most_common(1)[0]
    assert runs >= 6  # psycopg's prepare_threshold is 5
    prepared = [row[0] for row in raw.execute("SELECT statement FROM pg_prepared_statements").fetchall()]
    raw.commit()
    assert any("FROM tariffs" in text for text in prepared), prepared


def test_on_sqlite_an_api_key_is_checked_by_one_statement_outside_any_transaction(admin, rt) -> None:
    """Authentication runs on every request: on SQLite the key and its portal are one lone SELECT, so a GET
    opens one transaction (its view's read), not two."""
    from sqlalchemy import event

    if not rt.db.is_sqlite:
        pytest.skip("SQLite's lone statements")
    seen: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        seen.append(" ".join(statement.split()[:2]))

    event.listen(rt.db.engine, "before_cursor_execute", record)
    try:
        assert admin.get("/api/v1/tariffs").status_code == 200
    finally:
        event.remove(rt.db.engine, "before_cursor_execute", record)
    assert seen[0].startswith("SELECT api_keys"), seen
    assert seen.count("BEGIN") == 1, seen  # the view's read only
