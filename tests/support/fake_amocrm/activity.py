"""Notes and tasks (§5.4–5.5)."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from ._base import Reply, _problem, _validation, load_fixture


class ActivityMixin:
    # --- Salesbot ---------------------------------------------------------------------------------------

    def _salesbot_run(self, *, query: Mapping[str, str], body: Any) -> Reply:
        """POST /api/v2/salesbot/run: a list of {bot_id, entity_id, entity_type 1|2}, ≤ 100; 202 `{}` (§7).
        Each run keeps the lead's field values at that moment, which is what the bot's
        `{{lead.cf.<id>}}` would read. Unknown bot → 404 as the v4 form documents (assumption for v2)."""
        if not isinstance(body, list) or not body:
            return _validation("0", "NotBlank", "bot_id")
        if len(body) > 100:
            return 422, load_fixture("errors/limit_exceeded__422.json")
        for i, item in enumerate(body):
            if item.get("entity_type") not in (1, 2):
                return _validation(str(i), "NotSupportedChoice", "entity_type")
            entities = self.leads if item["entity_type"] == 2 else self.contacts
            if item.get("entity_id") not in entities:
                return _validation(str(i), "NotFound", "entity_id")
            if item.get("bot_id") not in self.bots:
                return _problem(404)
        for item in body:
            lead = self.leads.get(item["entity_id"]) if item["entity_type"] == 2 else None
            fields = copy.deepcopy(lead["custom_fields_values"]) if lead else None
            self.bot_runs.append({**item, "fields": fields})
        return 202, {}

    # --- notes ------------------------------------------------------------------------------------------

    def _list_notes(self, lead_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        if int(lead_id) not in self.leads:
            return _problem(404)
        kind = query.get("filter[note_type]") or query.get("filter[note_type][]")
        since = int(query.get("filter[updated_at][from]", 0))
        items = [
            {k: v for k, v in n.items() if not k.startswith("__")}
            for _, n in sorted(self.notes.items())
            if n["entity_id"] == int(lead_id)
            and n.get("__entity", "leads") == "leads"
            and (kind is None or n["note_type"] == kind)
            and n["updated_at"] >= since
        ]
        return self._page(f"/api/v4/leads/{lead_id}/notes", "notes", copy.deepcopy(items), query)

    def _list_company_notes(self, company_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        if int(company_id) not in self.companies:
            return _problem(404)
        kind = query.get("filter[note_type]")
        since = int(query.get("filter[updated_at][from]", 0))
        items = [
            {k: v for k, v in n.items() if not k.startswith("__")}
            for _, n in sorted(self.notes.items())
            if n["entity_id"] == int(company_id)
            and n.get("__entity") == "companies"
            and (kind is None or n["note_type"] == kind)
            and n["updated_at"] >= since
        ]
        return self._page(f"/api/v4/companies/{company_id}/notes", "notes", items, query)

    def _add_company_notes(self, *, query: Mapping[str, str], body: Any) -> Reply:
        """POST /api/v4/companies/notes: each item names its company in `entity_id` (§5.3)."""
        for i, item in enumerate(body if isinstance(body, list) else []):
            if item.get("entity_id") not in self.companies:
                return _validation(str(i), "NotFound", "entity_id")
            params = item.get("params") or {}
            if item.get("note_type") == "extended_service_message" and not params.get("text"):
                return _validation(str(i), "NotBlank", "params.text")
        out = [self._store_note(item, int(item["entity_id"]), "companies") for item in body]
        return 200, {
            "_links": {"self": {"href": f"{self.base_url}/api/v4/companies/notes"}},
            "_embedded": {"notes": out},
        }

    def _store_note(self, item: Mapping[str, Any], entity_id: int, entity: str) -> dict[str, Any]:
        """Keep one note of a POST body; its item of the answer (`id`, `entity_id`, `request_id`)."""
        stamp = int(time.time())
        note = {
            "id": self.next_id("note"),
            "entity_id": entity_id,
            "created_by": 5000001,
            "updated_by": 5000001,
            "created_at": stamp,
            "updated_at": stamp,
            "responsible_user_id": 5000001,
            "group_id": 0,
            "note_type": item["note_type"],
            "params": item.get("params") or {},
            "account_id": 29876543,
            "__entity": entity,
            "__dp": item.get("is_need_to_trigger_digital_pipeline", True),
        }
        self.notes[note["id"]] = note
        href = f"{self.base_url}/api/v4/{entity}/{entity_id}/notes/{note['id']}"
        return {
            "id": note["id"],
            "entity_id": entity_id,
            "request_id": item.get("request_id"),
            "_links": {"self": {"href": href}},
        }

    def _add_notes_by_entity(self, *, query: Mapping[str, str], body: Any) -> Reply:
        """POST /api/v4/leads/notes: each item names its lead in `entity_id` (§5.3)."""
        for i, item in enumerate(body if isinstance(body, list) else []):
            if item.get("entity_id") not in self.leads:
                return _validation(str(i), "NotFound", "entity_id")  # assumption, as for PATCH
        return self._add_notes(None, query=query, body=body)

    def _add_notes(self, lead_id: str | None, *, query: Mapping[str, str], body: Any) -> Reply:
        if lead_id is not None and int(lead_id) not in self.leads:
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
        leads = f"{self.base_url}/api/v4/leads"
        out = [
            self._store_note(item, int(lead_id) if lead_id is not None else int(item["entity_id"]), "leads")
            for item in body
        ]
        return 200, {
            "_links": {"self": {"href": f"{leads}/{lead_id}/notes" if lead_id else f"{leads}/notes"}},
            "_embedded": {"notes": out},
        }

    # --- tasks ------------------------------------------------------------------------------------------

    def _list_tasks(self, *, query: Mapping[str, str], body: Any) -> Reply:
        entity_ids = set(query.get("filter[entity_id][]") or ())
        done = query.get("filter[is_completed]")

        def keep(t: Mapping[str, Any]) -> bool:
            return (
                all(
                    str(t.get(f)) == query[f"filter[{f}]"]
                    for f in ("responsible_user_id", "entity_type", "entity_id")
                    if f"filter[{f}]" in query
                )
                and t["updated_at"] >= int(query.get("filter[updated_at][from]", 0))
                and (not entity_ids or str(t.get("entity_id")) in entity_ids)
                and (done is None or t["is_completed"] == (done in ("1", "true")))
            )

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
