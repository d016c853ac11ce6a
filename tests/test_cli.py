"""The clinicbridge command: portals, API keys, migrations and the demo, through click's runner."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner
from sqlalchemy import select

from widget_server.cli import cli
from widget_server.models import ApiKey, Portal, PortalUser, StayAccount


def invoke(*args: str):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result


def test_portal_and_apikey_lifecycle(rt, client):
    created = invoke(
        "portal", "create", "--name", "Клиника на Невском", "--slug", "nevsky", "--timezone", "Europe/Moscow"
    )
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["slug"] == "nevsky"

    issued = invoke("apikey", "create", "--portal", "nevsky", "--role", "finance", "--name", "1c-sync")
    assert issued.exit_code == 0
    key = issued.output.strip()
    assert key.startswith("cb_")
    response = client.get("/api/v1/portal", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert response.get_json()["your_roles"] == ["finance", "staff", "viewer"]

    listed = invoke("apikey", "list", "--portal", "nevsky")
    prefix = key.split("_")[1]
    assert prefix in listed.output and key.split("_", 2)[2] not in listed.output

    assert invoke("apikey", "revoke", prefix).exit_code == 0
    assert client.get("/api/v1/portal", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_bad_input_is_named(rt):
    bad_tz = invoke("portal", "create", "--name", "X", "--timezone", "Mars/Olympus")
    assert bad_tz.exit_code == 1
    assert "--timezone: unknown IANA timezone" in bad_tz.output
    unknown = invoke("apikey", "create", "--portal", "nope", "--role", "admin")
    assert unknown.exit_code == 1
    assert "--portal: no portal" in unknown.output
    with rt.db.transaction() as s:
        assert s.scalars(select(Portal)).all() == []


def test_demo_seed_creates_portal_roles_and_a_working_key_and_is_repeatable(rt, client):
    first = json.loads(invoke("demo", "seed").output)
    second = json.loads(invoke("demo", "seed").output)
    assert first["portal_id"] == second["portal_id"]
    assert first["deals"] >= 3
    old = client.get("/api/v1/portal", headers={"Authorization": f"Bearer {first['api_key']}"})
    new = client.get("/api/v1/portal", headers={"Authorization": f"Bearer {second['api_key']}"})
    assert old.status_code == 401  # a re-run revokes the previous quick-start key
    assert new.status_code == 200 and "admin" in new.get_json()["your_roles"]
    assert second["stays"] == first["stays"] == 1
    with rt.db.transaction() as session:
        deals = session.scalars(select(StayAccount.deal_id)).all()
    assert len(deals) == 1  # a re-run does not admit twice
    stay = client.get(
        f"/api/v1/deals/{deals[0]}/stay", headers={"Authorization": f"Bearer {second['api_key']}"}
    )
    body = stay.get_json()
    assert body["status"] == "open" and body["balance"] == "13000.00"  # 60 000 − 13 days × 3 500 − 1 500
    with rt.db.transaction() as s:
        roles = {tuple(u.roles) for u in s.scalars(select(PortalUser))}
        assert {("admin",), ("finance",), ("staff",), ("viewer",)} <= roles
        assert s.scalar(select(ApiKey).where(ApiKey.revoked_at.is_(None))).name == "quickstart"


def test_a_bad_setting_stops_the_command_with_the_variable_named(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "CLINICBRIDGE_INSTANCE_PATH": str(tmp_path), "DEFAULT_CURRENCY": "RUBLES"}
    result = subprocess.run(
        [sys.executable, "-m", "widget_server.cli.entry", "portal", "list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DEFAULT_CURRENCY: not an ISO 4217 currency code" in result.stderr


def test_db_upgrade_builds_the_schema_on_an_empty_sqlite_file(tmp_path):
    db_file = tmp_path / "fresh.sqlite3"
    env = {
        "PATH": "/usr/bin:/bin",
        "CLINICBRIDGE_INSTANCE_PATH": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{db_file}",
        "REDIS_URL": "memory://",
    }
    result = subprocess.run(
        [sys.executable, "-m", "widget_server.cli.entry", "db", "upgrade"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    import sqlite3

    with sqlite3.connect(db_file) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "portals",
        "portal_users",
        "inbox_events",
        "outbox_jobs",
        "idempotency_records",
        "api_keys",
        "periodic_runs",
        "alembic_version",
    } <= tables


def test_unblock_only_a_blocked_portal(rt, make_portal):
    portal = make_portal(slug="blocked-clinic")
    assert invoke("portal", "unblock", "blocked-clinic").exit_code == 1  # active, not blocked
    with rt.db.transaction() as s:
        s.get(Portal, portal.id).status = "blocked"
    result = invoke("portal", "unblock", "blocked-clinic")
    assert result.exit_code == 0
    with rt.db.transaction() as s:
        assert s.get(Portal, portal.id).status == "active"


def test_tokens_rotate_reencrypts_oauth_tokens_and_ident_connection_strings(rt, make_portal, monkeypatch):
    from cryptography.fernet import Fernet

    from connectors.types import OAuthToken
    from widget_server.crypto import TokenCipher

    old_cipher = rt.cipher
    portal = make_portal(slug="rotating")
    dsn = "DRIVER={ODBC Driver 18 for SQL Server};SERVER=ident;UID=cb;PWD=secret"
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        row.token_ciphertext = old_cipher.encrypt_token(OAuthToken("access", "refresh", None))
        sealed = old_cipher.encrypt_token(OAuthToken(dsn, None, None))
        row.settings = {"mis": {"ident_db": {"dsn_ciphertext": sealed}}}
    new_key = Fernet.generate_key().decode()
    monkeypatch.setattr(rt, "cipher", TokenCipher((new_key, *rt.settings.token_encryption_keys)))

    result = invoke("tokens", "rotate")

    assert result.exit_code == 0, result.output
    assert "1 token(s) and 1 IDENT connection string(s)" in result.output
    only_new = TokenCipher((new_key,))  # the old key can now be dropped
    with rt.db.transaction() as s:
        row = s.get(Portal, portal.id)
        assert only_new.decrypt_token(row.token_ciphertext).access_token == "access"
        stored = row.settings["mis"]["ident_db"]["dsn_ciphertext"]
        assert only_new.decrypt_token(stored).access_token == dsn
