"""Shared pieces of the amoCRM fake: fixture loading, problem bodies, injected faults."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "amocrm"
HOST = re.compile(r"^https://[a-z0-9-]+\.(amocrm\.ru|amocrm\.com|kommo\.com)/.*")
_ENUM = {"select", "multiselect", "radiobutton"}
Reply = tuple[int, Any]


def load_fixture(rel: str) -> Any:
    path = FIXTURES / rel
    return path.read_text(encoding="utf-8") if path.suffix == ".html" else json.loads(path.read_text("utf-8"))


def _problem(status: int) -> Reply:
    names = {401: "unauthorized__401.json", 403: "forbidden__403.json", 404: "not_found__404.json"}
    if status in names:
        return status, load_fixture(f"errors/{names[status]}")
    return status, {
        "title": "Error",
        "type": f"https://httpstatus.es/{status}",
        "status": status,
        "detail": "Error",
    }


def _validation(request_id: str, code: str, path: str, detail: str = "") -> Reply:
    body = load_fixture("errors/validation_errors__400.json")
    body["validation-errors"] = [
        {"request_id": request_id, "errors": [{"code": code, "path": path, "detail": detail or code}]}
    ]
    return 400, body


class _Invalid(Exception):
    def __init__(self, reply: Reply) -> None:
        super().__init__(reply)
        self.reply = reply


@dataclass
class Fault:
    kind: int | str
    count: int
    method: str | None = None
    path: re.Pattern[str] | None = None
    body: Any = None
    headers: Mapping[str, str] | None = None
