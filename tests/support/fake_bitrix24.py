"""A stateful Bitrix24 cloud portal on `responses`, shaped after research/bitrix24.md §1-7.

`FakeBitrix24(rsps)` answers REST calls on the portal host (`https://<domain>/rest/<method>`), the two
OAuth servers (`/oauth/token/`, `/rest/app.info`), and keeps deals and contacts (`crm.item.*`,
`crm.contact.list`, `crm.duplicate.findbycomm`), stages, deal user fields, timeline comments, tasks,
users, notifications (a `TAG` replaces), the app's disk storage, placements, event handlers, robots,
the offline event queue and `bizproc.event.send` in memory.

It enforces what the docs say: the leaky bucket (50, draining 2/s → 503 QUERY_LIMIT_EXCEEDED), the
per-method operating budget (→ 429 OPERATION_TIME_LIMIT), batches ≤ 50 with HTTP 200 and per-command
`result_error`, `$result[key][field]` chaining, page size 50 with `next`, `start=-1` without a count,
401 `expired_token` for an expired access token, single-use refresh tokens (rotated on every refresh),
`invalid_grant`, a 302 from the old address after a domain move, `DISK_OBJ_22000` for a duplicate name.

`inject(kind, count, method=None)` makes the next matching calls fail: an HTTP status with an error
code (``(503, "QUERY_LIMIT_EXCEEDED")``), ``"timeout"`` (never applied) or ``"timeout_after"`` (applied,
answer lost).
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
import mimetypes
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo

import requests
import responses

from connectors.bitrix24.forms import nest

__all__ = ["CLIENT_ID", "CLIENT_SECRET", "FakeBitrix24", "Fault"]

CLIENT_ID = "app.5f3c2a1b9d8e7.12345678"
CLIENT_SECRET = "s3cr3t-of-the-app-0123456789abcdef"
OAUTH_HOSTS = ("oauth.bitrix.info", "oauth.bitrix24.tech")
PORTAL_URL = re.compile(r"^https://[a-z0-9-]+\.bitrix24\.(ru|com|de|by|kz)/rest/.*")
Reply = tuple[int, Any]


class _Err(Exception):
    def __init__(self, code: str, description: str = "", status: int = 400) -> None:
        super().__init__(code)
        self.code, self.description, self.status = code, description or code, status


@dataclass
class Fault:
    kind: int | str
    count: int
    method: str | None = None
    error: str = ""


def _int(value: Any, name: str = "id") -> int:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        raise _Err("INVALID_ARG_VALUE", f"{name} must be an integer") from None


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _dumps(body: Any) -> str:
    return json.dumps(
        body, ensure_ascii=False, default=lambda o: float(o) if isinstance(o, Decimal) else str(o)
    )


class FakeBitrix24:
    def __init__(
        self,
        rsps: responses.RequestsMock | None,
        *,
        domain: str = "clinic.bitrix24.ru",
        member_id: str = "a223c6b3710f85df22e9377d6c4f7553",
        server_host: str = "oauth.bitrix.info",
        token: str = "access-1",
        refresh_token: str = "refresh-1",
        timezone: str = "Europe/Moscow",
        capacity: int | None = 50,
        drain_per_s: float = 2.0,
        operating_limit: float = 480.0,
        operating_per_call: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        offline_extended: bool = True,
    ) -> None:
        self.domain = domain
        self.member_id = member_id
        self.server_host = server_host
        self.tz = ZoneInfo(timezone)
        self.capacity, self.drain_per_s, self._clock = capacity, drain_per_s, clock
        self.operating_limit, self.operating_per_call = operating_limit, operating_per_call
        self.offline_extended = offline_extended
        self.lock = threading.RLock()
        self.tokens = {token}
        self.expired: set[str] = set()
        self.refresh_tokens = {refresh_token}
        self.spent_refresh: set[str] = set()
        self.refreshes: list[tuple[str, str]] = []  # (host, refresh token spent)
        self.user_tokens: dict[str, dict[str, Any]] = {}
        self.moved_from: set[str] = set()
        self.redirects = 0
        self.level = 0.0
        self._last = clock()
        self.max_level = 0.0
        self.throttled = 0
        self.requests = 0
        self.operating: dict[str, list[tuple[float, float]]] = {}
        self.faults: list[Fault] = []
        self.log: list[tuple[str, dict[str, Any]]] = []
        self._ids = itertools.count(101)
        self.deals: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.users: dict[int, dict[str, Any]] = {}
        self.notifications: dict[int, dict[str, str]] = {}  # user → {tag: message}, insertion ordered
        self.storage = {"ID": "17", "NAME": "ClinicBridge", "ENTITY_TYPE": "restapp"}
        self.folders: dict[int, dict[str, Any]] = {}
        self.files: dict[int, dict[str, Any]] = {}
        self.placements: list[dict[str, Any]] = []
        self.handlers: list[dict[str, Any]] = []
        self.robots: dict[str, dict[str, Any]] = {}
        self.userfields: dict[str, dict[str, Any]] = {}
        self.offline: list[dict[str, Any]] = []
        self.reserved: dict[str, list[dict[str, Any]]] = {}
        self.event_sends: list[dict[str, Any]] = []
        # (deal, field, new value) for each change of a UF field to a non-empty value: what a robot
        # triggered on "field changed" would see (a patient message is one).
        self.field_changes: list[tuple[int, str, Any]] = []
        self.work_days: dict[int, str] = {}  # user → timeman STATUS; CLOSED when absent
        self.valid_event_tokens: set[str] = set()
        self.fail_methods: dict[str, str] = {}  # method → error code (set-up failures)
        self.stages = {
            0: [("NEW", ""), ("PREPARATION", ""), ("WON", "S"), ("LOSE", "F")],
            1: [("C1:NEW", ""), ("C1:WORK", ""), ("C1:WON", "S"), ("C1:LOSE", "F")],
        }
        self.fields: dict[str, dict[str, Any]] = {
            "UF_CRM_TEXT": {"type": "string", "isMultiple": False, "title": "Палата"},
            "UF_CRM_NUMBER": {"type": "integer", "isMultiple": False, "title": "Сумма"},
            "UF_CRM_FLAG": {"type": "boolean", "isMultiple": False, "title": "ОМС"},
            "UF_CRM_DATE": {"type": "date", "isMultiple": False, "title": "Дата выписки"},
            "UF_CRM_MULTI": {
                "type": "enumeration",
                "isMultiple": True,
                "title": "Услуги",
                "items": [
                    {"ID": "41", "VALUE": "ЛФК"},
                    {"ID": "42", "VALUE": "Массаж"},
                    {"ID": "43", "VALUE": "Бассейн"},
                ],
            },
            "UF_CRM_CB_LOSS_REASON": {"type": "string", "isMultiple": False, "title": "Причина отказа"},
        }
        if rsps is not None:
            self.register(rsps)

    # --- wiring -----------------------------------------------------------------------------------------

    @property
    def client_endpoint(self) -> str:
        return f"https://{self.domain}/rest/"

    @property
    def server_endpoint(self) -> str:
        return f"https://{self.server_host}/rest/"

    def register(self, rsps: responses.RequestsMock) -> None:
        rsps.add_callback(responses.POST, PORTAL_URL, callback=self._portal_cb)
        for host in OAUTH_HOSTS:
            rsps.add_callback(responses.GET, f"https://{host}/oauth/token/", callback=self._oauth_cb)
            rsps.add_callback(responses.POST, f"https://{host}/rest/app.info", callback=self._app_info_cb)

    def inject(self, kind: int | str, count: int = 1, method: str | None = None, error: str = "") -> None:
        self.faults.append(Fault(kind, count, method, error))

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [params for m, params in self.log if m == method]

    # --- world helpers ----------------------------------------------------------------------------------

    def new_user(
        self, name: str, *, active: bool = True, online: bool = False, email: str | None = None
    ) -> dict:
        first, _, last = name.partition(" ")
        uid = next(self._ids)
        user = {
            "ID": str(uid),
            "ACTIVE": active,
            "NAME": first,
            "LAST_NAME": last,
            "EMAIL": email or "",
            "IS_ONLINE": "Y" if online else "N",
            "USER_TYPE": "employee",
        }
        self.users[uid] = user
        return user

    def new_deal(self, title: str, category: int = 0, stage: str = "NEW", **values: Any) -> dict:
        did = next(self._ids)
        self.deals[did] = {
            "id": did,
            "title": title,
            "categoryId": category,
            "stageId": stage,
            "assignedById": 1,
            "opportunity": Decimal("0"),
            "currencyId": "RUB",
            "contactIds": [],
            "companyId": 0,
            "originId": None,
            "createdTime": datetime.now(self.tz).replace(microsecond=0).isoformat(),
            "updatedTime": datetime.now(self.tz).replace(microsecond=0).isoformat(),
            **{k: None for k in self.fields},
        }
        for key, value in values.items():
            self.deals[did][key] = value
        return self.deals[did]

    def new_contact(
        self, name: str, phones: tuple[str, ...] = (), origin: str | None = None, responsible: int = 1
    ) -> dict:
        first, _, last = name.partition(" ")
        cid = next(self._ids)
        self.contacts[cid] = {
            "ID": str(cid),
            "NAME": first,
            "LAST_NAME": last,
            "ASSIGNED_BY_ID": str(responsible),
            "COMPANY_ID": None,
            "originId": origin,
            "PHONE": [
                {"ID": str(next(self._ids)), "VALUE_TYPE": "WORK", "VALUE": p, "TYPE_ID": "PHONE"}
                for p in phones
            ],
            "EMAIL": [],
        }
        return self.contacts[cid]

    def new_company(self, title: str, responsible: int = 1) -> dict:
        cid = next(self._ids)
        self.companies[cid] = {
            "id": cid,
            "title": title,
            "assignedById": responsible,
            "companyTypeId": "CUSTOMER",
            "createdTime": datetime.now(self.tz).replace(microsecond=0).isoformat(),
            "updatedTime": datetime.now(self.tz).replace(microsecond=0).isoformat(),
        }
        return self.companies[cid]

    def link(self, deal_id: int, contact_id: int, company_id: int | None = None) -> None:
        """Bind a contact (and a company, to the deal and the contact) as a person would in the card."""
        deal = self.deals[deal_id]
        if contact_id not in deal["contactIds"]:
            deal["contactIds"].append(contact_id)
        if company_id is not None:
            deal["companyId"] = company_id
            self.contacts[contact_id]["COMPANY_ID"] = str(company_id)

    def user_session(
        self,
        token: str,
        *,
        user_id: int = 1,
        client_id: str = CLIENT_ID,
        member_id: str | None = None,
        domain: str | None = None,
    ) -> None:
        """A frame's AUTH_ID that `app.info` on the OAuth server recognises."""
        self.user_tokens[token] = {
            "user_id": user_id,
            "client_id": client_id,
            "member_id": member_id or self.member_id,
            "domain": domain or self.domain,
        }

    def move_domain(self, new_domain: str) -> None:
        self.moved_from.add(self.domain)
        self.domain = new_domain

    def expire(self, token: str) -> None:
        self.tokens.discard(token)
        self.expired.add(token)

    # --- rate limits ------------------------------------------------------------------------------------

    def _admit(self) -> bool:
        now = self._clock()
        self.level = max(0.0, self.level - (now - self._last) * self.drain_per_s)
        self._last = now
        self.requests += 1
        if self.capacity is not None and self.level + 1 > self.capacity:
            self.throttled += 1
            return False
        self.level += 1
        self.max_level = max(self.max_level, self.level)
        return True

    def _operate(self, method: str) -> float:
        now = time.time()
        spent = [(t, o) for t, o in self.operating.get(method, []) if t > now - 600]
        if sum(o for _, o in spent) >= self.operating_limit:
            raise _Err("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)
        spent.append((now, self.operating_per_call))
        self.operating[method] = spent
        # `time.operating` is this request's own cost; the platform (and our budget) sums it per method.
        return self.operating_per_call

    def _time(self, operating: float) -> dict[str, Any]:
        now = time.time()
        return {
            "start": now,
            "finish": now,
            "duration": 0.001,
            "processing": 0.0005,
            "date_start": datetime.now(self.tz).isoformat(),
            "date_finish": datetime.now(self.tz).isoformat(),
            "operating": operating,
            "operating_reset_at": int(now) + 600,
        }

    # --- callbacks --------------------------------------------------------------------------------------

    def _fault(self, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.count > 0 and (fault.method is None or fault.method == method):
                fault.count -= 1
                return fault
        return None

    def _portal_cb(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(request.url or "")
        query = dict(parse_qsl(parts.query))
        method = parts.path[len("/rest/") :].removesuffix(".json")
        if parts.hostname in self.moved_from:
            self.redirects += 1
            location = f"https://{self.domain}{parts.path}?{parts.query}"
            return 302, {"Location": location}, ""
        if parts.hostname != self.domain:
            return 404, {}, "no such portal"
        with self.lock:
            fault = self._fault(method)
            if fault is not None and fault.kind == "timeout":
                raise requests.ConnectTimeout("injected timeout")
            if fault is not None and isinstance(fault.kind, int):
                return (
                    fault.kind,
                    {"Content-Type": "application/json"},
                    _dumps(
                        {"error": fault.error or "INTERNAL_SERVER_ERROR", "error_description": "injected"}
                    ),
                )
            if not self._admit():
                return (
                    503,
                    {"Content-Type": "application/json"},
                    _dumps({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}),
                )
            token = query.get("auth", "")
            if token in self.expired:
                return (
                    401,
                    {"Content-Type": "application/json"},
                    _dumps(
                        {
                            "error": "expired_token",
                            "error_description": "The access token provided has expired.",
                        }
                    ),
                )
            if token not in self.tokens:
                return (
                    401,
                    {"Content-Type": "application/json"},
                    _dumps(
                        {"error": "invalid_token", "error_description": "Unable to get application by token"}
                    ),
                )
            body = json.loads(request.body or b"{}", parse_float=Decimal) if request.body else {}
            status, reply = self.dispatch(method, body)
            if fault is not None and fault.kind == "timeout_after":
                raise requests.ReadTimeout("injected timeout after apply")
            return status, {"Content-Type": "application/json"}, _dumps(reply)

    def dispatch(self, method: str, params: dict[str, Any]) -> Reply:
        try:
            operating = self._operate(method)
            self.log.append((method, params))
            if method == "batch":
                result = self._batch(params)
                return 200, {"result": result, "time": self._time(operating)}
            handler = getattr(self, "m_" + method.replace(".", "_"), None)
            if handler is None:
                raise _Err("ERROR_METHOD_NOT_FOUND", f"Method not found: {method}", 404)
            if method in self.fail_methods:
                raise _Err(self.fail_methods[method], "injected set-up failure")
            out = handler(params)
            extra: dict[str, Any] = {}
            if isinstance(out, tuple):
                out, extra = out
            return 200, {"result": out, **extra, "time": self._time(operating)}
        except _Err as exc:
            return exc.status, {"error": exc.code, "error_description": exc.description}

    def _batch(self, params: dict[str, Any]) -> dict[str, Any]:
        cmd = params.get("cmd") or {}
        if len(cmd) > 50:
            raise _Err("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        times: dict[str, Any] = {}
        halt = str(params.get("halt", "0")) == "1"
        for key, line in cmd.items():
            method, _, query = str(line).partition("?")
            # References are resolved in the decoded values, as the platform parses each command first.
            pairs = [
                (k, re.sub(r"\$result\[(\w+)\]((?:\[\w+\])*)", lambda m: self._chain(results, m), v))
                for k, v in parse_qsl(query, keep_blank_values=True)
            ]
            sub = nest(pairs)
            if method == "batch":
                errors[key] = {
                    "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "error_description": "no nested batch",
                }
                continue
            status, reply = self.dispatch(method, sub)
            if status == 200:
                results[key] = reply["result"]
                times[key] = reply["time"]
            else:
                errors[key] = reply
                if halt:
                    break
        return {
            "result": results,
            "result_error": errors,
            "result_total": [],
            "result_next": [],
            "result_time": times,
        }

    @staticmethod
    def _chain(results: dict[str, Any], match: re.Match[str]) -> str:
        value: Any = results.get(match.group(1))
        for part in re.findall(r"\[(\w+)\]", match.group(2)):
            value = value[int(part)] if isinstance(value, list) else (value or {}).get(part)
        return str(value)

    def _oauth_cb(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(request.url or "")
        q = dict(parse_qsl(parts.query))
        with self.lock:
            if q.get("client_id") != CLIENT_ID or q.get("client_secret") != CLIENT_SECRET:
                return 401, {}, _dumps({"error": "invalid_client", "error_description": "Invalid client"})
            old = q.get("refresh_token", "")
            self.refreshes.append((str(parts.hostname), old))
            if q.get("grant_type") != "refresh_token" or old not in self.refresh_tokens:
                return 400, {}, _dumps({"error": "invalid_grant", "error_description": "Invalid grant"})
            self.refresh_tokens.discard(old)
            self.spent_refresh.add(old)
            n = len(self.refreshes)
            access, refresh = f"access-r{n}", f"refresh-r{n}"
            self.tokens.add(access)
            self.refresh_tokens.add(refresh)
            now = int(time.time())
            return (
                200,
                {},
                _dumps(
                    {
                        "access_token": access,
                        "refresh_token": refresh,
                        "expires_in": 3600,
                        "expires": now + 3600,
                        "scope": "app",
                        "domain": parts.hostname,
                        "server_endpoint": f"https://{parts.hostname}/rest/",
                        "client_endpoint": self.client_endpoint,
                        "member_id": self.member_id,
                        "status": "L",
                        "user_id": 1,
                    }
                ),
            )

    def _app_info_cb(self, request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        form = dict(
            parse_qsl(request.body if isinstance(request.body, str) else (request.body or b"").decode())
        )
        session = self.user_tokens.get(form.get("auth", ""))
        if session is None:
            return (
                401,
                {},
                _dumps({"error": "invalid_token", "error_description": "Unable to get application"}),
            )
        return (
            200,
            {},
            _dumps(
                {
                    "result": {
                        "client_id": session["client_id"],
                        "scope": "crm,placement,bizproc,disk,im,user,task",
                        "expires": int(time.time()) + 3600,
                        "user_id": session["user_id"],
                        "install": {
                            "installed": True,
                            "version": 1,
                            "status": "L",
                            "scope": "crm",
                            "domain": session["domain"],
                            "uri": f"https://{session['domain']}",
                            "client_endpoint": f"https://{session['domain']}/rest/",
                            "member_id": session["member_id"],
                            "member_type": "cloud",
                        },
                    }
                }
            ),
        )

    # --- crm.item ---------------------------------------------------------------------------------------

    def _semantics(self, category: int, stage: str) -> str | None:
        for sid, sem in self.stages.get(category, []):
            if sid == stage:
                return sem
        return None

    def _out_deal(self, deal: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in deal.items() if k != "_loss"}
        sem = self._semantics(deal["categoryId"], deal["stageId"])
        out["closed"] = "Y" if sem in ("S", "F") else "N"
        for key, spec in self.fields.items():
            value = deal.get(key)
            if value is None:
                out[key] = [] if spec["isMultiple"] else None
            elif spec["type"] == "date":
                out[key] = f"{value}T00:00:00+03:00"
            elif spec["type"] == "enumeration" and spec["isMultiple"]:
                out[key] = [int(v) for v in value]
        return out

    def _set_uf(self, deal: dict[str, Any], key: str, value: Any) -> None:
        spec = self.fields.get(key)
        if spec is None:
            return  # unknown fields are silently ignored, as the platform does
        if value in ("", None, []):
            deal[key] = None
            return
        kind = spec["type"]
        if kind == "integer":
            deal[key] = _int(value, key)
        elif kind == "boolean":
            deal[key] = "Y" if str(value) in ("Y", "1", "true", "True") else "N"
        elif kind == "date":
            deal[key] = date.fromisoformat(str(value)[:10]).isoformat()
        elif kind == "enumeration":
            values = (
                value
                if isinstance(value, list)
                else list(value.values())
                if isinstance(value, dict)
                else [value]
            )
            allowed = {i["ID"] for i in spec.get("items", [])}
            if any(str(v) not in allowed for v in values):
                raise _Err("INVALID_ARG_VALUE", f"{key}: unknown enumeration item")
            deal[key] = [str(v) for v in values]
        elif spec["isMultiple"]:
            deal[key] = [str(v) for v in (value if isinstance(value, list) else [value])]
        else:
            deal[key] = str(value)

    def _apply_deal(self, deal: dict[str, Any], fields: Mapping[str, Any]) -> None:
        category = _int(fields.get("categoryId", deal["categoryId"]), "categoryId")
        stage = str(fields.get("stageId", deal["stageId"]))
        if self._semantics(category, stage) is None:
            raise _Err("CRM_FIELD_ERROR_VALUE_NOT_VALID", f"stageId {stage} is not in category {category}")
        deal["categoryId"], deal["stageId"] = category, stage
        for key, value in fields.items():
            if key.startswith("UF_CRM_"):
                before = deal.get(key)
                self._set_uf(deal, key, value)
                if deal.get(key) not in (None, before):
                    self.field_changes.append((deal["id"], key, deal[key]))
            elif key == "title":
                deal["title"] = str(value)
            elif key == "assignedById":
                deal["assignedById"] = _int(value, "assignedById")
            elif key == "opportunity":
                deal["opportunity"] = Decimal(str(value))
            elif key == "contactIds":
                deal["contactIds"] = [
                    _int(c) for c in (value if isinstance(value, list) else list(value.values()))
                ]
            elif key == "originId":
                deal["originId"] = str(value)
        deal["updatedTime"] = datetime.now(self.tz).replace(microsecond=0).isoformat()

    def _deal(self, params: Mapping[str, Any]) -> dict[str, Any]:
        if _int(params.get("entityTypeId"), "entityTypeId") != 2:
            raise _Err("NOT_FOUND", "Smart process not found")
        deal = self.deals.get(_int(params.get("id")))
        if deal is None:
            raise _Err("NOT_FOUND", "Element not found")
        return deal

    def _emit(self, event: str, deal_id: int, params: Mapping[str, Any]) -> None:
        connector = params.get("auth_connector")
        # The queue keeps one record per object (§4 offline events); our own connector's writes are skipped.
        if any(
            (h["event_type"] == "offline" and h["event"] == event and h.get("auth_connector") != connector)
            or (h["event_type"] == "offline" and h["event"] == event and not connector)
            for h in self.handlers
        ):
            self.offline = [
                m
                for m in self.offline
                if not (m["EVENT_NAME"] == event and m["EVENT_DATA"]["FIELDS"]["ID"] == deal_id)
            ]
            mid = next(self._ids)
            self.offline.append(
                {
                    "ID": mid,
                    "TIMESTAMP_X": datetime.now(self.tz).isoformat(),
                    "EVENT_NAME": event,
                    "EVENT_DATA": {"FIELDS": {"ID": deal_id}},
                    "EVENT_ADDITIONAL": {"user_id": "1"},
                    "MESSAGE_ID": f"{mid:032x}",
                }
            )

    def m_crm_item_fields(self, params: dict[str, Any]) -> Any:
        return {"fields": copy.deepcopy(self.fields)}

    def _other(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """A contact (3) or company (4) named by crm.item.get/update; None for a deal."""
        entity = _int(params.get("entityTypeId"), "entityTypeId")
        if entity not in (3, 4):
            return None
        store = self.contacts if entity == 3 else self.companies
        found = store.get(_int(params.get("id")))
        if found is None:
            raise _Err("NOT_FOUND", "Element not found")
        return found

    @staticmethod
    def _out_contact(contact: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": int(contact["ID"]),
            "name": contact["NAME"],
            "lastName": contact["LAST_NAME"],
            "assignedById": int(contact["ASSIGNED_BY_ID"]),
            "companyId": int(contact["COMPANY_ID"] or 0),
        }

    def m_crm_item_get(self, params: dict[str, Any]) -> Any:
        other = self._other(params)
        if other is not None:
            return {"item": self._out_contact(other) if "ID" in other else dict(other)}
        return {"item": self._out_deal(self._deal(params))}

    def m_crm_deal_contact_add(self, params: dict[str, Any]) -> Any:
        # Adds to the deal's contacts, the first one staying primary; a contact already bound stays once.
        deal = self.deals.get(_int(params.get("id")))
        if deal is None:
            raise _Err("NOT_FOUND", "Not found")
        contact_id = _int((params.get("fields") or {}).get("CONTACT_ID"), "CONTACT_ID")
        if contact_id not in self.contacts:
            raise _Err("NOT_FOUND", "Contact not found")
        if contact_id not in deal["contactIds"]:
            deal["contactIds"].append(contact_id)
        return True

    def m_crm_item_update(self, params: dict[str, Any]) -> Any:
        other = self._other(params)
        if other is not None:
            responsible = (params.get("fields") or {}).get("assignedById")
            if responsible is not None:
                if _int(responsible, "assignedById") not in self.users:
                    raise _Err("CRM_FIELD_ERROR_VALUE_NOT_VALID", "assignedById: no such user")
                if "ID" in other:
                    other["ASSIGNED_BY_ID"] = str(_int(responsible))
                else:
                    other["assignedById"] = _int(responsible)
            return {"item": self._out_contact(other) if "ID" in other else dict(other)}
        deal = self._deal(params)
        before = (deal["categoryId"], deal["stageId"])
        self._apply_deal(deal, params.get("fields") or {})
        moved = deal["categoryId"] != before[0]
        self._emit("ONCRMDEALMOVETOCATEGORY" if moved else "ONCRMDEALUPDATE", deal["id"], params)
        return {"item": self._out_deal(deal)}

    def m_crm_item_add(self, params: dict[str, Any]) -> Any:
        entity = _int(params.get("entityTypeId"), "entityTypeId")
        fields = params.get("fields") or {}
        if entity == 3:
            phones = tuple(f["value"] for f in fields.get("fm") or () if f.get("typeId") == "PHONE")
            contact = self.new_contact(str(fields.get("name") or ""), phones, origin=fields.get("originId"))
            contact["EMAIL"] = [
                {"VALUE": f["value"], "VALUE_TYPE": "WORK"}
                for f in fields.get("fm") or ()
                if f.get("typeId") == "EMAIL"
            ]
            if fields.get("assignedById"):
                contact["ASSIGNED_BY_ID"] = str(fields["assignedById"])
            return {"item": {"id": int(contact["ID"]), "name": contact["NAME"]}}
        if entity != 2:
            raise _Err("NOT_FOUND", "Smart process not found")
        if not fields.get("title"):
            raise _Err("CRM_FIELD_ERROR_REQUIRED", "title is required")
        deal = self.new_deal("")
        try:
            self._apply_deal(deal, fields)
        except _Err:
            del self.deals[deal["id"]]
            raise
        self._emit("ONCRMDEALADD", deal["id"], params)
        return {"item": self._out_deal(deal)}

    def m_crm_item_list(self, params: dict[str, Any]) -> Any:
        entity = _int(params.get("entityTypeId"), "entityTypeId")
        flt = params.get("filter") or {}
        rows: list[dict[str, Any]] = (
            list(self.deals.values())
            if entity == 2
            else [
                {"id": int(c["ID"]), "originId": c.get("originId"), "name": c["NAME"]}
                for c in self.contacts.values()
            ]
        )
        for key, value in flt.items():
            if key == "=originId":
                rows = [r for r in rows if r.get("originId") == value]
            elif key == ">id":
                rows = [r for r in rows if r["id"] > _int(value)]
            elif key == "@id":
                wanted = {_int(v) for v in (value if isinstance(value, list) else value.values())}
                rows = [r for r in rows if r["id"] in wanted]
            elif key == "=contactId":
                rows = [r for r in rows if (r.get("contactIds") or [None])[0] == _int(value)]
            elif key == "=closed":
                rows = [r for r in rows if self._out_deal(r)["closed"] == value]
            elif key == ">=updatedTime":
                since = datetime.fromisoformat(str(value))
                rows = [r for r in rows if datetime.fromisoformat(r["updatedTime"]) >= since]
        rows.sort(key=lambda r: r["id"])
        start = _int(params.get("start", 0), "start")
        out = [self._out_deal(r) if entity == 2 else r for r in rows]
        if start == -1:
            return {"items": out[:50]}
        page = out[start : start + 50]
        extra: dict[str, Any] = {"total": len(out)}
        if start + 50 < len(out):
            extra["next"] = start + 50
        return {"items": page}, extra

    def m_crm_category_list(self, params: dict[str, Any]) -> Any:
        # crm.category.list{entityTypeId: 2}: deal categories ("воронки"); 0 is the default one.
        if _int(params.get("entityTypeId"), "entityTypeId") != 2:
            raise _Err("NOT_FOUND", "Smart process not found", 400)
        names = {0: "Общее", 1: "Стационар"}
        return {
            "categories": [
                {"id": c, "name": names.get(c, f"Воронка {c}"), "sort": (c + 1) * 100, "entityTypeId": 2,
                 "isDefault": "Y" if c == 0 else "N"}
                for c in sorted(self.stages)
            ]
        }, {"total": len(self.stages)}

    def m_crm_status_list(self, params: dict[str, Any]) -> Any:
        entity = str((params.get("filter") or {}).get("ENTITY_ID", ""))
        category = 0 if entity == "DEAL_STAGE" else _int(entity.rsplit("_", 1)[-1], "ENTITY_ID")
        return [
            {
                "ENTITY_ID": entity,
                "STATUS_ID": sid,
                "NAME": sid,
                "SEMANTICS": sem or None,
                "CATEGORY_ID": str(category),
            }
            for sid, sem in self.stages.get(category, [])
        ]

    # --- contacts ---------------------------------------------------------------------------------------

    def m_crm_duplicate_findbycomm(self, params: dict[str, Any]) -> Any:
        values = params.get("values") or []
        values = values if isinstance(values, list) else list(values.values())
        if len(values) > 20:
            raise _Err("ERROR_ARGUMENT", "Too many values (max 20)")
        wanted = {_digits(str(v)) for v in values}
        ids = [
            int(c["ID"])
            for c in self.contacts.values()
            if any(_digits(p["VALUE"]) in wanted for p in c["PHONE"])
        ]
        return {"CONTACT": ids} if ids else []

    def m_crm_contact_list(self, params: dict[str, Any]) -> Any:
        flt = params.get("filter") or {}
        ids = flt.get("@ID")
        rows = list(self.contacts.values())
        if ids is not None:
            wanted = {str(i) for i in (ids if isinstance(ids, list) else ids.values())}
            rows = [c for c in rows if c["ID"] in wanted]
        return [{k: v for k, v in c.items() if k != "originId"} for c in rows]

    # --- timeline, tasks, users, notifications ----------------------------------------------------------

    def m_crm_timeline_comment_add(self, params: dict[str, Any]) -> Any:
        fields = params.get("fields") or {}
        kind = str(fields.get("ENTITY_TYPE", "")).lower()
        store = {"deal": self.deals, "company": self.companies, "contact": self.contacts}.get(kind)
        if store is None or _int(fields.get("ENTITY_ID")) not in store:
            raise _Err("NOT_FOUND", "Entity not found")
        cid = next(self._ids)
        self.comments[cid] = {
            "ID": str(cid),
            "ENTITY_ID": _int(fields["ENTITY_ID"]),
            "ENTITY_TYPE": kind,
            "COMMENT": str(fields.get("COMMENT") or ""),
            "CREATED": datetime.now(self.tz).isoformat(),
        }
        return cid

    def m_crm_timeline_comment_list(self, params: dict[str, Any]) -> Any:
        flt = params.get("filter") or {}
        kind = str(flt.get("ENTITY_TYPE", "deal")).lower()
        return [
            c
            for c in self.comments.values()
            if c["ENTITY_ID"] == _int(flt.get("ENTITY_ID")) and c["ENTITY_TYPE"] == kind
        ]

    def m_tasks_task_add(self, params: dict[str, Any]) -> Any:
        fields = params.get("fields") or {}
        if _int(fields.get("RESPONSIBLE_ID"), "RESPONSIBLE_ID") not in self.users:
            raise _Err("ERROR_CORE", "Не найден ответственный")
        tid = next(self._ids)
        self.tasks[tid] = {
            "id": str(tid),
            "title": str(fields.get("TITLE")),
            "responsibleId": str(fields["RESPONSIBLE_ID"]),
            "deadline": str(fields.get("DEADLINE")),
            "ufCrmTask": list(fields.get("UF_CRM_TASK") or []),
            "status": "2",
            "createdDate": datetime.now(self.tz).isoformat(),
        }
        return {"task": self.tasks[tid]}

    def m_tasks_task_update(self, params: dict[str, Any]) -> Any:
        task = self.tasks.get(_int(params.get("taskId"), "taskId"))
        if task is None:
            raise _Err("ERROR_CORE", "Задача не найдена или доступ запрещен")
        fields = params.get("fields") or {}
        if "RESPONSIBLE_ID" in fields:
            if _int(fields["RESPONSIBLE_ID"], "RESPONSIBLE_ID") not in self.users:
                raise _Err("ERROR_CORE", "Не найден ответственный")
            task["responsibleId"] = str(_int(fields["RESPONSIBLE_ID"]))
        return {"task": task}

    def m_tasks_task_list(self, params: dict[str, Any]) -> Any:
        flt = params.get("filter") or {}
        return {
            "tasks": [
                t
                for t in self.tasks.values()
                if flt.get("UF_CRM_TASK") in t["ufCrmTask"]
                and t["title"] == flt.get("TITLE", t["title"])
                and t["status"] != str(flt.get("!REAL_STATUS", ""))
            ]
        }

    def m_user_get(self, params: dict[str, Any]) -> Any:
        flt = params.get("filter") or params.get("FILTER") or {}
        rows = sorted(self.users.values(), key=lambda u: int(u["ID"]))
        if "ID" in flt:
            rows = [u for u in rows if u["ID"] == str(flt["ID"])]
        if "IS_ONLINE" in flt:
            rows = [u for u in rows if u["IS_ONLINE"] == flt["IS_ONLINE"]]
        start = _int(params.get("start", 0), "start")
        extra: dict[str, Any] = {"total": len(rows)}
        if start + 50 < len(rows):
            extra["next"] = start + 50
        return rows[start : start + 50], extra

    def m_timeman_status(self, params: dict[str, Any]) -> Any:
        uid = _int(params.get("USER_ID") or 1, "USER_ID")
        if uid not in self.users:
            raise _Err("ACCESS_DENIED", "Access denied", 403)
        status = self.work_days.get(uid, "CLOSED")
        opened = status != "CLOSED"
        start = datetime.now(self.tz).replace(hour=9, minute=0, second=0, microsecond=0).isoformat()
        return {
            "STATUS": status,
            "TIME_START": start if opened else None,
            "TIME_FINISH": None,
            "DURATION": "00:00:00",
            "TIME_LEAKS": "00:00:00",
            "ACTIVE": status == "OPENED",
            "IP_OPEN": "",
            "IP_CLOSE": "",
            "LAT_OPEN": 0,
            "LON_OPEN": 0,
            "LAT_CLOSE": 0,
            "LON_CLOSE": 0,
            "TZ_OFFSET": 10800,
        }

    def m_im_notify_system_add(self, params: dict[str, Any]) -> Any:
        user = self.users.get(_int(params.get("USER_ID"), "USER_ID"))
        if user is None or not user["ACTIVE"]:
            raise _Err("USER_ID_EMPTY", "Recipient not found")
        box = self.notifications.setdefault(int(user["ID"]), {})
        tag = str(params.get("TAG") or next(self._ids))
        box.pop(tag, None)  # a notification with the same TAG replaces the old one
        box[tag] = str(params.get("MESSAGE"))
        return next(self._ids)

    # --- disk -------------------------------------------------------------------------------------------

    def m_disk_storage_getForApp(self, params: dict[str, Any]) -> Any:
        return dict(self.storage)

    def m_disk_storage_addfolder(self, params: dict[str, Any]) -> Any:
        name = str((params.get("data") or {}).get("NAME") or "")
        if any(f["NAME"] == name for f in self.folders.values()):
            raise _Err("DISK_OBJ_22000", "Папка с таким именем уже существует")
        fid = next(self._ids)
        self.folders[fid] = {"ID": str(fid), "NAME": name, "DETAIL_URL": f"https://{self.domain}/disk/{fid}/"}
        return self.folders[fid]

    def m_disk_storage_getchildren(self, params: dict[str, Any]) -> Any:
        name = (params.get("filter") or {}).get("NAME")
        return [f for f in self.folders.values() if name in (None, f["NAME"])]

    def m_disk_folder_uploadfile(self, params: dict[str, Any]) -> Any:
        folder = _int(params.get("id"))
        if folder not in self.folders:
            raise _Err("ERROR_NOT_FOUND", "Folder not found")
        name = str((params.get("data") or {}).get("NAME") or "")
        if any(f["folder"] == folder and f["NAME"] == name for f in self.files.values()):
            raise _Err("DISK_OBJ_22000", "Файл с таким именем уже существует")
        content = base64.b64decode((params.get("fileContent") or ["", ""])[1])
        fid = next(self._ids)
        self.files[fid] = {
            "ID": str(fid),
            "NAME": name,
            "folder": folder,
            "data": content,
            "mime": mimetypes.guess_type(name)[0] or "application/octet-stream",
            "DETAIL_URL": f"https://{self.domain}/disk/file/{fid}/",
        }
        return {k: v for k, v in self.files[fid].items() if k not in ("data", "folder", "mime")}

    def m_disk_folder_getchildren(self, params: dict[str, Any]) -> Any:
        folder, name = _int(params.get("id")), (params.get("filter") or {}).get("NAME")
        return [
            {"ID": f["ID"], "NAME": f["NAME"], "DETAIL_URL": f["DETAIL_URL"]}
            for f in self.files.values()
            if f["folder"] == folder and name in (None, f["NAME"])
        ]

    # --- installation: placements, events, robots, user fields ------------------------------------------

    def m_placement_bind(self, params: dict[str, Any]) -> Any:
        entry = {
            "placement": params.get("PLACEMENT"),
            "handler": params.get("HANDLER"),
            "title": params.get("TITLE"),
            "options": params.get("OPTIONS") or {},
        }
        if any(
            p["placement"] == entry["placement"] and p["handler"] == entry["handler"] for p in self.placements
        ):
            raise _Err("ERROR_PLACEMENT_HANDLER_ALREADY_BINDED", "Handler already binded")
        self.placements.append(entry)
        return True

    def m_placement_get(self, params: dict[str, Any]) -> Any:
        return copy.deepcopy(self.placements)

    def m_placement_unbind(self, params: dict[str, Any]) -> Any:
        before = len(self.placements)
        self.placements = [
            p
            for p in self.placements
            if not (p["placement"] == params.get("PLACEMENT") and p["handler"] == params.get("HANDLER"))
        ]
        return {"count": before - len(self.placements)}

    def m_event_bind(self, params: dict[str, Any]) -> Any:
        entry = {
            "event": str(params.get("event", "")).upper(),
            "handler": params.get("handler") or "",
            "event_type": params.get("event_type") or "online",
            "auth_connector": params.get("auth_connector"),
            "options": params.get("options"),
        }
        if any(
            h["event"] == entry["event"]
            and h["handler"] == entry["handler"]
            and h["event_type"] == entry["event_type"]
            for h in self.handlers
        ):
            raise _Err("ERROR_EVENT_ALREADY_BINDED", "Handler already binded")
        self.handlers.append(entry)
        return True

    def m_event_get(self, params: dict[str, Any]) -> Any:
        return [
            {
                "event": h["event"],
                "handler": h["handler"],
                "auth_type": "0",
                "offline": 1 if h["event_type"] == "offline" else 0,
            }
            for h in self.handlers
        ]

    def m_event_unbind(self, params: dict[str, Any]) -> Any:
        before = len(self.handlers)
        event = str(params.get("event", "")).upper()
        self.handlers = [
            h
            for h in self.handlers
            if not (
                h["event"] == event
                and h["handler"] == (params.get("handler") or "")
                and h["event_type"] == (params.get("event_type") or "online")
            )
        ]
        return {"count": before - len(self.handlers)}

    def m_bizproc_robot_add(self, params: dict[str, Any]) -> Any:
        code = str(params.get("CODE"))
        if code in self.robots:
            raise _Err("ERROR_ACTIVITY_ALREADY_INSTALLED", "Activity already installed")
        self.robots[code] = dict(params)
        return True

    def m_bizproc_robot_update(self, params: dict[str, Any]) -> Any:
        code = str(params.get("CODE"))
        if code not in self.robots:
            raise _Err("ERROR_ACTIVITY_NOT_FOUND", "Activity not found")
        self.robots[code].update(params.get("FIELDS") or {})
        return True

    def m_bizproc_robot_list(self, params: dict[str, Any]) -> Any:
        return list(self.robots)

    def m_bizproc_robot_delete(self, params: dict[str, Any]) -> Any:
        self.robots.pop(str(params.get("CODE")), None)
        return True

    def m_crm_deal_userfield_add(self, params: dict[str, Any]) -> Any:
        fields = params.get("fields") or {}
        name = "UF_CRM_" + str(fields.get("FIELD_NAME", "")).removeprefix("UF_CRM_")
        if name in self.fields:
            raise _Err("ERROR_CORE", "Поле с таким кодом уже существует")
        self.userfields[name] = dict(fields)
        kind = {"double": "double", "date": "date", "boolean": "boolean"}.get(
            str(fields.get("USER_TYPE_ID")), "string"
        )
        self.fields[name] = {"type": kind, "isMultiple": False, "title": str(fields.get("LABEL") or name)}
        return next(self._ids)

    def m_crm_deal_userfield_list(self, params: dict[str, Any]) -> Any:
        return [
            {"FIELD_NAME": k, "USER_TYPE_ID": v["type"], "MULTIPLE": "Y" if v["isMultiple"] else "N"}
            for k, v in self.fields.items()
            if k.startswith("UF_CRM_")
        ]

    def m_feature_get(self, params: dict[str, Any]) -> Any:
        return {"value": "Y" if self.offline_extended else "N"}

    def m_app_info(self, params: dict[str, Any]) -> Any:
        return {"ID": 7, "CODE": CLIENT_ID, "VERSION": 1, "STATUS": "L", "INSTALLED": True}

    # --- offline events and robots ----------------------------------------------------------------------

    def m_event_offline_get(self, params: dict[str, Any]) -> Any:
        clear = str(params.get("clear", "1")) == "1"
        limit = _int(params.get("limit", 50), "limit")
        if not clear and not self.offline_extended:
            raise _Err("ERROR_FEATURE_DISABLED", "rest_offline_extended is off: only clear=1")
        taken, self.offline = self.offline[:limit], self.offline[limit:]
        process_id = f"p{next(self._ids)}"
        if not clear:
            self.reserved[process_id] = taken
        return {"process_id": process_id if not clear else None, "events": taken}

    def m_event_offline_clear(self, params: dict[str, Any]) -> Any:
        ids = params.get("message_id") or []
        ids = set(ids if isinstance(ids, list) else ids.values())
        batch = self.reserved.get(str(params.get("process_id")), [])
        self.reserved[str(params.get("process_id"))] = [m for m in batch if m["MESSAGE_ID"] not in ids]
        return True

    def m_event_offline_error(self, params: dict[str, Any]) -> Any:
        ids = params.get("message_id") or []
        ids = set(ids if isinstance(ids, list) else ids.values())
        batch = self.reserved.pop(str(params.get("process_id")), [])
        self.offline.extend(m for m in batch if m["MESSAGE_ID"] in ids)
        return True

    def m_bizproc_event_send(self, params: dict[str, Any]) -> Any:
        token = str(params.get("EVENT_TOKEN") or params.get("event_token") or "")
        if token not in self.valid_event_tokens:
            raise _Err("ACCESS_DENIED", "Access denied", 403)
        self.valid_event_tokens.discard(token)
        self.event_sends.append(dict(params))
        return True

    # --- helpers for tests ------------------------------------------------------------------------------

    def now_utc(self) -> datetime:
        return datetime.now(UTC)
