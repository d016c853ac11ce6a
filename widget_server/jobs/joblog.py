"""One structured log line per job: name, portal, outcome and duration."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from ..logs import log_context

__all__ = ["logged_job"]

log = logging.getLogger("widget_server.job")

P = ParamSpec("P")
R = TypeVar("R")


def logged_job(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            token = log_context.set({"job": name, "job_args": [str(a) for a in args]})
            started = time.perf_counter()
            outcome = "error"
            try:
                result = func(*args, **kwargs)
                outcome = result if isinstance(result, str) else "ok"
                return result
            finally:
                log.info(
                    "job %s %s",
                    name,
                    outcome,
                    extra={
                        "fields": {
                            "outcome": outcome,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                        }
                    },
                )
                log_context.reset(token)

        return wrapper

    return decorate
