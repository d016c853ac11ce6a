"""Alembic is the schema's source: migrating an empty database gives exactly the models' schema."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, text

from widget_server.migrations import upgrade
from widget_server.models import Base


def test_migrations_match_the_models(tmp_path, database_url):
    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'migrated.sqlite3'}"
        engine = create_engine(url)
    else:
        # A scratch schema on the same server keeps the test database untouched.
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("DROP DATABASE IF EXISTS cb_migration_check"))
            conn.execute(text("CREATE DATABASE cb_migration_check"))
        admin.dispose()
        url = database_url.rsplit("/", 1)[0] + "/cb_migration_check"
        engine = create_engine(url)
    upgrade(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
    engine.dispose()
    assert diff == []
