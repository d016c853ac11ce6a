"""Settings read from the environment, with embedded defaults for a laptop.

Every setting is validated once at start-up: a bad value stops the process with a message that names the
variable, instead of failing later inside a request.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import is_currency
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["B24_SOURCE_CHECK_MODES", "B24_SOURCE_LIST_URLS", "ConfigError", "Settings", "load_settings"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_INSTANCE_PATH = PROJECT_ROOT / "instance"

MEMORY_REDIS_URL = "memory://"
"""REDIS_URL value that runs jobs in-process on an embedded fake Redis (no worker, no schedule)."""


class ConfigError(RuntimeError):
    """A setting is missing or invalid; the message names the environment variable."""

    def __init__(self, variable: str, reason: str) -> None:
        super().__init__(f"{variable}: {reason}")
        self.variable = variable
        self.reason = reason


B24_SOURCE_LIST_URLS = (
    "https://dl.bitrix24.com/webhook/app-world.json",
    "https://repos.1c-bitrix.ru/webhook/app.json",
)
"""Bitrix24's published lists of the servers that call applications (global, and the Russian region)."""
B24_SOURCE_CHECK_MODES = ("off", "log", "enforce")


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    secret_key: str
    token_encryption_keys: tuple[str, ...]
    public_base_url: str
    default_timezone: str
    default_currency: str
    instance_path: Path
    log_level: str = "INFO"
    api_rate_limit: int = 50
    """Requests per second one credential (API key or widget user) may make."""
    amo_client_id: str | None = None
    amo_client_secret: str | None = None
    amo_redirect_uri: str | None = None
    amo_rate_limit_rps: Decimal = Decimal("6.5")
    """Sustained requests per second to one amoCRM budget; never more than 7 in any one second."""
    amo_rate_scope: str = "ip"
    """"ip": one budget for the whole deployment; "account": one per amoCRM account (research §6)."""
    b24_client_id: str | None = None
    b24_client_secret: str | None = None
    """The Bitrix24 local or market application (its "client_id" and "client_secret")."""
    b24_event_source_check: str = "log"
    """Bitrix24 events and robot calls from outside Bitrix24's published server lists: "off" (not
    checked), "log" (accepted and logged), "enforce" (refused with 403; Bitrix24 does not resend them)."""
    b24_event_source_lists: tuple[str, ...] = B24_SOURCE_LIST_URLS
    """The published lists of Bitrix24's calling servers, read every 10 minutes (bitrix24_sources.py)."""
    trusted_proxy_hops: int = 0
    """Reverse proxies in front of the app whose X-Forwarded-For we believe (the source check needs the
    caller's real address)."""
    alert_webhook_url: str | None = None
    """Where a portal losing its CRM connection (re-auth needed, blocked) is announced, as JSON, besides
    the admin panel and the error log: a chat bot or an on-call tool."""
    testing: bool = False
    extra: Mapping[str, object] = field(default_factory=dict)

    @property
    def jobs_in_process(self) -> bool:
        return self.redis_url == MEMORY_REDIS_URL

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _read_or_create_secret(path: Path, make: Callable[[], str]) -> str:
    """Generate a secret into instance/ on first run so a restart keeps sessions and decryptable tokens."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # O_EXCL: two processes starting together must not each write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def _check_database_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError as exc:
        raise ConfigError("DATABASE_URL", f"not a database URL ({exc})") from None
    backend = url.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise ConfigError("DATABASE_URL", f"backend must be sqlite or postgresql, got {backend!r}")
    if backend == "postgresql" and url.get_driver_name() not in {"psycopg", "psycopg2"}:
        raise ConfigError("DATABASE_URL", "use postgresql+psycopg:// (psycopg 3)")
    return value


def _check_redis_url(value: str) -> str:
    if value == MEMORY_REDIS_URL:
        return value
    scheme = urlsplit(value).scheme
    if scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError(
            "REDIS_URL", f"scheme must be redis://, rediss://, unix:// or memory://, got {value!r}"
        )
    return value


def _check_url(variable: str, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.netloc:
        raise ConfigError(variable, f"must be an absolute http(s) URL, got {value!r}")
    return value.rstrip("/")


def _optional_url(variable: str, value: str | None) -> str | None:
    return _check_url(variable, value) if value else None


def _check_base_url(value: str) -> str:
    return _check_url("PUBLIC_BASE_URL", value)


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError("DEFAULT_TIMEZONE", f"unknown IANA timezone {value!r}") from None
    return value


def _check_currency(value: str) -> str:
    code = value.upper()
    if len(code) != 3 or not is_currency(code):
        raise ConfigError("DEFAULT_CURRENCY", f"not an ISO 4217 currency code: {value!r}")
    return code


def _check_encryption_keys(value: str) -> tuple[str, ...]:
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    if not keys:
        raise ConfigError("TOKEN_ENCRYPTION_KEY", "empty; give one or more comma-separated Fernet keys")
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            raise ConfigError(
                "TOKEN_ENCRYPTION_KEY", f"key #{position} is not a url-safe base64 32-byte Fernet key"
            ) from None
    return keys


def _check_log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("LOG_LEVEL", f"must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
    return level


def _check_positive_int(variable: str, value: str) -> int:
    if not value.isdigit() or int(value) <= 0:
        raise ConfigError(variable, f"must be a positive whole number, got {value!r}")
    return int(value)


AMO_MAX_RPS = Decimal(7)
"""amoCRM refuses more than 7 requests per second (research/amocrm.md §6)."""


def _check_hops(value: str) -> int:
    if not value.isdigit() or int(value) > 5:
        raise ConfigError("TRUSTED_PROXY_HOPS", f"must be a whole number from 0 to 5, got {value!r}")
    return int(value)


def _amo_settings(env: Mapping[str, str]) -> dict[str, object]:
    client_id, client_secret = env.get("AMO_CLIENT_ID") or None, env.get("AMO_CLIENT_SECRET") or None
    if bool(client_id) != bool(client_secret):
        missing = "AMO_CLIENT_SECRET" if client_id else "AMO_CLIENT_ID"
        raise ConfigError(missing, "set AMO_CLIENT_ID and AMO_CLIENT_SECRET together (or neither)")
    raw_rps = env.get("AMO_RATE_LIMIT_RPS") or "6.5"
    try:
        rps = Decimal(raw_rps)
    except InvalidOperation:
        raise ConfigError("AMO_RATE_LIMIT_RPS", f"not a number: {raw_rps!r}") from None
    if not rps.is_finite() or rps <= 0 or rps > AMO_MAX_RPS:
        raise ConfigError(
            "AMO_RATE_LIMIT_RPS", f"must be above 0 and at most 7 (amoCRM's limit), got {raw_rps}"
        )
    scope = env.get("AMO_RATE_SCOPE") or "ip"
    if scope not in {"ip", "account"}:
        raise ConfigError("AMO_RATE_SCOPE", f"must be ip or account, got {scope!r}")
    redirect = env.get("AMO_REDIRECT_URI") or None
    if redirect is not None:
        redirect = _check_url("AMO_REDIRECT_URI", redirect)
    return {
        "amo_client_id": client_id,
        "amo_client_secret": client_secret,
        "amo_redirect_uri": redirect,
        "amo_rate_limit_rps": rps,
        "amo_rate_scope": scope,
    }


def _b24_settings(env: Mapping[str, str]) -> dict[str, object]:
    client_id, client_secret = env.get("B24_CLIENT_ID") or None, env.get("B24_CLIENT_SECRET") or None
    if bool(client_id) != bool(client_secret):
        missing = "B24_CLIENT_SECRET" if client_id else "B24_CLIENT_ID"
        raise ConfigError(missing, "set B24_CLIENT_ID and B24_CLIENT_SECRET together (or neither)")
    mode = (env.get("B24_EVENT_SOURCE_CHECK") or "log").strip().lower()
    if mode not in B24_SOURCE_CHECK_MODES:
        raise ConfigError("B24_EVENT_SOURCE_CHECK", f"must be off, log or enforce, got {mode!r}")
    raw_lists = env.get("B24_EVENT_SOURCE_LISTS")
    if raw_lists is None:
        lists: tuple[str, ...] = B24_SOURCE_LIST_URLS
    else:
        lists = tuple(
            _check_url("B24_EVENT_SOURCE_LISTS", url.strip()) for url in raw_lists.split(",") if url.strip()
        )
    if mode == "enforce" and not lists:
        raise ConfigError("B24_EVENT_SOURCE_LISTS", "enforce needs at least one list URL")
    return {
        "b24_client_id": client_id,
        "b24_client_secret": client_secret,
        "b24_event_source_check": mode,
        "b24_event_source_lists": lists,
    }


def load_settings(environ: Mapping[str, str] | None = None, instance_path: Path | None = None) -> Settings:
    """Build Settings from the environment; raise ConfigError naming the first bad variable."""
    env = os.environ if environ is None else environ
    instance = Path(env.get("CLINICBRIDGE_INSTANCE_PATH") or instance_path or DEFAULT_INSTANCE_PATH)

    database_url = env.get("DATABASE_URL") or f"sqlite:///{instance / 'clinicbridge.sqlite3'}"
    secret_key = env.get("SECRET_KEY") or _read_or_create_secret(
        instance / "secret_key", lambda: secrets.token_urlsafe(48)
    )
    if len(secret_key) < 32:
        raise ConfigError("SECRET_KEY", "must be at least 32 characters")
    raw_keys = env.get("TOKEN_ENCRYPTION_KEY") or _read_or_create_secret(
        instance / "token_encryption.key", lambda: Fernet.generate_key().decode()
    )
    return Settings(
        database_url=_check_database_url(database_url),
        redis_url=_check_redis_url(env.get("REDIS_URL") or "redis://127.0.0.1:6379/0"),
        secret_key=secret_key,
        token_encryption_keys=_check_encryption_keys(raw_keys),
        public_base_url=_check_base_url(env.get("PUBLIC_BASE_URL") or "http://127.0.0.1:5000"),
        default_timezone=_check_timezone(env.get("DEFAULT_TIMEZONE") or "Europe/Moscow"),
        default_currency=_check_currency(env.get("DEFAULT_CURRENCY") or "RUB"),
        instance_path=instance,
        log_level=_check_log_level(env.get("LOG_LEVEL") or "INFO"),
        api_rate_limit=_check_positive_int("API_RATE_LIMIT", env.get("API_RATE_LIMIT") or "50"),
        alert_webhook_url=_optional_url("ALERT_WEBHOOK_URL", env.get("ALERT_WEBHOOK_URL")),
        trusted_proxy_hops=_check_hops(env.get("TRUSTED_PROXY_HOPS") or "0"),
        **_amo_settings(env),
        **_b24_settings(env),
    )
