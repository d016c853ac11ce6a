"""What hangs off a lead in amoCRM: its contacts, their company, the open tasks (research/amocrm.md §5.3, §9).

- `get_contact`: `GET /api/v4/contacts/{id}?with=leads,companies`, then, when it has leads, one
  `GET /api/v4/leads?filter[id][]=…` to keep those still open (142/143 are closed in every pipeline).
- `add_company_note`: `POST /api/v4/companies/notes` with `entity_id` in the item (§5.3), exactly once as
  a lead note is (`request_id` is only echoed; the key is kept in the created store, the feed read back).
- `link_contact`: `GET /api/v4/leads/{id}?with=contacts` first, then, only when the contact is not among
  `_embedded.contacts`, `POST /api/v4/leads/{id}/link` with `[{to_entity_id, to_entity_type: "contacts"}]`
  (§5.3). The entity-links docs (amocrm.ru crm_platform/entity-links-api, Kommo "linking entities") do not
  say what a second link of the same contact does, so it is never sent (as on Bitrix24).
- `hand_over`: the leads read in pages of 50 ids, then `PATCH /api/v4/contacts`, `/companies` and
  `/tasks` (open tasks of those leads) with `{id, responsible_user_id}`, ≤ 50 per request (§5.1).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..arguments import checked_handovers, platform_id
from ..arguments import required_text as _nonempty
from ..errors import Rejected, RetryLater
from ..types import Company, Contact, Handover, NoteRef
from .const import BATCH_SIZE, LOST_STATUS_ID, NOTE_SERVICE, SERVICE_NAME, WON_STATUS_ID
from .schemas import embedded, parse_contact

if TYPE_CHECKING:
    from .transport import AmoTransport

__all__ = ["LinksMixin"]

_CLOSED = {int(WON_STATUS_ID), int(LOST_STATUS_ID)}


def _id(value: object, path: str) -> int:
    return platform_id(value, path, not_found_code="NotFound")


def _chunks(items: Sequence[Any], size: int = BATCH_SIZE) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class LinksMixin:
    transport: AmoTransport

    if TYPE_CHECKING:  # provided by AmoCrmClient and ActivityMixin, which follow this class in the MRO

        def _create_once(
            self, kind: str, key: str, post: Any, read_back: Any, *, look_first: bool
        ) -> str: ...

        def _check_user(self, user_id: str, path: str) -> int: ...

        def _notes_since(
            self, entity_id: int, note_type: str, since: float, entity: str = "leads"
        ) -> list[Mapping[str, Any]]: ...

    # --- reading ----------------------------------------------------------------------------------------

    def _leads(self, ids: Sequence[int], with_: str = "") -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = []
        for chunk in _chunks(list(dict.fromkeys(ids))):
            params: dict[str, Any] = {"filter[id][]": list(chunk)}
            if with_:
                params["with"] = with_
            out.extend(self.transport.iter_pages("/api/v4/leads", "leads", params))
        return out

    def get_contact(self, contact_id: str) -> Contact:
        body = self.transport.get_json(
            f"/api/v4/contacts/{_id(contact_id, 'contact_id')}", {"with": "leads,companies"}
        )
        if body is None:
            raise Rejected(
                f"contact_id: no such contact {contact_id!r}", status=404, code="NotFound", path="contact_id"
            )
        contact = parse_contact(body)
        companies = [str(c["id"]) for c in embedded(body, "companies") if c.get("id")]
        lead_ids = [int(lead["id"]) for lead in embedded(body, "leads") if lead.get("id")]
        open_leads = sorted(
            (lead for lead in self._leads(lead_ids) if lead.get("status_id") not in _CLOSED),
            key=lambda lead: (int(lead.get("created_at") or 0), int(lead["id"])),
        )
        return replace(
            contact,
            company_id=companies[0] if companies else None,
            open_deal_ids=tuple(str(lead["id"]) for lead in open_leads),
        )

    def get_company(self, company_id: str) -> Company:
        body = self.transport.get_json(f"/api/v4/companies/{_id(company_id, 'company_id')}")
        if body is None:
            raise Rejected(
                f"company_id: no such company {company_id!r}", status=404, code="NotFound", path="company_id"
            )
        responsible = body.get("responsible_user_id")
        return Company(
            id=str(body["id"]),
            name=str(body.get("name") or ""),
            responsible_user_id=str(responsible) if responsible else None,
        )

    # --- company notes ----------------------------------------------------------------------------------

    def add_company_note(self, company_id: str, text: str, *, idempotency_key: str) -> NoteRef:
        cid = _id(company_id, "company_id")
        _nonempty(text, "text")
        note = {
            "entity_id": cid,
            "note_type": NOTE_SERVICE,
            "params": {"service": SERVICE_NAME, "text": text},
            "request_id": idempotency_key,
        }

        def post() -> str:
            created = embedded(self.transport.send_json("POST", "/api/v4/companies/notes", [note]), "notes")
            if not created or "id" not in created[0]:
                raise RetryLater("amoCRM: POST companies/notes answered without an id")
            return str(created[0]["id"])

        def read_back(since: float) -> str | None:
            for item in self._notes_since(cid, NOTE_SERVICE, since, "companies"):
                if (item.get("params") or {}).get("text") == text:
                    return str(item["id"])
            return None

        note_id = self._create_once("company_note", idempotency_key, post, read_back, look_first=False)
        return NoteRef(id=note_id, deal_id="", company_id=str(cid))

    # --- contacts of a lead ------------------------------------------------------------------------------

    def link_contact(self, deal_id: str, contact_id: str) -> None:
        """The contact joins the lead's contacts (not as the main one: that stays the patient's)."""
        lead_id, cid = _id(deal_id, "deal_id"), _id(contact_id, "contact_id")
        link = [{"to_entity_id": cid, "to_entity_type": "contacts"}]
        try:
            lead = self.transport.get_json(f"/api/v4/leads/{lead_id}", {"with": "contacts"})
            if lead is None:
                raise Rejected(
                    f"deal_id: no such deal {deal_id!r}", status=404, code="NotFound", path="deal_id"
                )
            if cid in {int(c["id"]) for c in embedded(lead, "contacts") if c.get("id")}:
                return
            self.transport.send_json("POST", f"/api/v4/leads/{lead_id}/link", link, idempotent=True)
        except Rejected as exc:
            if exc.status == 404:
                raise Rejected(
                    f"deal_id: no such deal {deal_id!r}", status=404, code="NotFound", path="deal_id"
                ) from None
            raise

    # --- hand-over --------------------------------------------------------------------------------------

    def hand_over(self, handovers: Sequence[Handover]) -> None:
        leads: dict[int, Mapping[str, Any]] = {}

        def found(ids: list[int]) -> Collection[int]:
            leads.update({int(lead["id"]): lead for lead in self._leads(ids, "contacts")})
            return leads

        wanted = checked_handovers(handovers, self._check_user, found, not_found_code="NotFound")
        contacts: dict[int, int] = {}
        companies: dict[int, int] = {}
        for lead_id, (handover, user) in wanted.items():
            if handover.contacts:
                contacts.update({int(c["id"]): user for c in embedded(leads[lead_id], "contacts")})
            if handover.company:
                companies.update({int(c["id"]): user for c in embedded(leads[lead_id], "companies")})
        with_tasks = [lead_id for lead_id, (handover, _) in wanted.items() if handover.open_tasks]
        tasks = self._open_tasks(with_tasks)
        task_owner = {task_id: wanted[lead_id][1] for task_id, lead_id in tasks.items()}
        for path, changes in (
            ("/api/v4/contacts", contacts),
            ("/api/v4/companies", companies),
            ("/api/v4/tasks", task_owner),
        ):
            body = [{"id": entity, "responsible_user_id": user} for entity, user in changes.items()]
            for chunk in _chunks(body):
                # Setting a responsible is idempotent: a lost answer may be resent as is.
                self.transport.send_json("PATCH", path, list(chunk), idempotent=True)

    def _open_tasks(self, lead_ids: Sequence[int]) -> dict[int, int]:
        """task id → lead id of the leads' tasks not yet completed."""
        found: dict[int, int] = {}
        for chunk in _chunks(list(lead_ids)):
            params = {
                "filter[entity_type]": "leads",
                "filter[entity_id][]": list(chunk),
                "filter[is_completed]": 0,
            }
            for task in self.transport.iter_pages("/api/v4/tasks", "tasks", params):
                if not task.get("is_completed"):
                    found[int(task["id"])] = int(task["entity_id"])
        return found
