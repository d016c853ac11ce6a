"""Settings: embedded defaults, generated secrets, and start-up errors that name the variable."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from widget_server.config import ConfigError, load_settings


def test_defaults_need_no_environment(tmp_path):
    settings = load_settings({}, instance_path=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'clinicbridge.sqlite3'}"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.default_timezone == "Europe/Moscow"
    assert settings.default_currency == "RUB"
    assert settings.public_base_url == "http://127.0.0.1:5000"


def test_generated_secrets_persist_across_restarts(tmp_path):
    first = load_settings({}, instance_path=tmp_path)
    second = load_settings({}, instance_path=tmp_path)
    assert first.token_encryption_keys == second.token_encryption_keys
    assert first.secret_key == second.secret_key
    key_file = tmp_path / "token_encryption.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    Fernet(first.token_encryption_keys[0])  # a usable key


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("DATABASE_URL", "mysql://x/y", "backend must be sqlite or postgresql"),
        ("DATABASE_URL", "::not a url::", "not a database URL"),
        ("DATABASE_URL", "postgresql+asyncpg://h/db", "psycopg"),
        ("REDIS_URL", "http://localhost:6379", "scheme must be"),
        ("PUBLIC_BASE_URL", "clinicbridge.example", "absolute http(s) URL"),
        ("DEFAULT_TIMEZONE", "Moscow/Kremlin", "unknown IANA timezone"),
        ("DEFAULT_CURRENCY", "RUBLES", "ISO 4217"),
        ("DEFAULT_CURRENCY", "XYZ", "ISO 4217"),
        ("TOKEN_ENCRYPTION_KEY", "short", "key #1 is not"),
        ("TOKEN_ENCRYPTION_KEY", " , ", "empty"),
        ("SECRET_KEY", "tiny", "at least 32"),
        ("LOG_LEVEL", "LOUD", "must be DEBUG"),
        ("API_RATE_LIMIT", "0", "positive whole number"),
        ("AMO_RATE_LIMIT_RPS", "7.5", "at most 7"),
        ("AMO_RATE_LIMIT_RPS", "fast", "not a number"),
        ("AMO_RATE_SCOPE", "planet", "must be ip or account"),
    ],
)
def test_invalid_settings_fail_naming_the_variable(tmp_path, variable, value, reason):
    with pytest.raises(ConfigError) as caught:
        load_settings({variable: value}, instance_path=tmp_path)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert reason in str(caught.value)


def test_several_encryption_keys_are_accepted_for_rotation(tmp_path):
    keys = [Fernet.generate_key().decode() for _ in range(2)]
    settings = load_settings({"TOKEN_ENCRYPTION_KEY": ",".join(keys)}, instance_path=tmp_path)
    assert settings.token_encryption_keys == tuple(keys)


def test_create_app_refuses_a_bad_setting(tmp_path):
    from widget_server import create_app

    with pytest.raises(ConfigError, match=r"^DEFAULT_TIMEZONE: "):
        create_app({"DEFAULT_TIMEZONE": "Nowhere/Land", "CLINICBRIDGE_INSTANCE_PATH": str(tmp_path)})


def test_amo_credentials_come_in_pairs(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load_settings({"AMO_CLIENT_ID": "c0ffee"}, instance_path=tmp_path)
    assert caught.value.variable == "AMO_CLIENT_SECRET"
    settings = load_settings(
        {"AMO_CLIENT_ID": "id", "AMO_CLIENT_SECRET": "s", "AMO_RATE_LIMIT_RPS": "7"}, instance_path=tmp_path
    )
    assert (settings.amo_client_id, str(settings.amo_rate_limit_rps), settings.amo_rate_scope) == (
        "id",
        "7",
        "ip",
    )


def test_alert_webhook_url_is_optional_and_checked(tmp_path):
    assert load_settings({}, instance_path=tmp_path).alert_webhook_url is None
    url = "https://alerts.example.ru/hook"
    assert load_settings({"ALERT_WEBHOOK_URL": url}, instance_path=tmp_path).alert_webhook_url == url
    with pytest.raises(ConfigError) as exc:
        load_settings({"ALERT_WEBHOOK_URL": "alerts.example.ru"}, instance_path=tmp_path)
    assert "ALERT_WEBHOOK_URL" in str(exc.value)


def test_bitrix24_app_credentials_come_together(tmp_path):
    both = {"B24_CLIENT_ID": "local.abc123", "B24_CLIENT_SECRET": "s3cr3t"}
    settings = load_settings(both, instance_path=tmp_path)
    assert (settings.b24_client_id, settings.b24_client_secret) == ("local.abc123", "s3cr3t")
    for missing in ("B24_CLIENT_ID", "B24_CLIENT_SECRET"):
        alone = {k: v for k, v in both.items() if k != missing}
        with pytest.raises(ConfigError) as exc:
            load_settings(alone, instance_path=tmp_path)
        assert missing in str(exc.value)
