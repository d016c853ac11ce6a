from __future__ import annotations

import redis

from widget_server import create_app
from widget_server import runtime as runtime_module


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_reports_database_and_redis(client, rt):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["database"]["backend"] == rt.db.backend
    assert body["checks"]["redis"] == {**body["checks"]["redis"], "ok": True, "mode": "server"}


def test_readyz_is_503_when_redis_is_down(settings, rt):
    from tests.support.redis_server import free_port

    dead = redis.Redis(port=free_port(), socket_connect_timeout=0.2)
    broken = runtime_module.Runtime(settings=settings, db=rt.db, redis=dead, cipher=rt.cipher, queues={})
    response = create_app(settings, rt=broken).test_client().get("/readyz")
    runtime_module.install(rt)
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False
    assert "ConnectionError" in body["checks"]["redis"]["error"]


def test_request_id_is_echoed_or_generated(client):
    assert (
        client.get("/healthz", headers={"X-Request-Id": "abc-12345678"}).headers["X-Request-Id"]
        == "abc-12345678"
    )
    generated = client.get("/healthz", headers={"X-Request-Id": "bad id with spaces"}).headers["X-Request-Id"]
    assert len(generated) == 32 and " " not in generated
