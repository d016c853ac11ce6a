"""Leads: read, list, PATCH one or a batch, /leads/complex, links (§5.1)."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Mapping
from typing import Any

from ._base import Reply, _Invalid, _problem, _validation, load_fixture


class LeadsMixin:
    # --- leads ------------------------------------------------------------------------------------------

    def _lead_out(self, lead: Mapping[str, Any], with_: str = "") -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in lead.items() if not k.startswith("__")}
        out["_links"] = {"self": {"href": f"{self.base_url}/api/v4/leads/{lead['id']}"}}
        emb: dict[str, Any] = {
            "tags": copy.deepcopy(lead["__tags"]),
            "companies": [
                {"id": c, "_links": {"self": {"href": f"{self.base_url}/api/v4/companies/{c}"}}}
                for c in lead.get("__companies") or ()
            ],
        }
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
        # `tags_to_add` / `tags_to_delete` (2024-03-25) edit tags by name, keeping the others.
        for tag in change.get("tags_to_add") or []:
            if tag["name"] not in [t["name"] for t in new["__tags"]]:
                new["__tags"].append(
                    {"id": abs(hash(tag["name"])) % 10**6, "name": tag["name"], "color": None}
                )
        gone = {t.get("name") for t in change.get("tags_to_delete") or []}
        new["__tags"] = [t for t in new["__tags"] if t["name"] not in gone]
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
            "__companies": [],
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
        ids = {int(i) for i in query["filter[id][]"]} if "filter[id][]" in query else None
        items = [
            self._lead_out(lead, query.get("with", ""))
            for _, lead in sorted(self.leads.items())
            if ("query" not in query or self._matches(lead, query["query"]))
            and lead["updated_at"] >= since
            and (ids is None or lead["id"] in ids)
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
