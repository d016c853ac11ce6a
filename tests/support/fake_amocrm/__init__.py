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

import itertools
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import requests
import responses

from ._base import FIXTURES, HOST, Fault, Reply, _Invalid, _problem, load_fixture
from .account import AccountMixin
from .activity import ActivityMixin
from .companies import CompaniesMixin
from .contacts import ContactsMixin
from .fields import CustomFieldsMixin
from .leads import LeadsMixin

__all__ = ["FIXTURES", "FakeAmo", "Fault", "load_fixture"]


class FakeAmo(LeadsMixin, ContactsMixin, CompaniesMixin, ActivityMixin, AccountMixin, CustomFieldsMixin):
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
        self.companies: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, dict[str, Any]] = {}
        self.tasks: dict[int, dict[str, Any]] = {}
        self.files: dict[str, dict[str, Any]] = {}
        self.bots = {36143: "Напоминание о визите"}
        self.bot_runs: list[dict[str, Any]] = []
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
                "company": 8214500,
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
                ("POST", r"/api/v4/leads/notes", self._add_notes_by_entity),
                ("POST", r"/api/v4/leads/(\d+)/link", self._link),
                ("GET", r"/api/v4/leads/(\d+)", self._get_lead),
                ("PATCH", r"/api/v4/leads/(\d+)", self._patch_lead),
                ("GET", r"/api/v4/leads", self._list_leads),
                ("PATCH", r"/api/v4/leads", self._patch_leads),
                ("POST", r"/api/v4/leads/complex", self._complex),
                ("GET", r"/api/v4/contacts/(\d+)", self._get_contact),
                ("GET", r"/api/v4/contacts", self._list_contacts),
                ("POST", r"/api/v4/contacts", self._add_contacts),
                ("PATCH", r"/api/v4/contacts", self._patch_contacts),
                ("GET", r"/api/v4/companies/(\d+)/notes", self._list_company_notes),
                ("POST", r"/api/v4/companies/notes", self._add_company_notes),
                ("GET", r"/api/v4/companies/(\d+)", self._get_company),
                ("PATCH", r"/api/v4/companies", self._patch_companies),
                ("GET", r"/api/v4/tasks", self._list_tasks),
                ("POST", r"/api/v4/tasks", self._add_tasks),
                ("PATCH", r"/api/v4/tasks", self._patch_tasks),
                ("POST", r"/api/v2/salesbot/run", self._salesbot_run),
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
        # PHP-style list parameters (`filter[id][]=1&filter[id][]=2`) stay lists; the rest are single values.
        query = {k: v if k.endswith("[]") else v[-1] for k, v in parse_qs(parts.query).items()}
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
            query = urlencode({**rest, "limit": limit, "page": p}, doseq=True)
            return {"href": f"{self.base_url}{path}?{query}"}

        links = {"self": href(page)}
        if page * limit < len(items):
            links["next"] = href(page + 1)
        body: dict[str, Any] = {"_page": page, "_links": links, "_embedded": {name: chunk}}
        if total:
            body = {"_total_items": len(items), "_page_count": -(-len(items) // limit), **body}
        return 200, body
