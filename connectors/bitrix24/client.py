"""`Bitrix24Client`: `CrmClient` on Bitrix24 REST (research/bitrix24.md §5; issue 7 "Client").

Deals are `crm.item.*` with `entityTypeId=2` and `useOriginalUfNames=Y`, so custom fields keep their
`UF_CRM_…` names. Creating exactly once: deals and contacts carry a reference derived from the
idempotency key in `originId` and are looked up by it before any add, so a retry after a timeout finds
the first record; comments, tasks and files are remembered by key in a `CreatedStore` (shared in Redis)
and read back before a resend; a notification's `TAG` is the key, so a resend replaces it.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from ..arguments import invalid as _invalid
from ..arguments import is_platform_id, platform_id
from ..arguments import required_text as _text
from ..created import PENDING, CreatedStore, MemoryCreatedStore, now, pending_since
from ..errors import Rejected, RetryLater
from ..types import (
    Contact,
    CrmUser,
    Deal,
    DealUpdate,
    FieldValue,
    FileRef,
    NewContact,
    NewDeal,
    NewTask,
    NoteRef,
    OutgoingMessage,
    Pipeline,
    Stage,
    StageRef,
    TaskRef,
)
from .fields import FieldDef, decode_value, encode_value, normalize_phone, parse_field_defs, phone_forms
from .links import LinksMixin
from .transport import B24Transport, refused

__all__ = ["DEAL", "LOSS_REASON_FIELD", "MESSAGE_SENT", "WORK_DAY_STATES", "Bitrix24Client", "reference_for"]

DEAL, CONTACT = 2, 3
LOSS_REASON_FIELD = "UF_CRM_CB_LOSS_REASON"
FOLDER_EXISTS = "DISK_OBJ_22000"
MESSAGE_SENT = "sent"
WORK_DAY_STATES = {"OPENED": "on_shift", "PAUSED": "paused", "CLOSED": "off", "EXPIRED": "off"}
"""timeman.status STATUS → the operator status lead distribution uses (research/bitrix24.md, Work day)."""
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_PREFIXED = re.compile(r"^C(\d+):")


def reference_for(idempotency_key: str) -> str:
    return "cb-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]


def _id(value: object, path: str) -> int:
    return platform_id(value, path, not_found_code="NOT_FOUND")


def _minor(amount: Any) -> int | None:
    if amount in (None, ""):
        return None
    return int((Decimal(str(amount)) * 100).to_integral_value())


def check_stage(stage: StageRef) -> int:
    """The category of `stage`, refusing a stage id that belongs to another category (no call made)."""
    if not re.fullmatch(r"\d{1,9}", stage.pipeline_id or ""):
        raise _invalid("stage.pipeline_id", f"a category id is required (got {stage.pipeline_id!r})")
    category = int(stage.pipeline_id)
    match = _PREFIXED.match(stage.stage_id or "")
    owner = int(match.group(1)) if match else 0
    if not stage.stage_id or owner != category:
        raise _invalid(
            "stage.stage_id",
            f"{stage.stage_id!r} is not a stage of category {category} (C{category}:… expected)",
        )
    return category


class Bitrix24Client(LinksMixin):
    """The `CrmClient` of one Bitrix24 portal; build one per portal and process."""

    def __init__(
        self,
        transport: B24Transport,
        *,
        timezone: str,
        created: CreatedStore | None = None,
        phone_region: str = "RU",
        folder_prefix: str = "Пациент",
        on_write: Callable[[Deal], None] | None = None,
    ) -> None:
        """`on_write` sees each deal as the platform answered our write (the loop guard's snapshot)."""
        self.transport = transport
        self.tz = ZoneInfo(timezone)
        self.created: CreatedStore = created if created is not None else MemoryCreatedStore()
        self.phone_region = phone_region
        self.folder_prefix = folder_prefix
        self._on_write = on_write
        self._field_defs: dict[str, FieldDef] | None = None
        self._stages: dict[int, dict[str, str]] = {}
        self._storage_id: str | None = None
        self._folders: dict[int, str] = {}

    def _call(self, method: str, params: Mapping[str, Any], *, read: bool = False) -> Any:
        return self.transport.call(method, params, read=read).get("result")

    def _write(self, params: dict[str, Any]) -> dict[str, Any]:
        # Our own writes carry auth_connector so the offline queue does not echo them back (Facts 13).
        if self.transport.auth_connector:
            params["auth_connector"] = self.transport.auth_connector
        return params

    # --- exactly-once creates ---------------------------------------------------------------------------

    def _create_once(
        self, kind: str, key: str, post: Callable[[], str], read_back: Callable[[float], str | None]
    ) -> str:
        store_key = f"{kind}:{_text(key, 'idempotency_key')}"
        known = self.created.get(store_key)
        if known and not known.startswith(PENDING):
            return known
        since = pending_since(known)
        if since is not None:
            found = read_back(since)
            if found:
                self.created.set(store_key, found)
                return found
        started = now()
        self.created.set(store_key, f"{PENDING}{started}")
        try:
            new_id = post()
        except RetryLater:
            found = read_back(started)
            if found:
                self.created.set(store_key, found)
                return found
            raise
        except Rejected:
            self.created.delete(store_key)
            raise
        self.created.set(store_key, new_id)
        return new_id

    # --- fields -----------------------------------------------------------------------------------------

    def field_defs(self) -> dict[str, FieldDef]:
        if self._field_defs is None:
            result = self._call(
                "crm.item.fields", {"entityTypeId": DEAL, "useOriginalUfNames": "Y"}, read=True
            )
            self._field_defs = parse_field_defs(result or {})
        return self._field_defs

    def _encode(self, fields: Mapping[str, FieldValue], path: str) -> dict[str, Any]:
        defs = self.field_defs()
        out: dict[str, Any] = {}
        for key, value in fields.items():
            if not key.startswith("UF_CRM_") or key not in defs:
                raise Rejected(
                    f"{path}.{key}: unknown Bitrix24 deal field",
                    status=422,
                    code="unknown_field",
                    path=f"{path}.{key}",
                )
            out[key] = encode_value(defs[key], value, f"{path}.{key}")
        return out

    # --- deals ------------------------------------------------------------------------------------------

    def _item(self, entity: int, item_id: int) -> dict[str, Any]:
        result = self._call(
            "crm.item.get", {"entityTypeId": entity, "id": item_id, "useOriginalUfNames": "Y"}, read=True
        )
        return dict((result or {}).get("item") or {})

    def _parse_deal(self, item: Mapping[str, Any]) -> Deal:
        defs = self.field_defs()
        fields = {
            key: decode_value(defs.get(key), value)
            for key, value in item.items()
            if key.startswith("UF_CRM_") and key != LOSS_REASON_FIELD
        }
        created = item.get("createdTime")
        return Deal(
            id=str(item["id"]),
            name=str(item.get("title") or ""),
            stage=StageRef(str(item.get("categoryId") or 0), str(item.get("stageId") or "")),
            responsible_user_id=str(item["assignedById"]) if item.get("assignedById") else None,
            price_minor=_minor(item.get("opportunity")),
            fields=fields,
            contact_ids=tuple(str(c) for c in item.get("contactIds") or ()),
            is_closed=item.get("closed") in ("Y", True),
            created_at=datetime.fromisoformat(created) if isinstance(created, str) and created else None,
            loss_reason=str(item.get(LOSS_REASON_FIELD) or "") or None,
        )

    def get_deal(self, deal_id: str) -> Deal:
        return self._parse_deal(self._item(DEAL, _id(deal_id, "deal_id")))

    def _written(self, result: Any) -> None:
        item = (result or {}).get("item") if isinstance(result, Mapping) else None
        if self._on_write is not None and isinstance(item, Mapping) and item.get("id"):
            self._on_write(self._parse_deal(item))

    def _update(self, deal_id: int, fields: Mapping[str, Any]) -> None:
        self._written(
            self._call(
                "crm.item.update",
                self._write(
                    {"entityTypeId": DEAL, "id": deal_id, "fields": dict(fields), "useOriginalUfNames": "Y"}
                ),
            )
        )

    def update_deal_fields(self, deal_id: str, fields: dict[str, FieldValue]) -> None:
        item_id = _id(deal_id, "deal_id")
        encoded = self._encode(fields, "fields")
        if encoded:
            self._update(item_id, encoded)

    def update_deals(self, updates: Sequence[DealUpdate]) -> None:
        """One `crm.item.update` per deal, ≤ 50 to a batch; every refused command is reported."""
        merged: dict[int, dict[str, Any]] = {}
        for i, update in enumerate(updates):
            item_id = _id(update.deal_id, f"updates[{i}].deal_id")
            merged.setdefault(item_id, {}).update(self._encode(update.fields, f"updates[{i}].fields"))
            if update.responsible_user_id is not None:
                self._check_user(update.responsible_user_id, f"updates[{i}].responsible_user_id")
                merged[item_id]["assignedById"] = int(update.responsible_user_id)
        commands = [
            (
                f"d{item_id}",
                "crm.item.update",
                self._write(
                    {"entityTypeId": DEAL, "id": item_id, "fields": fields, "useOriginalUfNames": "Y"}
                ),
            )
            for item_id, fields in merged.items()
            if fields
        ]
        result = self.transport.batch_many(commands)
        for value in result.result.values():
            self._written(value)
        refused(result, len(commands), "deal updates", "updates")

    def _stage_semantics(self, category: int) -> dict[str, str]:
        if category not in self._stages:
            entity = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
            rows = self._call("crm.status.list", {"filter": {"ENTITY_ID": entity}}, read=True) or []
            self._stages[category] = {str(r["STATUS_ID"]): str(r.get("SEMANTICS") or "") for r in rows}
        return self._stages[category]

    def list_pipelines(self) -> list[Pipeline]:
        """Deal categories (`crm.category.list`, entityTypeId 2) with their stages (`crm.status.list`,
        DEAL_STAGE / DEAL_STAGE_<id>), as `move_deal` takes them: pipeline = category id."""
        answer = self._call("crm.category.list", {"entityTypeId": 2}, read=True) or {}
        categories = sorted(answer.get("categories") or [], key=lambda c: int(c.get("sort") or 0))
        pipelines = []
        for category in categories:
            cid = int(category["id"])
            entity = "DEAL_STAGE" if cid == 0 else f"DEAL_STAGE_{cid}"
            rows = self._call("crm.status.list", {"filter": {"ENTITY_ID": entity}}, read=True) or []
            self._stages[cid] = {str(r["STATUS_ID"]): str(r.get("SEMANTICS") or "") for r in rows}
            stages = tuple(Stage(str(r["STATUS_ID"]), str(r.get("NAME") or r["STATUS_ID"])) for r in rows)
            pipelines.append(Pipeline(str(cid), str(category.get("name") or cid), stages))
        return pipelines

    def failure_stages(self) -> dict[str, list[str]]:
        """Per deal category, its stages with SEMANTICS "F": the only ones `move_deal` closes with a loss
        reason. Bitrix24 keeps no list of loss reasons (the reason is the text of our own field), so this is
        what a journey rule that closes with a reason can be checked against when it is saved."""
        return {
            pipeline.id: [s.id for s in pipeline.stages if self._stages[int(pipeline.id)].get(s.id) == "F"]
            for pipeline in self.list_pipelines()
        }

    def move_deal(self, deal_id: str, stage: StageRef, *, loss_reason: str | None = None) -> None:
        item_id = _id(deal_id, "deal_id")
        category = check_stage(stage)
        if loss_reason is not None:
            _text(loss_reason, "loss_reason")
        stages = self._stage_semantics(category)
        if stage.stage_id not in stages:
            raise _invalid("stage.stage_id", f"{stage.stage_id!r} is not a stage of category {category}")
        if loss_reason is not None and stages[stage.stage_id] != "F":
            raise _invalid("loss_reason", "only a failure stage takes a loss reason")
        fields: dict[str, Any] = {"categoryId": category, "stageId": stage.stage_id}
        if LOSS_REASON_FIELD in self.field_defs():
            fields[LOSS_REASON_FIELD] = loss_reason or ""
        elif loss_reason is not None:
            raise _invalid("loss_reason", f"{LOSS_REASON_FIELD} is not installed on this portal")
        self._update(item_id, fields)

    def set_responsible(self, deal_id: str, user_id: str) -> None:
        item_id = _id(deal_id, "deal_id")
        self._check_user(user_id, "user_id")
        self._update(item_id, {"assignedById": int(user_id)})

    def _find_origin(self, entity: int, ref: str) -> str | None:
        result = self._call(
            "crm.item.list",
            {"entityTypeId": entity, "filter": {"=originId": ref}, "select": ["id"]},
            read=True,
        )
        items = (result or {}).get("items") or []
        return str(items[0]["id"]) if items else None

    def _add_item(self, entity: int, fields: dict[str, Any], ref: str) -> str:
        found = self._find_origin(entity, ref)
        if found:
            return found
        try:
            result = self._call(
                "crm.item.add",
                self._write(
                    {"entityTypeId": entity, "fields": {**fields, "originId": ref}, "useOriginalUfNames": "Y"}
                ),
            )
        except RetryLater:
            # The add may have landed with its answer lost: the reference tells.
            found = self._find_origin(entity, ref)
            if found:
                return found
            raise
        return str(result["item"]["id"])

    def create_deal(self, deal: NewDeal, *, idempotency_key: str) -> Deal:
        name = _text(deal.name, "name")
        category = check_stage(deal.stage)
        price = deal.price_minor
        if price is not None and (isinstance(price, bool) or not isinstance(price, int) or price < 0):
            raise _invalid("price_minor", f"a non-negative integer is required (got {price!r})")
        fields: dict[str, Any] = {
            "title": name,
            "categoryId": category,
            "stageId": deal.stage.stage_id,
            **self._encode({k: v for k, v in deal.fields.items() if v is not None}, "fields"),
        }
        if deal.contact_ids:
            fields["contactIds"] = [_id(c, f"contact_ids[{i}]") for i, c in enumerate(deal.contact_ids)]
        if deal.responsible_user_id:
            fields["assignedById"] = _id(deal.responsible_user_id, "responsible_user_id")
        if price is not None:
            fields["opportunity"] = str(Decimal(price) / 100)
        item_id = self._add_item(DEAL, fields, reference_for(_text(idempotency_key, "idempotency_key")))
        return self.get_deal(item_id)

    # --- contacts ---------------------------------------------------------------------------------------

    def _contacts(self, ids: Sequence[int]) -> list[Contact]:
        rows = (
            self._call(
                "crm.contact.list",
                {
                    "filter": {"@ID": list(ids)},
                    "select": ["ID", "NAME", "LAST_NAME", "PHONE", "EMAIL", "ASSIGNED_BY_ID", "COMPANY_ID"],
                },
                read=True,
            )
            or []
        )
        out = []
        for row in rows:
            phones = [normalize_phone(str(p.get("VALUE")), self.phone_region) for p in row.get("PHONE") or ()]
            out.append(
                Contact(
                    id=str(row["ID"]),
                    name=" ".join(str(row.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip(),
                    phones=tuple(dict.fromkeys(p for p in phones if p)),
                    emails=tuple(str(e.get("VALUE")) for e in row.get("EMAIL") or ()),
                    responsible_user_id=str(row["ASSIGNED_BY_ID"]) if row.get("ASSIGNED_BY_ID") else None,
                    company_id=_linked(row.get("COMPANY_ID")),
                )
            )
        return sorted(out, key=lambda c: int(c.id))

    def find_contacts_by_phone(self, phone_e164: str) -> list[Contact]:
        if not isinstance(phone_e164, str) or not _E164.match(phone_e164):
            raise _invalid("phone", f"an E.164 number like +79161234567 is required (got {phone_e164!r})")
        if normalize_phone(phone_e164, self.phone_region) != phone_e164:
            return []
        result = self._call(
            "crm.duplicate.findbycomm",
            {"type": "PHONE", "values": phone_forms(phone_e164)[:20], "entity_type": "CONTACT"},
            read=True,
        )
        # No match is `[]`, not `{}` (§5 Duplicates).
        ids = [int(i) for i in (result.get("CONTACT") or [])] if isinstance(result, dict) else []
        if not ids:
            return []
        return [c for c in self._contacts(ids) if phone_e164 in c.phones]

    def create_contact(self, contact: NewContact, *, idempotency_key: str) -> Contact:
        name = _text(contact.name, "name")
        phones: list[str] = []
        for raw in contact.phones:
            e164 = normalize_phone(_text(raw, "phones"), self.phone_region)
            if e164 is None:
                raise Rejected(
                    f"phones: invalid phone number {raw!r}", status=422, code="invalid_phone", path="phones"
                )
            phones.append(e164)
        emails = [_text(e, "emails").strip() for e in contact.emails]
        fm = [{"typeId": "PHONE", "valueType": "WORK", "value": p} for p in dict.fromkeys(phones)]
        fm += [{"typeId": "EMAIL", "valueType": "WORK", "value": e} for e in dict.fromkeys(emails)]
        fields: dict[str, Any] = {"name": name, "fm": fm}
        if contact.responsible_user_id:
            fields["assignedById"] = _id(contact.responsible_user_id, "responsible_user_id")
        item_id = self._add_item(CONTACT, fields, reference_for(_text(idempotency_key, "idempotency_key")))
        return self._contacts([int(item_id)])[0]

    # --- notes and tasks --------------------------------------------------------------------------------

    def _deal_exists(self, deal_id: str) -> int:
        item_id = _id(deal_id, "deal_id")
        self._item(DEAL, item_id)  # NOT_FOUND → Rejected(404)
        return item_id

    def add_note(self, deal_id: str, text: str, *, idempotency_key: str) -> NoteRef:
        item_id = self._deal_exists(deal_id)
        _text(text, "text")

        def post() -> str:
            fields = {"ENTITY_ID": item_id, "ENTITY_TYPE": "deal", "COMMENT": text}
            return str(self._call("crm.timeline.comment.add", {"fields": fields}))

        def read_back(since: float) -> str | None:
            return self._comment_read_back("deal", item_id, text, since)

        return NoteRef(self._create_once("note", idempotency_key, post, read_back), deal_id)

    def _comment_read_back(self, entity_type: str, entity_id: int, text: str, since: float) -> str | None:
        rows = (
            self._call(
                "crm.timeline.comment.list",
                {
                    "filter": {"ENTITY_ID": entity_id, "ENTITY_TYPE": entity_type},
                    "select": ["ID", "COMMENT", "CREATED"],
                },
                read=True,
            )
            or []
        )
        mine = [r for r in rows if r.get("COMMENT") == text and _after(r.get("CREATED"), since)]
        return str(mine[-1]["ID"]) if mine else None

    def create_task(self, task: NewTask, *, idempotency_key: str) -> TaskRef:
        if not isinstance(task.due_at, datetime) or task.due_at.tzinfo is None:
            raise _invalid("due_at", "a timezone-aware datetime is required")
        text = _text(task.text, "text")
        item_id = self._deal_exists(task.deal_id)
        self._check_user(task.responsible_user_id, "responsible_user_id")
        binding = f"D_{item_id}"

        def post() -> str:
            fields = {
                "TITLE": text,
                "RESPONSIBLE_ID": int(task.responsible_user_id),
                "DEADLINE": task.due_at.astimezone(self.tz).isoformat(),
                "UF_CRM_TASK": [binding],
            }
            return str(self._call("tasks.task.add", {"fields": fields})["task"]["id"])

        def read_back(since: float) -> str | None:
            result = (
                self._call(
                    "tasks.task.list",
                    {
                        "filter": {"UF_CRM_TASK": binding, "TITLE": text},
                        "select": ["ID", "TITLE", "CREATED_DATE"],
                    },
                    read=True,
                )
                or {}
            )
            mine = [t for t in result.get("tasks") or () if _after(t.get("createdDate"), since)]
            return str(mine[-1]["id"]) if mine else None

        return TaskRef(self._create_once("task", idempotency_key, post, read_back), task.deal_id)

    # --- patient messages -------------------------------------------------------------------------------

    def send_message(self, message: OutgoingMessage, *, idempotency_key: str) -> None:
        """The text into the deal's `UF_CRM_…` field that the portal's robot ("field changed") sends on;
        `bot_id` is not used. A robot only sees a change, so the same words sent again under a new key
        first clear the field. The field is also the read-back: a retry whose first answer was lost finds
        the text already there and writes nothing."""
        key = _text(idempotency_key, "idempotency_key")
        item_id = _id(message.deal_id, "deal_id")
        text = _text(message.text, "text")
        field = _text(message.text_field_id, "text_field_id")
        if not field.startswith("UF_CRM_") or field not in self.field_defs():
            raise Rejected(
                f"text_field_id: {field!r} is not a deal field of this portal",
                status=422,
                code="unknown_field",
                path="text_field_id",
            )
        value = encode_value(self.field_defs()[field], text, "text_field_id")
        store_key = f"message:{key}"
        known = self.created.get(store_key)
        if known == MESSAGE_SENT:
            return
        current = self._item(DEAL, item_id).get(field)
        if current == value and pending_since(known) is not None:
            self.created.set(store_key, MESSAGE_SENT)
            return
        if current == value:
            self._update(item_id, {field: ""})
        self.created.set(store_key, f"{PENDING}{now()}")
        try:
            self._update(item_id, {field: value})
        except Rejected:
            self.created.delete(store_key)
            raise
        self.created.set(store_key, MESSAGE_SENT)

    def add_deal_tag(self, deal_id: str, tag: str, *, tag_field_id: str | None = None) -> None:
        """Bitrix24 deals have no tags (only contacts and companies have a tag-like "source"), so a tag is a
        value of the portal's multiple string field `tag_field_id` (`UF_CRM_…`, e.g. «Теги»): the deal's
        values are read and the tag appended, so the others stay; one already there writes nothing."""
        item_id = _id(deal_id, "deal_id")
        name = _text(tag, "tag").strip()
        if tag_field_id is None:
            raise _invalid(
                "tag_field_id",
                "Bitrix24 deals have no tags: map a multiple string deal field (UF_CRM_…) that keeps them",
            )
        field = self.field_defs().get(_text(tag_field_id, "tag_field_id"))
        if field is None or not tag_field_id.startswith("UF_CRM_"):
            raise Rejected(
                f"tag_field_id: {tag_field_id!r} is not a deal field of this portal",
                status=422,
                code="unknown_field",
                path="tag_field_id",
            )
        if not field.multiple or field.type != "string":
            raise _invalid("tag_field_id", f"{tag_field_id} must be a multiple string field to hold tags")
        current = self._item(DEAL, item_id).get(tag_field_id) or []
        values = [
            str(v) for v in (current if isinstance(current, list) else [current]) if v not in (None, "")
        ]
        if name in values:
            return
        self._update(item_id, {tag_field_id: [*values, name]})

    # --- users and notifications ------------------------------------------------------------------------

    @staticmethod
    def _user(row: Mapping[str, Any]) -> CrmUser:
        name = " ".join(str(row.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
        online = row.get("IS_ONLINE")
        return CrmUser(
            id=str(row["ID"]),
            name=name or str(row.get("EMAIL") or row["ID"]),
            email=str(row["EMAIL"]) if row.get("EMAIL") else None,
            is_active=row.get("ACTIVE") in (True, "Y", "1", 1),
            is_online=None if online is None else online in ("Y", True),
        )

    def list_users(self) -> list[CrmUser]:
        rows = self.transport.pages("user.get", {"sort": "ID", "order": "ASC"}, lambda r: r or [])
        return sorted((self._user(r) for r in rows), key=lambda u: int(u.id))

    def _check_user(self, user_id: str, path: str) -> CrmUser:
        uid = _id(user_id, path) if is_platform_id(user_id) else None
        rows = self._call("user.get", {"filter": {"ID": uid}}, read=True) if uid else []
        if not rows:
            raise Rejected(f"{path}: no such user {user_id!r}", status=422, code="unknown_user", path=path)
        user = self._user(rows[0])
        if not user.is_active:
            raise Rejected(
                f"{path}: user {user_id!r} is deactivated", status=422, code="inactive_user", path=path
            )
        return user

    def notify_user(self, user_id: str, text: str, *, idempotency_key: str) -> None:
        self._check_user(user_id, "user_id")
        tag = reference_for(_text(idempotency_key, "idempotency_key"))
        self._call(
            "im.notify.system.add", {"USER_ID": int(user_id), "MESSAGE": _text(text, "text"), "TAG": tag}
        )

    # --- work day ---------------------------------------------------------------------------------------

    def work_day_states(self, user_ids: Sequence[str]) -> dict[str, str]:
        """`timeman.status` of each user (one command each, batched): OPENED → on_shift, PAUSED → paused,
        CLOSED or EXPIRED (opened on an earlier day, never closed) → off. A user the portal refuses to
        report on (no such user, no rights) is left out rather than guessed."""
        commands = [
            (f"u{_id(uid, f'user_ids[{i}]')}", "timeman.status", {"USER_ID": int(uid)})
            for i, uid in enumerate(dict.fromkeys(user_ids))
        ]
        result = self.transport.batch_many(commands)
        states: dict[str, str] = {}
        for key, value in result.result.items():
            status = str((value or {}).get("STATUS") or "")
            if status in WORK_DAY_STATES:
                states[key[1:]] = WORK_DAY_STATES[status]
        return states

    # --- files ------------------------------------------------------------------------------------------

    def storage_id(self) -> str:
        if self._storage_id is None:
            self._storage_id = str(self._call("disk.storage.getForApp", {}, read=True)["ID"])
        return self._storage_id

    def patient_folder(self, deal_id: str) -> tuple[str, str | None]:
        """(folder id, link) of the deal's folder in the app storage, created once (seed 001)."""
        item_id = self._deal_exists(deal_id)
        name = f"{self.folder_prefix} {item_id}"
        storage = self.storage_id()
        try:
            folder = self._call("disk.storage.addfolder", {"id": storage, "data": {"NAME": name}})
        except Rejected as exc:
            if exc.code != FOLDER_EXISTS:
                raise
            found = (
                self._call("disk.storage.getchildren", {"id": storage, "filter": {"NAME": name}}, read=True)
                or []
            )
            if not found:
                raise
            folder = found[0]
        self._folders[item_id] = str(folder["ID"])
        return str(folder["ID"]), folder.get("DETAIL_URL")

    def attach_file(
        self, deal_id: str, name: str, content: bytes, mime_type: str, *, idempotency_key: str
    ) -> FileRef:
        item_id = _id(deal_id, "deal_id")
        _text(name, "name")
        if not content:
            raise _invalid("content", "an empty file is not attached")
        folder = self._folders.get(item_id) or self.patient_folder(deal_id)[0]
        urls: dict[str, str | None] = {}

        def find() -> str | None:
            rows = (
                self._call("disk.folder.getchildren", {"id": folder, "filter": {"NAME": name}}, read=True)
                or []
            )
            if rows:
                urls[str(rows[0]["ID"])] = rows[0].get("DETAIL_URL")
                return str(rows[0]["ID"])
            return None

        def post() -> str:
            try:
                row = self._call(
                    "disk.folder.uploadfile",
                    {
                        "id": folder,
                        "data": {"NAME": name},
                        "fileContent": [name, base64.b64encode(content).decode()],
                        "generateUniqueName": False,
                    },
                )
            except Rejected as exc:
                found = find() if exc.code == FOLDER_EXISTS else None
                if found:
                    return found
                raise
            urls[str(row["ID"])] = row.get("DETAIL_URL")
            return str(row["ID"])

        file_id = self._create_once("file", idempotency_key, post, lambda _since: find())
        return FileRef(file_id, deal_id, name, urls.get(file_id))


def _linked(value: Any) -> str | None:
    """A link id as Bitrix24 lists it: 0 or empty means no link."""
    return str(value) if value not in (None, "", "0", 0) else None


def _after(value: Any, since: float) -> bool:
    if not since:
        return True
    try:
        return datetime.fromisoformat(str(value)).timestamp() >= since - 5
    except ValueError:
        return True
