"""The process-wide services (database, Redis, queues, token cipher) that web, jobs and CLI share.

Jobs run outside Flask, in rq's work-horse, so they reach services through `current()` rather than an app
context. `create_app` and the worker command install the runtime; tests install their own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Queue

from .config import Settings
from .crypto import TokenCipher
from .db import Database

__all__ = ["QUEUE_NAMES", "Runtime", "build_runtime", "current", "install"]

log = logging.getLogger(__name__)

QUEUE_NAMES = ("default", "crm", "mis")
"""`crm` carries mirroring to the CRM (rate-limited), `mis` MIS imports, `default` everything else."""


@dataclass
class Runtime:
    settings: Settings
    db: Database
    redis: redis.Redis
    cipher: TokenCipher
    queues: dict[str, Queue] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    """Per-process caches the CRM clients share (e.g. amoCRM field definitions), built on first use."""

    def queue(self, name: str) -> Queue:
        return self.queues[name]

    def close(self) -> None:
        self.db.dispose()
        self.redis.close()


def _connect_redis(settings: Settings) -> tuple[redis.Redis, bool]:
    if settings.jobs_in_process:
        import fakeredis  # an optional path: only loaded when REDIS_URL=memory://

        log.warning(
            "REDIS_URL=memory:// — jobs run in-process inside the request, periodic jobs are off and rate "
            "limits are per process. Use a real Redis for anything but a demo."
        )
        return fakeredis.FakeRedis(), False
    return redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2, socket_timeout=5), True


def build_runtime(settings: Settings) -> Runtime:
    connection, is_async = _connect_redis(settings)
    queues = {name: Queue(name, connection=connection, is_async=is_async) for name in QUEUE_NAMES}
    return Runtime(
        settings=settings,
        db=Database(settings.database_url),
        redis=connection,
        cipher=TokenCipher(settings.token_encryption_keys),
        queues=queues,
    )


_current: Runtime | None = None


def install(runtime: Runtime) -> Runtime:
    global _current
    from .alerts import install_alert_listener

    install_alert_listener()
    _current = runtime
    return runtime


def current() -> Runtime:
    """The installed runtime; a worker process without one builds it from the environment."""
    global _current
    if _current is None:
        from .config import load_settings

        install(build_runtime(load_settings()))
    return _current
