"""Alembic is the schema's source: migrating an empty database gives exactly the models' schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from widget_server.migrations import upgrade
from widget_server.models import Base


@contextmanager
def scratch_database(database_url: str) -> Iterator[str]:
    """A new database on the test server, dropped afterwards whatever happened: the test database stays
    untouched, and two runs on one server (engineers, CI jobs) never share or drop each other's."""
    name = f"cb_migration_check_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield database_url.rsplit("/", 1)[0] + "/" + name
        finally:
            with admin.connect() as conn:
                # FORCE: a connection the migration left in some pool must not keep the database alive.
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _databases(database_url: str) -> set[str]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(text("SELECT datname FROM pg_database")))
    finally:
        engine.dispose()


def test_migrations_match_the_models(tmp_path, database_url):
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
        _assert_migrations_match(url)
    else:
        with scratch_database(database_url) as url:
            _assert_migrations_match(url)


def _assert_migrations_match(url: str) -> None:
    upgrade(url)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata
            )
    finally:
        engine.dispose()
    assert diff == []


def test_scratch_databases_are_private_and_dropped_even_after_a_failure(database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("scratch databases are a PostgreSQL matter")
    server = database_url.rsplit("/", 1)[0] + "/"
    held = []
    with pytest.raises(RuntimeError), scratch_database(database_url) as first:
        with scratch_database(database_url) as second:
            assert first != second
            assert {first, second} <= {server + name for name in _databases(database_url)}
            held.append(create_engine(second).connect())  # left open, as a pool might leave it
        raise RuntimeError("a failing migration")
    held[0].invalidate()  # the drop ended it on the server; nothing to roll back
    assert not {first, second} & {server + name for name in _databases(database_url)}
