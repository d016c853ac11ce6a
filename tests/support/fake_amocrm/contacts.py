"""Contacts: read, list by query, add (§5.3)."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

from ._base import Reply, _problem, load_fixture


class ContactsMixin:
    # --- contacts ---------------------------------------------------------------------------------------

    def _contact_out(self, contact: Mapping[str, Any], with_: str = "") -> dict[str, Any]:
        out = {k: copy.deepcopy(v) for k, v in contact.items() if not k.startswith("__")}
        out["_links"] = {"self": {"href": f"{self.base_url}/api/v4/contacts/{contact['id']}"}}
        company = contact.get("__company")
        out["_embedded"] = {
            "tags": copy.deepcopy(contact["__tags"]),
            "companies": [
                {"id": company, "_links": {"self": {"href": f"{self.base_url}/api/v4/companies/{company}"}}}
            ]
            if company
            else [],
        }
        if "leads" in with_:
            out["_embedded"]["leads"] = [
                {"id": lid, "_links": {"self": {"href": f"{self.base_url}/api/v4/leads/{lid}"}}}
                for lid, lead in sorted(self.leads.items())
                if contact["id"] in lead["__contacts"]
            ]
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
        return (200, self._contact_out(contact, query.get("with", ""))) if contact else _problem(404)

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
