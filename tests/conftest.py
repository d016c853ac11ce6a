"""Shared fixtures: a real Redis for the session, flushed per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    external = os.environ.get("TEST_REDIS_URL")
    if external:
        yield external
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


# --- database -------------------------------------------------------------------------------------------

from sqlalchemy import text  # noqa: E402

from widget_server.db import Database  # noqa: E402
from widget_server.models import Base  # noqa: E402


def _all_models() -> None:
    # Importing registers every table on Base.metadata.
    import widget_server.models
    import widget_server.sandbox.models  # noqa: F401


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return (
        os.environ.get("TEST_DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
    )


@pytest.fixture(scope="session")
def _schema(database_url: str) -> Iterator[Database]:
    _all_models()
    database = Database(database_url)
    if not database.is_sqlite:
        with database.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    # The schema comes from the migrations, as in production; test_migrations checks they match the models.
    from widget_server.migrations import upgrade

    upgrade(database_url)
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def database(_schema: Database) -> Iterator[Database]:
    """The test database with every table empty at the start of each test."""
    try:
        yield _schema
    finally:
        _empty_tables(_schema)


def _empty_tables(database: Database) -> None:
    tables = [t.name for t in reversed(Base.metadata.sorted_tables) if t.name != "alembic_version"]
    with database.engine.begin() as conn:
        if database.is_sqlite:
            for name in tables:
                conn.execute(text(f'DELETE FROM "{name}"'))
        else:
            conn.execute(
                text("TRUNCATE " + ", ".join(f'"{n}"' for n in tables) + " RESTART IDENTITY CASCADE")
            )


# --- app ------------------------------------------------------------------------------------------------

from cryptography.fernet import Fernet  # noqa: E402
from rq import Queue, SimpleWorker  # noqa: E402

from widget_server import create_app  # noqa: E402
from widget_server import runtime as runtime_module  # noqa: E402
from widget_server.apikeys import issue_api_key  # noqa: E402
from widget_server.config import Settings  # noqa: E402
from widget_server.crypto import TokenCipher  # noqa: E402
from widget_server.models import Portal  # noqa: E402
from widget_server.portals import create_portal  # noqa: E402


@pytest.fixture
def settings(database_url: str, redis_url: str, tmp_path) -> Settings:  # type: ignore[no-untyped-def]
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        secret_key="test-secret-key-" + "x" * 32,
        token_encryption_keys=(Fernet.generate_key().decode(),),
        public_base_url="http://testserver",
        default_timezone="Europe/Moscow",
        default_currency="RUB",
        instance_path=tmp_path,
        testing=True,
        # Tests fire bursts (100 replays, 50 concurrent charges); the limit itself has its own test.
        api_rate_limit=100_000,
    )


@pytest.fixture
def rt(settings: Settings, database: Database, redis_client: redis.Redis) -> Iterator[runtime_module.Runtime]:
    runtime = runtime_module.Runtime(
        settings=settings,
        db=database,
        redis=redis_client,
        cipher=TokenCipher(settings.token_encryption_keys),
        queues={name: Queue(name, connection=redis_client) for name in runtime_module.QUEUE_NAMES},
    )
    previous = runtime_module._current
    runtime_module.install(runtime)
    try:
        yield runtime
    finally:
        runtime_module._current = previous


@pytest.fixture
def app(settings: Settings, rt: runtime_module.Runtime):  # type: ignore[no-untyped-def]
    return create_app(settings, rt=rt)


@pytest.fixture
def client(app):  # type: ignore[no-untyped-def]
    return app.test_client()


def _finished(rt: runtime_module.Runtime) -> int:
    return sum(q.finished_job_registry.count + q.failed_job_registry.count for q in rt.queues.values())


def run_jobs(rt: runtime_module.Runtime) -> int:
    """Run every queued job in-process (rq's SimpleWorker, no fork) until the queues are empty; return how
    many ran."""
    before = _finished(rt)
    while any(q.count for q in rt.queues.values()):
        SimpleWorker(list(rt.queues.values()), connection=rt.redis).work(burst=True)
    return _finished(rt) - before


@pytest.fixture
def jobs(rt: runtime_module.Runtime):  # type: ignore[no-untyped-def]
    return lambda: run_jobs(rt)


@pytest.fixture
def deferred_redis(monkeypatch):  # type: ignore[no-untyped-def]
    """This process defers its Redis writes as a web worker does (`background_redis.running()` is true), but
    no thread sends them: the test decides when `background_redis.flush_now()` happens."""
    import threading

    from widget_server import background_redis

    class Idle:
        wake = threading.Event()

    monkeypatch.setattr(background_redis, "_thread", Idle())


class Api:
    """A test client bound to one API key (the tutorial's AuthActions idea)."""

    def __init__(self, client, key: str) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.key = key

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.key}"}
        headers.update(extra or {})
        return headers

    def get(self, path: str, **kwargs):  # type: ignore[no-untyped-def]
        return self.client.get(path, headers=self._headers(kwargs.pop("headers", None)), **kwargs)

    def post(self, path: str, json=None, *, key: str | None = None, **kwargs):  # type: ignore[no-untyped-def]
        headers = kwargs.pop("headers", None) or {}
        if key is not None:
            headers["Idempotency-Key"] = key
        return self.client.post(path, json=json, headers=self._headers(headers), **kwargs)

    def put(self, path: str, json=None, **kwargs):  # type: ignore[no-untyped-def]
        return self.client.put(path, json=json, headers=self._headers(kwargs.pop("headers", None)), **kwargs)

    def patch(self, path: str, json=None, **kwargs):  # type: ignore[no-untyped-def]
        return self.client.patch(
            path, json=json, headers=self._headers(kwargs.pop("headers", None)), **kwargs
        )


@pytest.fixture
def scratch_sqlite(tmp_path) -> Iterator[Database]:  # type: ignore[no-untyped-def]
    """A SQLite file of its own with one table `t (x INTEGER, pad TEXT)`, for tests of the engine's hooks
    (BEGIN, the writer gate, checkpoints) that must not touch the shared test database."""
    database = Database(f"sqlite:///{tmp_path / 'scratch.sqlite3'}")
    with database.transaction() as session:
        session.execute(text("CREATE TABLE t (x INTEGER, pad TEXT)"))
    yield database
    database.dispose()


@pytest.fixture
def make_portal(rt: runtime_module.Runtime):  # type: ignore[no-untyped-def]
    def make(**overrides: object) -> Portal:
        values: dict = {
            "kind": "sandbox",
            "name": "Клиника «Здоровье»",
            "timezone": "Europe/Moscow",
            "currency": "RUB",
        }
        values.update(overrides)
        with rt.db.transaction() as session:
            return create_portal(session, **values)

    return make


@pytest.fixture
def make_api(rt: runtime_module.Runtime, client):  # type: ignore[no-untyped-def]
    def make(portal: Portal, role: str = "admin") -> Api:
        with rt.db.transaction() as session:
            issued = issue_api_key(session, session.get(Portal, portal.id), role=role, name=f"test {role}")
        return Api(client, issued.plaintext)

    return make


@pytest.fixture
def portal(make_portal) -> Portal:  # type: ignore[no-untyped-def]
    return make_portal(slug="clinic-a")


@pytest.fixture
def admin(make_api, portal):  # type: ignore[no-untyped-def]
    return make_api(portal, "admin")
