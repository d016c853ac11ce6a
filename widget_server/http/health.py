"""Liveness and readiness for load balancers and the quick start."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, jsonify
from sqlalchemy import text

from .. import runtime

__all__ = ["health"]

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Any:
    return jsonify(status="ok")


def _probe(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    result: dict[str, Any] = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    if detail:
        result.update(detail)
    return result


@health.get("/readyz")
def readyz() -> Any:
    rt = runtime.current()

    def database() -> dict[str, Any]:
        with rt.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return {"backend": rt.db.backend}

    def redis() -> dict[str, Any]:
        rt.redis.ping()
        return {"mode": "in-process" if rt.settings.jobs_in_process else "server"}

    checks = {"database": _probe(database), "redis": _probe(redis)}
    ready = all(c["ok"] for c in checks.values())
    response = jsonify(status="ready" if ready else "not_ready", checks=checks)
    response.status_code = 200 if ready else 503
    return response
