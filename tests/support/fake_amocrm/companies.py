"""Companies, links and responsible changes: what a hand-over touches (§5.1, §5.3).

Assumptions where the docs are silent: `with=leads` on a contact lists every linked lead, open or closed;
an unknown id inside a PATCH batch is 400 `NotFound`, as for leads.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from ._base import Reply, _problem, _validation, load_fixture


class CompaniesMixin:
    def new_company(self, name: str, *, responsible: int | None = None) -> dict[str, Any]:
        stamp = int(time.time())
        company = {
            "id": self.next_id("company"),
            "name": name,
            "responsible_user_id": responsible or 5000001,
            "group_id": 0,
            "created_by": 5000001,
            "updated_by": 5000001,
            "created_at": stamp,
            "updated_at": stamp,
            "closest_task_at": None,
            "is_deleted": False,
            "custom_fields_values": None,
            "account_id": 29876543,
        }
        self.companies[company["id"]] = company
        return company

    def link(self, lead_id: int, *, contact: int | None = None, company: int | None = None) -> None:
        """Link a contact and/or a company to a lead (and the company to the contact), as a person would."""
        lead = self.leads[lead_id]
        if contact is not None and contact not in lead["__contacts"]:
            lead["__contacts"].append(contact)
        if company is not None:
            lead["__companies"] = [company]
            if contact is not None:
                self.contacts[contact]["__company"] = company

    def _company_out(self, company: Mapping[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(dict(company))
        out["_links"] = {"self": {"href": f"{self.base_url}/api/v4/companies/{company['id']}"}}
        out["_embedded"] = {"tags": []}
        return out

    def _get_company(self, company_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        company = self.companies.get(int(company_id))
        return (200, self._company_out(company)) if company else _problem(404)

    def _patch_responsible(self, store: dict[int, dict[str, Any]], path: str, body: Any) -> Reply:
        if len(body) > 250:
            return 422, load_fixture("errors/limit_exceeded__422.json")
        for i, change in enumerate(body):
            if change.get("id") not in store:
                return _validation(str(i), "NotFound", "id")
            if change.get("responsible_user_id", 5000001) not in self.users:
                return _validation(str(i), "NotFound", "responsible_user_id")
        out = []
        for change in body:
            entity = store[change["id"]]
            entity["responsible_user_id"] = change["responsible_user_id"]
            entity["updated_at"] = int(time.time())
            out.append({"id": entity["id"], "updated_at": entity["updated_at"]})
        name = path.rsplit("/", 1)[-1]
        return 200, {"_links": {"self": {"href": f"{self.base_url}{path}"}}, "_embedded": {name: out}}

    def _patch_contacts(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return self._patch_responsible(self.contacts, "/api/v4/contacts", body)

    def _patch_companies(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return self._patch_responsible(self.companies, "/api/v4/companies", body)

    def _patch_tasks(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return self._patch_responsible(self.tasks, "/api/v4/tasks", body)
