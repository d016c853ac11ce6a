"""A stateful amoCRM REST v4 fake on `responses`, shaped after research/amocrm.md §5-6.

`FakeAmo(rsps)` registers callbacks for the account host and its drive host on a `responses.RequestsMock`
and keeps leads, contacts, notes, tasks, users, pipelines (with 142/143), loss reasons, lead custom
fields (text, numeric, checkbox, date, select, multiselect) and drive uploads in memory. Bodies are built
from the same structures as `tests/fixtures/amocrm/api/*.json` (templates are loaded from there).

It enforces what the docs say: > `rate_limit` requests in any 1 s window → 429 (§6); batches > 250 →
422 "Limit 250 per page" (§5.1, K-HTTP); `limit` > 250 → 400 (the docs are vague: a user saw a silent
fallback to 50; refusing makes a client bug loud); paging by `_links.next`; 204 for empty lists;
`request_id` echoed; 401 for an unknown token; a non-JSON nginx 403 while `blocked`.

Assumptions where the docs are silent (each marked "assumption" below): unknown ids inside a body are
400 `validation-errors` coded ``NotFound``; moving a lead out of 143 clears its loss reason; `query`
searches names and custom-field values (digits of phones too), not tags.

`inject(kind, count, method=None, path=None)` makes the next matching calls fail: an HTTP status (429,
502, 504, …), ``"timeout"`` (never applied) or ``"timeout_after"`` (applied, answer lost).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import requests
import responses

__all__ = ["FIXTURES", "FakeAmo", "Fault", "load_fixture"]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "amocrm"
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


class FakeAmo:
    def __init__(
        self,
        rsps: responses.RequestsMock,
        *,
        subdomain: str = "clinic",
        domain: str = "amocrm.ru",
        token: str = "access-1",
        timezone: str = "Europe/Moscow",
        rate_limit: int | None = 7,
        window_s: float = 1.0,
        admin: bool = True,
        max_part_size: int = 524288,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = f"https://{subdomain}.{domain}"
        self.drive_url = f"https://drive-b.{domain}"
        self.tz = ZoneInfo(timezone)
        self.tokens = {token}
        self.rate_limit, self.window_s, self._clock = rate_limit, window_s, clock
        self.admin, self.max_part_size = admin, max_part_size
        self.blocked = False
        self.hits: list[float] = []
        self.throttled = 0
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, Any]] = []
        self.leads: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.sessions: dict[str, dict[str, Any]] = {}
        self.users = {u["id"]: u for u in load_fixture("api/users_list.json")["_embedded"]["users"][:1]}
        self.lead_fields = {
            f["id"]: f for f in load_fixture("api/leads_custom_fields.json")["_embedded"]["custom_fields"]
        }
        self.contact_fields = {
            2001: {
                "id": 2001,
                "name": "Телефон",
                "code": "PHONE",
                "type": "multitext",
                "enums": [{"id": 3001, "value": "WORK"}, {"id": 3002, "value": "MOB"}],
            },
            2003: {
                "id": 2003,
                "name": "Email",
                "code": "EMAIL",
                "type": "multitext",
                "enums": [{"id": 3011, "value": "WORK"}, {"id": 3012, "value": "PRIV"}],
            },
            2009: {"id": 2009, "name": "ClinicBridge ID", "code": "CB_REF", "type": "text", "enums": None},
        }
        self.pipelines = load_fixture("api/pipelines_list.json")["_embedded"]["pipelines"]
        self.loss_reasons = load_fixture("api/loss_reasons.json")["_embedded"]["loss_reasons"]
        self._ids = {
            k: itertools.count(v)
            for k, v in {
                "lead": 19619,
                "contact": 7143599,
                "note": 42709325,
                "task": 4745251,
                "user": 5000003,
                "session": 31415,
            }.items()
        }
        for method in ("GET", "POST", "PATCH"):
            rsps.add_callback(method, HOST, callback=self._callback)
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Reply]]] = [
            (m, re.compile(p + "$"), h)
            for m, p, h in [
                ("GET", r"/api/v4/account", self._account),
                ("GET", r"/api/v4/leads/custom_fields", self._custom_fields),
                ("GET", r"/api/v4/leads/pipelines", self._pipelines),
                ("GET", r"/api/v4/leads/loss_reasons", self._loss_reasons),
                ("GET", r"/api/v4/leads/(\d+)/notes", self._list_notes),
                ("POST", r"/api/v4/leads/(\d+)/notes", self._add_notes),
                ("POST", r"/api/v4/leads/(\d+)/link", self._link),
                ("GET", r"/api/v4/leads/(\d+)", self._get_lead),
                ("PATCH", r"/api/v4/leads/(\d+)", self._patch_lead),
                ("GET", r"/api/v4/leads", self._list_leads),
                ("PATCH", r"/api/v4/leads", self._patch_leads),
                ("POST", r"/api/v4/leads/complex", self._complex),
                ("GET", r"/api/v4/contacts/(\d+)", self._get_contact),
                ("GET", r"/api/v4/contacts", self._list_contacts),
                ("POST", r"/api/v4/contacts", self._add_contacts),
                ("GET", r"/api/v4/tasks", self._list_tasks),
                ("POST", r"/api/v4/tasks", self._add_tasks),
                ("GET", r"/api/v4/users/(\d+)", self._get_user),
                ("GET", r"/api/v4/users", self._list_users),
                ("POST", r"/v1\.0/sessions", self._drive_session),
                ("POST", r"/upload/([\w-]+)/part-(\d+)", self._drive_part),
            ]
        ]

    # --- control ----------------------------------------------------------------------------------------

    def inject(
        self,
        kind: int | str,
        count: int = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.faults.append(Fault(kind, count, method, re.compile(path) if path else None, body, headers))

    def calls(self, method: str | None = None, path: str | None = None) -> list[tuple[str, str, Any]]:
        return [
            c
            for c in self.log
            if (method is None or c[0] == method)
            and (path is None or re.fullmatch(path, urlsplit(c[1]).path))
        ]

    def max_in_window(self, window: float | None = None) -> int:
        stamps, best, start = sorted(self.hits), 0, 0
        for end, stamp in enumerate(stamps):
            while stamp - stamps[start] >= (window or self.window_s):
                start += 1
            best = max(best, end - start + 1)
        return best

    def next_id(self, kind: str) -> int:
        return next(self._ids[kind])

    # --- dispatch ---------------------------------------------------------------------------------------

    def _callback(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        now = self._clock()
        parts = urlsplit(request.url or "")
        raw = request.body
        body: Any = None
        if raw and "json" in (request.headers.get("Content-Type") or ""):
            body = json.loads(raw)
        elif raw:
            body = raw if isinstance(raw, bytes) else str(raw).encode()
        self.log.append((request.method or "", request.url or "", body))
        self.hits.append(now)
        if self.blocked:
            return 403, {"Content-Type": "text/html"}, load_fixture("errors/nginx_403.html")
        fault = self._take_fault(request.method or "", parts.path)
        apply_then_lose = False
        if fault is not None:
            if fault.kind == "timeout":
                raise requests.exceptions.ReadTimeout("fake: read timed out")
            if fault.kind == "timeout_after":
                apply_then_lose = True
            elif fault.kind == "nginx403":
                self.blocked = True
                return 403, {"Content-Type": "text/html"}, load_fixture("errors/nginx_403.html")
            else:
                status = int(fault.kind)
                payload = fault.body if fault.body is not None else _problem(status)[1]
                text = payload if isinstance(payload, str) else json.dumps(payload)
                kind = "text/html" if isinstance(payload, str) else "application/problem+json"
                return status, {"Content-Type": kind, **(fault.headers or {})}, text
        if self.rate_limit is not None:
            # A hair under the window: admission (Redis TIME) and arrival here differ by some µs.
            recent = [t for t in self.hits if now - t < self.window_s - 0.01]
            if len(recent) > self.rate_limit:
                self.throttled += 1
                return (
                    429,
                    {"Content-Type": "application/problem+json"},
                    json.dumps(load_fixture("errors/too_many_requests__429.json")),
                )
        auth = request.headers.get("Authorization") or ""
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            return self._reply(_problem(401))
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        for method, pattern, handler in self._routes:
            match = pattern.match(parts.path)
            if method == request.method and match:
                try:
                    reply = handler(*match.groups(), query=query, body=body)
                except _Invalid as exc:
                    reply = exc.reply
                if apply_then_lose:
                    raise requests.exceptions.ReadTimeout("fake: applied, then the answer was lost")
                return self._reply(reply)
        return self._reply(_problem(404))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if (
                fault.count > 0
                and (fault.method in (None, method))
                and (fault.path is None or fault.path.search(path))
            ):
                fault.count -= 1
                return fault
        return None

    @staticmethod
    def _reply(reply: Reply) -> tuple[int, dict[str, str], str]:
        status, payload = reply
        if payload is None:
            return status, {}, ""
        kind = "application/hal+json" if status < 400 else "application/problem+json"
        return status, {"Content-Type": kind}, json.dumps(payload, ensure_ascii=False)

    def _page(
        self, path: str, name: str, items: list[Any], query: Mapping[str, str], *, total: bool = False
    ) -> Reply:
        limit = int(query.get("limit", 50))
        if limit > 250 or limit < 1:
            return 400, {
                "title": "Bad Request",
                "type": "https://httpstatus.es/400",
                "status": 400,
                "detail": "limit must be between 1 and 250",
            }
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * limit : page * limit]
        if not chunk:
            return 204, None
        rest = {k: v for k, v in query.items() if k not in ("limit", "page")}

        def href(p: int) -> dict[str, str]:
            return {"href": f"{self.base_url}{path}?{urlencode({**rest, 'limit': limit, 'page': p})}"}

        links = {"self": href(page)}
        if page * limit < len(items):
            links["next"] = href(page + 1)
        body: dict[str, Any] = {"_page": page, "_links": links, "_embedded": {name: chunk}}
        if total:
            body = {"_total_items": len(items), "_page_count": -(-len(items) // limit), **body}
        return 200, body

    # --- custom fields ----------------------------------------------------------------------------------

    def _cf(
        self,
        defs: Mapping[int, Mapping[str, Any]],
        current: list[dict[str, Any]] | None,
        changes: list[Mapping[str, Any]] | None,
        rid: str,
    ) -> list[dict[str, Any]] | None:
        out = {item["field_id"]: item for item in current or []}
        for i, change in enumerate(changes or []):
            path = f"custom_fields_values.{i}"
            fdef = (
                defs.get(change.get("field_id"))
                if "field_id" in change
                else next((d for d in defs.values() if d.get("code") == change.get("field_code")), None)
            )
            if fdef is None:
                raise _Invalid(_validation(rid, "NotSupportedChoice", f"{path}.field_id"))
            values = change.get("values")
            if not values:
                out.pop(fdef["id"], None)
                continue
            out[fdef["id"]] = {
                "field_id": fdef["id"],
                "field_name": fdef["name"],
                "field_code": fdef.get("code"),
                "field_type": fdef["type"],
                "values": [self._value(fdef, v, f"{path}.values.{j}", rid) for j, v in enumerate(values)],
            }
        return list(out.values()) or None

    def _value(self, fdef: Mapping[str, Any], v: Mapping[str, Any], path: str, rid: str) -> dict[str, Any]:
        kind, value = fdef["type"], v.get("value")
        enums = {e["id"]: e["value"] for e in fdef.get("enums") or []}
        bad = _Invalid(_validation(rid, "InvalidType", f"{path}.value"))
        if kind in _ENUM:
            eid = v.get("enum_id")
            if eid not in enums:
                eid = next((k for k, t in enums.items() if t == value), None)
            if eid is None:
                raise _Invalid(_validation(rid, "NotSupportedChoice", f"{path}.enum_id"))
            return {"value": enums[eid], "enum_id": eid, "enum_code": None}
        if kind == "checkbox":
            if not isinstance(value, bool):
                raise bad
            return {"value": value}
        if kind == "numeric":
            if isinstance(value, bool) or not re.fullmatch(r"-?\d+(\.\d+)?", str(value)):
                raise bad
            return {"value": str(value)}
        if kind == "date":
            if isinstance(value, bool) or not isinstance(value, int):
                raise bad
            return {"value": value}
        if not isinstance(value, str):
            raise bad
        if kind == "multitext":
            code = v.get("enum_code") or "WORK"
            eid = next((k for k, t in enums.items() if t == code), None)
            return {"value": value, "enum_id": eid, "enum_code": code}
        return {"value": value}

    # --- leads ------------------------------------------------------------------------------------------

    def _lead_out(self, lead: Mapping[str, Any], with_: str = "") -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in lead.items() if not k.startswith("__")}
        out["_links"] = {"self": {"href": f"{self.base_url}/api/v4/leads/{lead['id']}"}}
        emb: dict[str, Any] = {"tags": copy.deepcopy(lead["__tags"]), "companies": []}
        if "contacts" in with_:
            emb["contacts"] = [
                {
                    "id": c,
                    "is_main": i == 0,
                    "_links": {"self": {"href": f"{self.base_url}/api/v4/contacts/{c}"}},
                }
                for i, c in enumerate(lead["__contacts"])
            ]
        if "loss_reason" in with_:
            emb["loss_reason"] = [r for r in self.loss_reasons if r["id"] == lead.get("loss_reason_id")]
        out["_embedded"] = emb
        return out

    def _statuses(self, pipeline_id: Any) -> list[int]:
        for p in self.pipelines:
            if p["id"] == pipeline_id:
                return [s["id"] for s in p["_embedded"]["statuses"]]
        return []

    def _apply_lead(self, lead: dict[str, Any], change: Mapping[str, Any], rid: str) -> None:
        """Validate `change` fully against a copy, then apply it (a refused change leaves no trace)."""
        new = copy.deepcopy(lead)
        for key in ("name", "price"):
            if key in change:
                new[key] = change[key]
        if "responsible_user_id" in change:
            if change["responsible_user_id"] not in self.users:
                raise _Invalid(_validation(rid, "NotFound", "responsible_user_id"))
            new["responsible_user_id"] = change["responsible_user_id"]
        if "pipeline_id" in change or "status_id" in change:
            pipeline = change.get("pipeline_id", new["pipeline_id"])
            statuses = self._statuses(pipeline)
            status = change.get("status_id", statuses[0] if statuses else None)
            if status not in statuses:
                raise _Invalid(_validation(rid, "NotSupportedChoice", "status_id"))
            new["pipeline_id"], new["status_id"] = pipeline, status
            new["closed_at"] = int(time.time()) if status in (142, 143) else None
            if status != 143:
                new["loss_reason_id"] = None  # assumption: reopening forgets the loss reason
        if "loss_reason_id" in change:
            if change["loss_reason_id"] not in {r["id"] for r in self.loss_reasons}:
                raise _Invalid(_validation(rid, "NotSupportedChoice", "loss_reason_id"))
            new["loss_reason_id"] = change["loss_reason_id"]
        if "custom_fields_values" in change:
            new["custom_fields_values"] = self._cf(
                self.lead_fields, new["custom_fields_values"], change["custom_fields_values"], rid
            )
        if "tags" in (change.get("_embedded") or {}):
            new["__tags"] = [
                {"id": abs(hash(t["name"])) % 10**6, "name": t["name"], "color": None}
                for t in change["_embedded"]["tags"] or []
            ]
        new["updated_at"] = int(time.time())
        lead.clear()
        lead.update(new)

    def new_lead(
        self,
        name: str,
        pipeline_id: int,
        status_id: int,
        *,
        responsible: int | None = None,
        price: int = 0,
        fields: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        stamp = int(time.time())
        lead: dict[str, Any] = {
            "id": self.next_id("lead"),
            "name": name,
            "price": price,
            "responsible_user_id": responsible or 5000001,
            "group_id": 0,
            "status_id": None,
            "pipeline_id": pipeline_id,
            "loss_reason_id": None,
            "created_by": 5000001,
            "updated_by": 5000001,
            "created_at": stamp,
            "updated_at": stamp,
            "closed_at": None,
            "closest_task_at": None,
            "is_deleted": False,
            "custom_fields_values": None,
            "score": None,
            "account_id": 29876543,
            "labor_cost": None,
            "__tags": [],
            "__contacts": [],
        }
        self._apply_lead(
            lead,
            {"pipeline_id": pipeline_id, "status_id": status_id, "custom_fields_values": fields or []},
            "0",
        )
        self.leads[lead["id"]] = lead
        return lead

    def _get_lead(self, lead_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        lead = self.leads.get(int(lead_id))
        return (200, self._lead_out(lead, query.get("with", ""))) if lead else _problem(404)

    def _matches(self, entity: Mapping[str, Any], text: str) -> bool:
        needle = text.casefold()
        digits = re.sub(r"\D", "", text)
        if needle in str(entity.get("name", "")).casefold():
            return True
        for item in entity.get("custom_fields_values") or []:
            for v in item["values"]:
                value = str(v.get("value"))
                if needle in value.casefold() or (len(digits) >= 5 and digits in re.sub(r"\D", "", value)):
                    return True
        return False

    def _list_leads(self, *, query: Mapping[str, str], body: Any) -> Reply:
        since = int(query.get("filter[updated_at][from]", 0))
        items = [
            self._lead_out(lead, query.get("with", ""))
            for _, lead in sorted(self.leads.items())
            if ("query" not in query or self._matches(lead, query["query"])) and lead["updated_at"] >= since
        ]
        if query.get("order[updated_at]") in ("asc", "desc"):
            items.sort(key=lambda lead: lead["updated_at"], reverse=query["order[updated_at]"] == "desc")
        return self._page("/api/v4/leads", "leads", items, query)

    def _patch_lead(self, lead_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        lead = self.leads.get(int(lead_id))
        if lead is None:
            return _problem(404)
        self._apply_lead(lead, body, "0")
        return 200, {
            "id": lead["id"],
            "updated_at": lead["updated_at"],
            "_links": self._lead_out(lead)["_links"],
        }

    def _patch_leads(self, *, query: Mapping[str, str], body: Any) -> Reply:
        if len(body) > 250:
            return 422, load_fixture("errors/limit_exceeded__422.json")
        for i, change in enumerate(body):
            if change.get("id") not in self.leads:
                return _validation(str(i), "NotFound", "id", "Lead not found")  # assumption
        staged = {c["id"]: copy.deepcopy(self.leads[c["id"]]) for c in body}
        for i, change in enumerate(body):
            self._apply_lead(staged[change["id"]], change, str(i))
        self.leads.update(staged)
        return 200, {
            "_links": {"self": {"href": f"{self.base_url}/api/v4/leads"}},
            "_embedded": {
                "leads": [
                    {"id": c["id"], "updated_at": staged[c["id"]]["updated_at"], "request_id": str(i)}
                    for i, c in enumerate(body)
                ]
            },
        }

    def _complex(self, *, query: Mapping[str, str], body: Any) -> Reply:
        if len(body) > 50:
            return 400, {
                **load_fixture("errors/limit_exceeded__422.json"),
                "status": 400,
                "title": "Bad Request",
            }
        out = []
        for i, item in enumerate(body):
            if len(item.get("custom_fields_values") or []) > 40:
                return _validation(str(i), "LimitExceeded", "custom_fields_values")
            contacts = (item.get("_embedded") or {}).get("contacts") or []
            linked = []
            for c in contacts[:1]:
                if "id" in c:
                    if c["id"] not in self.contacts:
                        return _validation(str(i), "NotFound", "_embedded.contacts.0.id")
                    linked.append(c["id"])
                else:
                    linked.append(self._new_contact(c, str(i))["id"])
            lead = self.new_lead(
                item["name"],
                item["pipeline_id"],
                item["status_id"],
                responsible=item.get("responsible_user_id"),
                price=item.get("price", 0),
            )
            self._apply_lead(
                lead, {k: v for k, v in item.items() if k in ("custom_fields_values", "_embedded")}, str(i)
            )
            lead["__contacts"] = linked
            out.append(
                {
                    "id": lead["id"],
                    "contact_id": linked[0] if linked else None,
                    "company_id": None,
                    "request_id": [item.get("request_id", str(i))],
                    "merged": False,
                }
            )
        return 200, out

    def _link(self, lead_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        lead = self.leads.get(int(lead_id))
        if lead is None:
            return _problem(404)
        for link in body:
            if link["to_entity_id"] not in lead["__contacts"]:
                lead["__contacts"].append(link["to_entity_id"])
        return 200, {"_links": {}, "_embedded": {"links": body}}

    # --- contacts ---------------------------------------------------------------------------------------

    def _contact_out(self, contact: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in contact.items() if not k.startswith("__")}
        out["_links"] = {"self": {"href": f"{self.base_url}/api/v4/contacts/{contact['id']}"}}
        out["_embedded"] = {"tags": copy.deepcopy(contact["__tags"]), "companies": []}
        return out

    def _new_contact(self, item: Mapping[str, Any], rid: str) -> dict[str, Any]:
        stamp = int(time.time())
        contact = {
            "id": self.next_id("contact"),
            "name": item.get("name", ""),
            "first_name": "",
            "last_name": "",
            "responsible_user_id": item.get("responsible_user_id", 5000001),
            "group_id": 0,
            "created_by": 5000001,
            "updated_by": 5000001,
            "created_at": stamp,
            "updated_at": stamp,
            "closest_task_at": None,
            "is_deleted": False,
            "is_unsorted": False,
            "custom_fields_values": self._cf(
                self.contact_fields, None, item.get("custom_fields_values"), rid
            ),
            "account_id": 29876543,
            "__tags": [
                {"id": 1, "name": t["name"], "color": None}
                for t in (item.get("_embedded") or {}).get("tags") or []
            ],
        }
        self.contacts[contact["id"]] = contact
        return contact

    def _get_contact(self, contact_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        contact = self.contacts.get(int(contact_id))
        return (200, self._contact_out(contact)) if contact else _problem(404)

    def _list_contacts(self, *, query: Mapping[str, str], body: Any) -> Reply:
        items = [
            self._contact_out(c)
            for _, c in sorted(self.contacts.items())
            if "query" not in query or self._matches(c, query["query"])
        ]
        return self._page("/api/v4/contacts", "contacts", items, query)

    def _add_contacts(self, *, query: Mapping[str, str], body: Any) -> Reply:
        if len(body) > 250:
            return 422, load_fixture("errors/limit_exceeded__422.json")
        made = [
            (self._new_contact(item, str(i)), item.get("request_id", str(i))) for i, item in enumerate(body)
        ]
        return 200, {
            "_links": {"self": {"href": f"{self.base_url}/api/v4/contacts"}},
            "_embedded": {
                "contacts": [
                    {"id": c["id"], "request_id": rid, "_links": self._contact_out(c)["_links"]}
                    for c, rid in made
                ]
            },
        }

    # --- notes ------------------------------------------------------------------------------------------

    def _list_notes(self, lead_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        if int(lead_id) not in self.leads:
            return _problem(404)
        kind = query.get("filter[note_type]") or query.get("filter[note_type][]")
        since = int(query.get("filter[updated_at][from]", 0))
        items = [
            n
            for _, n in sorted(self.notes.items())
            if n["entity_id"] == int(lead_id)
            and (kind is None or n["note_type"] == kind)
            and n["updated_at"] >= since
        ]
        return self._page(f"/api/v4/leads/{lead_id}/notes", "notes", copy.deepcopy(items), query)

    def _add_notes(self, lead_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        if int(lead_id) not in self.leads:
            return _problem(404)
        if len(body) > 250:
            return 422, load_fixture("errors/limit_exceeded__422.json")
        for i, item in enumerate(body):
            params = item.get("params") or {}
            if item.get("note_type") == "extended_service_message" and not (
                params.get("service") and params.get("text")
            ):
                return _validation(str(i), "NotBlank", "params.text")
            if item.get("note_type") == "attachment" and params.get("file_uuid") not in self.files:
                return _validation(str(i), "NotFound", "params.file_uuid")
        out = []
        for item in body:
            stamp = int(time.time())
            note = {
                "id": self.next_id("note"),
                "entity_id": int(lead_id),
                "created_by": 5000001,
                "updated_by": 5000001,
                "created_at": stamp,
                "updated_at": stamp,
                "responsible_user_id": 5000001,
                "group_id": 0,
                "note_type": item["note_type"],
                "params": item.get("params") or {},
                "account_id": 29876543,
                "__dp": item.get("is_need_to_trigger_digital_pipeline", True),
            }
            self.notes[note["id"]] = note
            out.append(
                {
                    "id": note["id"],
                    "entity_id": note["entity_id"],
                    "request_id": item.get("request_id"),
                    "_links": {
                        "self": {"href": f"{self.base_url}/api/v4/leads/{lead_id}/notes/{note['id']}"}
                    },
                }
            )
        return 200, {
            "_links": {"self": {"href": f"{self.base_url}/api/v4/leads/{lead_id}/notes"}},
            "_embedded": {"notes": out},
        }

    # --- tasks ------------------------------------------------------------------------------------------

    def _list_tasks(self, *, query: Mapping[str, str], body: Any) -> Reply:
        def keep(t: Mapping[str, Any]) -> bool:
            return all(
                str(t.get(f)) == query[f"filter[{f}]"]
                for f in ("responsible_user_id", "entity_type", "entity_id")
                if f"filter[{f}]" in query
            ) and t["updated_at"] >= int(query.get("filter[updated_at][from]", 0))

        items = [copy.deepcopy(t) for _, t in sorted(self.tasks.items()) if keep(t)]
        return self._page("/api/v4/tasks", "tasks", items, query)

    def _add_tasks(self, *, query: Mapping[str, str], body: Any) -> Reply:
        if len(body) > 250:
            return 422, load_fixture("errors/limit_exceeded__422.json")
        for i, item in enumerate(body):
            if not item.get("text") or not isinstance(item.get("complete_till"), int):
                return _validation(str(i), "NotBlank", "complete_till")
            if item.get("entity_id") is not None and (
                item.get("entity_type") != "leads" or item["entity_id"] not in self.leads
            ):
                return _validation(str(i), "NotFound", "entity_id")
            if item.get("responsible_user_id", 5000001) not in self.users:
                return _validation(str(i), "NotSupportedChoice", "responsible_user_id")
        out = []
        for item in body:
            stamp = int(time.time())
            task = {
                "id": self.next_id("task"),
                "created_by": 5000001,
                "updated_by": 5000001,
                "created_at": stamp,
                "updated_at": stamp,
                "responsible_user_id": item.get("responsible_user_id", 5000001),
                "group_id": 0,
                "entity_id": item.get("entity_id"),
                "entity_type": item.get("entity_type"),
                "duration": 0,
                "is_completed": False,
                "task_type_id": item.get("task_type_id", 1),
                "text": item["text"],
                "result": [],
                "complete_till": item["complete_till"],
                "account_id": 29876543,
            }
            self.tasks[task["id"]] = task
            out.append(
                {
                    "id": task["id"],
                    "request_id": item.get("request_id"),
                    "_links": {"self": {"href": f"{self.base_url}/api/v4/tasks/{task['id']}"}},
                }
            )
        return 200, {
            "_links": {"self": {"href": f"{self.base_url}/api/v4/tasks"}},
            "_embedded": {"tasks": out},
        }

    # --- account, users, catalogs -----------------------------------------------------------------------

    def _account(self, *, query: Mapping[str, str], body: Any) -> Reply:
        account = load_fixture("api/account__with_drive_url.json")
        account["_links"]["self"]["href"] = f"{self.base_url}/api/v4/account"
        if "drive_url" in query.get("with", ""):
            account["drive_url"] = self.drive_url
        else:
            account.pop("drive_url")
        return 200, account

    def _custom_fields(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return self._page(
            "/api/v4/leads/custom_fields", "custom_fields", list(self.lead_fields.values()), query, total=True
        )

    def _pipelines(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return 200, load_fixture("api/pipelines_list.json")

    def _loss_reasons(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return self._page("/api/v4/leads/loss_reasons", "loss_reasons", self.loss_reasons, query)

    def new_user(self, name: str, *, active: bool = True, admin: bool = False) -> dict[str, Any]:
        template = copy.deepcopy(load_fixture("api/users_list.json")["_embedded"]["users"][1])
        uid = self.next_id("user")
        template.update(id=uid, name=name, email=f"user{uid}@clinic.example")
        template["rights"].update(is_active=active, is_admin=admin)
        template["_links"]["self"]["href"] = f"{self.base_url}/api/v4/users/{uid}"
        self.users[uid] = template
        return template

    def _get_user(self, user_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        if not self.admin:
            return _problem(403)
        user = self.users.get(int(user_id))
        return (200, copy.deepcopy(user)) if user else _problem(404)

    def _list_users(self, *, query: Mapping[str, str], body: Any) -> Reply:
        if not self.admin:
            return _problem(403)
        users = [copy.deepcopy(u) for _, u in sorted(self.users.items())]
        return self._page("/api/v4/users", "users", users, query, total=True)

    # --- drive ------------------------------------------------------------------------------------------

    def _drive_session(self, *, query: Mapping[str, str], body: Any) -> Reply:
        sid = self.next_id("session")
        key = f"session-{sid}"
        self.sessions[key] = {
            "name": body["file_name"],
            "size": int(body["file_size"]),
            "content_type": body.get("content_type"),
            "data": bytearray(),
        }
        session = load_fixture("api/drive_session.json")
        session.update(
            session_id=sid,
            max_part_size=self.max_part_size,
            upload_url=f"{self.drive_url}/upload/{key}/part-0",
        )
        return 200, session

    def _drive_part(self, key: str, part: str, *, query: Mapping[str, str], body: Any) -> Reply:
        session = self.sessions.get(key)
        if session is None or not isinstance(body, bytes) or len(body) > self.max_part_size:
            return _problem(400)
        session["data"].extend(body)
        if len(session["data"]) < session["size"]:
            return 200, {"session_id": key, "next_url": f"{self.drive_url}/upload/{key}/part-{int(part) + 1}"}
        done = load_fixture("api/drive_upload__done.json")
        done.update(
            uuid=str(uuid.uuid4()), version_uuid=str(uuid.uuid4()), name=session["name"], size=session["size"]
        )
        self.files[done["uuid"]] = {**session, "data": bytes(session["data"]), "uuid": done["uuid"]}
        return 200, done

    # --- helpers for worlds -----------------------------------------------------------------------------

    def encode_fields(self, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`FieldValue`s keyed by field id → the request shape, written independently of the client."""
        out = []
        for key, value in fields.items():
            if value is None:
                continue
            fid = int(key)
            if isinstance(value, tuple):
                values = [{"enum_id": int(v)} for v in value]
            elif isinstance(value, date):
                values = [
                    {"value": int(datetime(value.year, value.month, value.day, tzinfo=self.tz).timestamp())}
                ]
            else:
                values = [{"value": value}]
            out.append({"field_id": fid, "values": values})
        return out
