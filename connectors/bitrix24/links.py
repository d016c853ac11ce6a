"""What hangs off a deal in Bitrix24: contacts, companies, open tasks (research/bitrix24.md §5).

- `get_contact`: `crm.contact.list` (the one read that carries phones, e-mails and `COMPANY_ID`) and
  `crm.item.list` of open deals whose contact it is (`=contactId`, `=closed: N`, oldest first). Bitrix24
  filters deals by their primary contact only; a contact linked second to a deal does not see it here.
- `get_company`: `crm.item.get` with entityTypeId 4; `add_company_note`: `crm.timeline.comment.add` with
  ENTITY_TYPE company, exactly once by key like a deal comment.
- `link_contact`: `crm.item.get` of the deal, then, unless its `contactIds` has the contact already,
  `crm.deal.contact.add` (`id`, `fields.CONTACT_ID`), which adds to the deal's contacts and keeps the
  primary one; so a retry is harmless.
- `hand_over`: the deals' links in one `crm.item.list` per 50, their open tasks (`tasks.task.list`, one
  command per deal in a batch), then every change in batches of 50: `crm.item.update` (entityTypeId 3 / 4,
  `assignedById`) and `tasks.task.update` (`RESPONSIBLE_ID`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..arguments import checked_handovers, platform_id
from ..arguments import required_text as _text
from ..errors import Rejected
from ..types import Company, Contact, CrmUser, Handover, NoteRef
from .transport import refused

if TYPE_CHECKING:
    from .transport import B24Transport

__all__ = ["COMPANY", "TASK_COMPLETED", "LinksMixin"]

DEAL, CONTACT, COMPANY = 2, 3, 4
TASK_COMPLETED = 5  # tasks REAL_STATUS: 5 = completed
_PAGE = 50


def _id(value: object, path: str) -> int:
    return platform_id(value, path, not_found_code="NOT_FOUND")


class LinksMixin:
    transport: B24Transport

    if TYPE_CHECKING:  # provided by Bitrix24Client

        def _call(self, method: str, params: Mapping[str, Any], *, read: bool = False) -> Any: ...

        def _write(self, params: dict[str, Any]) -> dict[str, Any]: ...

        def _contacts(self, ids: Sequence[int]) -> list[Contact]: ...

        def _check_user(self, user_id: str, path: str) -> CrmUser: ...

        def _create_once(
            self, kind: str, key: str, post: Callable[[], str], read_back: Callable[[float], str | None]
        ) -> str: ...

        def _comment_read_back(
            self, entity_type: str, entity_id: int, text: str, since: float
        ) -> str | None: ...

    # --- reading ----------------------------------------------------------------------------------------

    def get_contact(self, contact_id: str) -> Contact:
        cid = _id(contact_id, "contact_id")
        found = self._contacts([cid])
        if not found:
            raise Rejected(
                f"contact_id: no such contact {contact_id!r}", status=404, code="NOT_FOUND", path="contact_id"
            )
        result = self._call(
            "crm.item.list",
            {
                "entityTypeId": DEAL,
                "filter": {"=contactId": cid, "=closed": "N"},
                "select": ["id"],
                "order": {"id": "ASC"},
            },
            read=True,
        )
        deals = tuple(str(item["id"]) for item in (result or {}).get("items") or ())
        return replace(found[0], open_deal_ids=deals)

    def get_company(self, company_id: str) -> Company:
        result = self._call(
            "crm.item.get", {"entityTypeId": COMPANY, "id": _id(company_id, "company_id")}, read=True
        )
        item = (result or {}).get("item") or {}
        return Company(
            id=str(item["id"]),
            name=str(item.get("title") or ""),
            responsible_user_id=str(item["assignedById"]) if item.get("assignedById") else None,
        )

    # --- company notes ----------------------------------------------------------------------------------

    def add_company_note(self, company_id: str, text: str, *, idempotency_key: str) -> NoteRef:
        cid = int(self.get_company(company_id).id)  # NOT_FOUND → Rejected(404) before anything is kept
        _text(text, "text")

        def post() -> str:
            fields = {"ENTITY_ID": cid, "ENTITY_TYPE": "company", "COMMENT": text}
            return str(self._call("crm.timeline.comment.add", {"fields": fields}))

        note_id = self._create_once(
            "company_note",
            idempotency_key,
            post,
            lambda since: self._comment_read_back("company", cid, text, since),
        )
        return NoteRef(note_id, "", company_id=str(cid))

    # --- contacts of a deal ------------------------------------------------------------------------------

    def link_contact(self, deal_id: str, contact_id: str) -> None:
        item_id, cid = _id(deal_id, "deal_id"), _id(contact_id, "contact_id")
        try:
            # The docs do not say what a second add of the same contact does: it is not sent.
            linked = self._call("crm.item.get", {"entityTypeId": DEAL, "id": item_id}, read=True)
            if cid in {int(c) for c in ((linked or {}).get("item") or {}).get("contactIds") or ()}:
                return
            self._call("crm.deal.contact.add", {"id": item_id, "fields": {"CONTACT_ID": cid}})
        except Rejected as exc:
            if exc.status == 404:
                raise Rejected(
                    f"deal_id: no such deal {deal_id!r}",
                    status=404,
                    code=exc.code or "NOT_FOUND",
                    path="deal_id",
                ) from None
            raise

    # --- hand-over --------------------------------------------------------------------------------------

    def hand_over(self, handovers: Sequence[Handover]) -> None:
        deals: dict[int, Mapping[str, Any]] = {}

        def found(ids: list[int]) -> Collection[int]:
            deals.update(self._deal_links(ids))
            return deals

        def user(user_id: str, path: str) -> int:
            return int(self._check_user(user_id, path).id)

        wanted = checked_handovers(handovers, user, found, not_found_code="NOT_FOUND")
        owner = {deal_id: user_id for deal_id, (_, user_id) in wanted.items()}
        items: dict[tuple[int, int], int] = {}
        for deal_id, (handover, user_id) in wanted.items():
            deal = deals[deal_id]
            if handover.contacts:
                items.update({(CONTACT, int(c)): user_id for c in deal.get("contactIds") or ()})
            if handover.company and deal.get("companyId"):
                items[(COMPANY, int(deal["companyId"]))] = user_id
        with_tasks = [deal_id for deal_id, (handover, _) in wanted.items() if handover.open_tasks]
        tasks = self._open_tasks(with_tasks)
        commands: list[tuple[str, str, Mapping[str, Any]]] = [
            (
                f"e{entity}_{item_id}",
                "crm.item.update",
                self._write({"entityTypeId": entity, "id": item_id, "fields": {"assignedById": user}}),
            )
            for (entity, item_id), user in items.items()
        ]
        commands += [
            (f"t{task_id}", "tasks.task.update", {"taskId": task_id, "fields": {"RESPONSIBLE_ID": user}})
            for task_id, user in ((task_id, owner[deal_id]) for task_id, deal_id in tasks.items())
        ]
        refused(self.transport.batch_many(commands), len(commands), "hand-over changes", "handovers")

    def _deal_links(self, ids: Sequence[int]) -> dict[int, Mapping[str, Any]]:
        out: dict[int, Mapping[str, Any]] = {}
        for start in range(0, len(ids), _PAGE):
            result = self._call(
                "crm.item.list",
                {
                    "entityTypeId": DEAL,
                    "filter": {"@id": list(ids[start : start + _PAGE])},
                    "select": ["id", "contactIds", "companyId"],
                },
                read=True,
            )
            out.update({int(item["id"]): item for item in (result or {}).get("items") or ()})
        return out

    def _open_tasks(self, deal_ids: Sequence[int]) -> dict[int, int]:
        """task id → deal id of the deals' tasks not completed."""
        commands = [
            (
                f"d{deal_id}",
                "tasks.task.list",
                {
                    "filter": {"UF_CRM_TASK": f"D_{deal_id}", "!REAL_STATUS": TASK_COMPLETED},
                    "select": ["ID", "RESPONSIBLE_ID"],
                },
            )
            for deal_id in deal_ids
        ]
        result = self.transport.batch_many(commands)
        if result.errors:
            raise next(iter(result.errors.values()))
        found: dict[int, int] = {}
        for key, value in result.result.items():
            for task in (value or {}).get("tasks") or ():
                found[int(task["id"])] = int(key[1:])
        return found
