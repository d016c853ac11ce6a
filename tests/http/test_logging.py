"""One structured line per request; secrets never reach the log."""

from __future__ import annotations

import json
import logging

from widget_server.logs import JsonFormatter, scrub


def test_one_line_per_request_with_portal_request_id_and_duration(admin, portal, caplog):
    caplog.set_level(logging.INFO, logger="widget_server.request")
    admin.get("/api/v1/portal", headers={"X-Request-Id": "trace-12345678"})
    records = [r for r in caplog.records if r.name == "widget_server.request"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["status"] == 200
    assert line["portal_id"] == portal.id
    assert line["request_id"] == "trace-12345678"
    assert line["duration_ms"] >= 0
    assert line["path"] == "/api/v1/portal"


def test_api_keys_and_tokens_never_reach_the_log(admin, caplog):
    caplog.set_level(logging.DEBUG)
    admin.get("/api/v1/portal")
    logging.getLogger("test").warning("refresh failed for access_token=abc.def&x=1 with Bearer %s", admin.key)
    formatted = "\n".join(JsonFormatter().format(r) for r in caplog.records)
    assert admin.key not in formatted
    assert "abc.def" not in formatted
    assert "access_token=***" in formatted


def test_scrub_masks_json_secrets_and_our_key_format():
    text = '{"refresh_token": "r-123", "client_secret": "s3"} key cb_AbCdEfGh_' + "z" * 43
    cleaned = scrub(text)
    assert "r-123" not in cleaned and "s3" not in cleaned and "zzzz" not in cleaned


def test_a_line_with_odd_values_is_still_one_json_line() -> None:
    import logging
    from datetime import UTC, datetime
    from decimal import Decimal

    record = logging.LogRecord("widget_server.job", logging.INFO, __file__, 1, "job %s done", ("x",), None)
    record.fields = {  # type: ignore[attr-defined]
        "at": datetime(2026, 11, 24, 9, 30, tzinfo=UTC),
        "amount": Decimal("1500.00"),
        "huge": 2**70,  # beyond what orjson encodes: the standard encoder takes over
        7: "a non-string key",
    }
    line = JsonFormatter().format(record)
    assert "\n" not in line
    document = json.loads(line)
    assert document["msg"] == "job x done"
    assert document["amount"] == "1500.00"
    assert document["huge"] == 2**70
    assert document["7"] == "a non-string key"
    assert document["at"].startswith("2026-11-24")
