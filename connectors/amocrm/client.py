"""`AmoCrmClient`: `CrmClient` on amoCRM / Kommo REST v4 (research/amocrm.md §5; issue "amoCRM connector").

Deals and contacts live here; notes, tasks, users, notifications and files in `activity.py`; auth, error
mapping and paging in `transport.py`; custom-field encoding in `fields.py`.

Creating things exactly once. amoCRM has no idempotency (`request_id` is only echoed), so every create
goes through `_create_once`: an id remembered for the key is returned as is; a deal or contact is first
looked up on the platform by the reference it carries (see `reference_fields`); a create whose outcome
is unknown (timeout, 5xx, 429: whether a 429 write was applied is undocumented, §6) is resent only
after a read-back misses it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from ..arguments import invalid as _invalid
from ..arguments import platform_id
from ..arguments import required_text as _text
from ..base import TokenSource
from ..created import PENDING, CreatedStore, MemoryCreatedStore, now, pending_since
from ..errors import Rejected, RetryLater
from ..http import PortalHttp
from ..types import (
    Contact,
    Deal,
    DealUpdate,
    FieldValue,
    NewContact,
    NewDeal,
    OAuthToken,
    OutgoingMessage,
    Pipeline,
    Stage,
    StageRef,
)
from .activity import ActivityMixin
from .const import BATCH_SIZE, COMPLEX_FIELDS_MAX, ENTITY_TYPE_LEAD, LOST_STATUS_ID
from .fields import FieldDef, FieldDefsCache, encode_value, parse_field_defs
from .links import LinksMixin
from .schemas import embedded, normalize_phone, parse_contact, parse_deal, phone_values
from .transport import AmoTransport

__all__ = ["MESSAGE_SENT", "SALESBOT_RUN", "AmoCrmClient", "reference_for"]

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
SALESBOT_RUN = "/api/v2/salesbot/run"
MESSAGE_SENT = "sent"


def reference_for(idempotency_key: str) -> str:
    """The searchable token a created deal or contact carries: short, and free of `query` syntax."""
    return "cb-" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:20]


def _id(value: object, path: str) -> int:
    return platform_id(value, path, not_found_code="NotFound")


def _throttled(exc: RetryLater) -> bool:
    """A 429 means amo did not take the request (§6), unlike a timeout or a 5xx, whose outcome is unknown."""
    return "HTTP 429" in str(exc) or "answered 429" in str(exc) or "rate limit" in str(exc)


class AmoCrmClient(LinksMixin, ActivityMixin):
    """The `CrmClient` of one amoCRM account. Build one per portal and process; it caches field
    definitions, loss reasons and the drive host for its lifetime."""

    def __init__(
        self,
        *,
        base_url: str,
        tokens: TokenSource,
        refresh: Callable[[OAuthToken], OAuthToken] | None,
        http: PortalHttp,
        timezone: str,
        on_blocked: Callable[[str], None] | None = None,
        field_codes: Mapping[str, str] | None = None,
        reference_fields: Mapping[str, str] | None = None,
        created: CreatedStore | None = None,
        phone_region: str = "RU",
        on_write: Callable[[str, str, int], None] | None = None,
        field_cache: FieldDefsCache | None = None,
    ) -> None:
        """`field_codes`: our field names → amoCRM field id or `code` (ids are always accepted as keys).
        `reference_fields`: ``{"leads": id, "contacts": id}`` of text fields that hold the create
        reference; without one the reference goes into a tag, and the read-back relies on `query`
        searching tags, which the docs do not promise (configure the fields at install).
        `on_write(entity, id, updated_at)` hears the `updated_at` amo gave each of our lead writes, so the
        webhook echoing it can be told apart from a person's edit (the loop guard)."""
        self.transport = AmoTransport(
            base_url=base_url, tokens=tokens, refresh=refresh, http=http, on_blocked=on_blocked
        )
        self.tz = ZoneInfo(timezone)
        self.aliases = dict(field_codes or {})
        self.reference_fields = dict(reference_fields or {})
        self.created: CreatedStore = created if created is not None else MemoryCreatedStore()
        self.phone_region = phone_region
        self.on_write = on_write
        self._field_defs: dict[str, FieldDef] | None = None
        self._field_cache = field_cache
        self._defs_from_cache = False
        self._loss_reasons: dict[str, int] | None = None
        self._loss_reason_names: list[str] = []
        self._drive_url: str | None = None
        self._user_cache: dict[str, tuple[bool, float]] = {}

    @property
    def blocked(self) -> bool:
        return self.transport.blocked

    # --- exactly-once creates -------------------------------------------------------------------------

    def _create_once(
        self,
        kind: str,
        key: str,
        post: Callable[[], str],
        read_back: Callable[[float], str | None],
        *,
        look_first: bool,
    ) -> str:
        _text(key, "idempotency_key")
        store_key = f"{kind}:{key}"
        known = self.created.get(store_key)
        if known and not known.startswith(PENDING):
            return known
        since = pending_since(known)
        if look_first or since is not None:
            found = read_back(since if since is not None else 0.0)
            if found:
                self.created.set(store_key, found)
                return found
        started = now()
        self.created.set(store_key, f"{PENDING}{started}")
        for attempt in (1, 2):
            try:
                new_id = post()
            except RetryLater:
                if attempt == 2:
                    raise
                found = read_back(started)
                if found:
                    self.created.set(store_key, found)
                    return found
                continue  # the first try provably did not land: resend once
            except Rejected:
                self.created.delete(store_key)
                raise
            self.created.set(store_key, new_id)
            return new_id
        raise AssertionError("unreachable")

    # --- fields -----------------------------------------------------------------------------------------

    def field_defs(self) -> dict[str, FieldDef]:
        if self._field_defs is None and self._field_cache is not None:
            self._field_defs = self._field_cache.get(self.transport.base_url)
            self._defs_from_cache = self._field_defs is not None
        if self._field_defs is None:
            self._field_defs = self._fetch_field_defs()
        return self._field_defs

    def _fetch_field_defs(self) -> dict[str, FieldDef]:
        pages = self.transport.iter_pages("/api/v4/leads/custom_fields", "custom_fields")
        defs = parse_field_defs(list(pages))
        self._defs_from_cache = False
        if self._field_cache is not None:
            self._field_cache.put(self.transport.base_url, defs)
        return defs

    def _field(self, key: str, path: str) -> FieldDef:
        defs = self.field_defs()
        target = self.aliases.get(key, key)
        if target in defs:
            return defs[target]
        for field in defs.values():
            if field.code and field.code == target:
                return field
        raise Rejected(
            f"{path}: unknown amoCRM lead field {key!r}", status=422, code="unknown_field", path=path
        )

    def _encode(self, fields: Mapping[str, FieldValue], path: str) -> list[dict[str, Any]]:
        if not fields:
            return []
        try:
            return self._encode_with_defs(fields, path)
        except Rejected:
            if not self._defs_from_cache:
                raise
            # The shared copy may predate a field or option created since: read the definitions again.
            self._field_defs = self._fetch_field_defs()
            return self._encode_with_defs(fields, path)

    def _encode_with_defs(self, fields: Mapping[str, FieldValue], path: str) -> list[dict[str, Any]]:
        encoded: dict[str, dict[str, Any]] = {}
        for key, value in fields.items():
            field = self._field(key, f"{path}.{key}")
            encoded[field.id] = encode_value(field, value, self.tz, f"{path}.{key}")
        return list(encoded.values())

    # --- deals ------------------------------------------------------------------------------------------

    def get_deal(self, deal_id: str) -> Deal:
        lead = self.transport.get_json(
            f"/api/v4/leads/{_id(deal_id, 'deal_id')}", {"with": "contacts,loss_reason"}
        )
        if lead is None:
            raise Rejected(f"deal_id: no such deal {deal_id!r}", status=404, code="NotFound", path="deal_id")
        return parse_deal(lead, self.tz, self.aliases)

    def list_pipelines(self) -> list[Pipeline]:
        """`GET /api/v4/leads/pipelines` (§5.1): every pipeline with its statuses, 142/143 included."""
        body = self.transport.get_json("/api/v4/leads/pipelines") or {}
        pipelines = []
        for item in embedded(body, "pipelines"):
            statuses = sorted(embedded(item, "statuses"), key=lambda status: status.get("sort") or 0)
            pipelines.append(
                Pipeline(
                    id=str(item["id"]),
                    name=str(item.get("name") or item["id"]),
                    stages=tuple(Stage(str(st["id"]), str(st.get("name") or st["id"])) for st in statuses),
                )
            )
        return pipelines

    def iter_leads_updated_since(self, since: int) -> Iterator[Mapping[str, Any]]:
        """Every lead changed at or after unix time `since`, oldest change first, as amo returns them
        (§5.1 `filter[updated_at][from]`, `order[updated_at]`): the polling fallback for accounts that
        refuse webhooks."""
        params = {"filter[updated_at][from]": int(since), "order[updated_at]": "asc"}
        yield from self.transport.iter_pages("/api/v4/leads", "leads", params)

    def update_deal_fields(self, deal_id: str, fields: dict[str, FieldValue]) -> None:
        lead_id = _id(deal_id, "deal_id")
        values = self._encode(fields, "fields")
        if values:
            self._patch_lead(lead_id, {"custom_fields_values": values})

    def update_deals(self, updates: Sequence[DealUpdate]) -> None:
        merged: dict[int, dict[str, dict[str, Any]]] = {}
        responsible: dict[int, int] = {}
        for i, update in enumerate(updates):
            lead_id = _id(update.deal_id, f"updates[{i}].deal_id")
            values = merged.setdefault(lead_id, {})
            for item in self._encode(update.fields, f"updates[{i}].fields"):
                values[str(item["field_id"])] = item
            if update.responsible_user_id is not None:
                self._check_user(update.responsible_user_id, f"updates[{i}].responsible_user_id")
                responsible[lead_id] = int(update.responsible_user_id)
        batch = [
            {
                "id": lead_id,
                **({"custom_fields_values": list(v.values())} if v else {}),
                **({"responsible_user_id": responsible[lead_id]} if lead_id in responsible else {}),
            }
            for lead_id, v in merged.items()
            if v or lead_id in responsible
        ]
        for start in range(0, len(batch), BATCH_SIZE):
            self._patch_batch(batch[start : start + BATCH_SIZE])

    def _patch_batch(self, batch: list[dict[str, Any]]) -> None:
        """PATCH /api/v4/leads; on a gateway timeout resend in halves (§5.1: "on 504, resend smaller")."""
        if len(batch) == 1:
            # One lead is an idempotent write: let PortalHttp retry it on 5xx.
            self._heard(self.transport.send_json("PATCH", "/api/v4/leads", batch, idempotent=True))
            return
        try:
            # Not retried whole by PortalHttp: a batch that timed out is better resent smaller.
            self._heard(self.transport.send_json("PATCH", "/api/v4/leads", batch, idempotent=False))
        except RetryLater as exc:
            if _throttled(exc):
                raise
            half = len(batch) // 2
            self._patch_batch(batch[:half])
            self._patch_batch(batch[half:])

    def loss_reasons(self) -> list[str]:
        """The account's loss reasons by name: what a rule may name (move_deal matches them, case aside)."""
        self._loss_reason_id_of("")
        return list(self._loss_reason_names)

    def _loss_reason_id_of(self, text: str) -> int | None:
        if self._loss_reasons is None:
            items = list(self.transport.iter_pages("/api/v4/leads/loss_reasons", "loss_reasons"))
            self._loss_reason_names = [str(item.get("name")).strip() for item in items]
            self._loss_reasons = {str(item.get("name")).strip().casefold(): int(item["id"]) for item in items}
        return self._loss_reasons.get(text.strip().casefold())

    def _loss_reason_id(self, text: str) -> int:
        found = self._loss_reason_id_of(text)
        if found is None:
            raise Rejected(
                f"loss_reason: {text!r} is not a loss reason of this account",
                status=422,
                code="unknown_loss_reason",
                path="loss_reason",
            )
        return found

    def move_deal(self, deal_id: str, stage: StageRef, *, loss_reason: str | None = None) -> None:
        lead_id = _id(deal_id, "deal_id")
        body: dict[str, Any] = {
            "pipeline_id": _id(stage.pipeline_id, "stage.pipeline_id"),
            "status_id": _id(stage.stage_id, "stage.stage_id"),
        }
        if loss_reason is not None:
            _text(loss_reason, "loss_reason")
            if stage.stage_id != LOST_STATUS_ID:
                raise _invalid("loss_reason", f"only the lost stage ({LOST_STATUS_ID}) takes a loss reason")
            body["loss_reason_id"] = self._loss_reason_id(loss_reason)
        self._patch_lead(lead_id, body)

    def set_responsible(self, deal_id: str, user_id: str) -> None:
        lead_id = _id(deal_id, "deal_id")
        self._check_user(user_id, "user_id")
        self._patch_lead(lead_id, {"responsible_user_id": int(user_id)})

    # --- patient messages -----------------------------------------------------------------------------

    def send_message(self, message: OutgoingMessage, *, idempotency_key: str) -> None:
        """The text into the lead field the Salesbot reads (`{{lead.cf.<id>}}`), then
        `POST /api/v2/salesbot/run` for the lead (§7; entity_type 2 = lead; 202 with an empty body).

        amo keeps no key and has nothing to read back for a bot run, so the key is recorded here: done
        after the 202, pending while the run is in flight. A run whose answer was lost (timeout, 5xx) is
        not resent blindly: the retry is refused as `outcome_unknown`, because a patient getting the same
        message twice is worse than a person checking the chat once. A throttled run (429) was not taken
        and is resent."""
        key = _text(idempotency_key, "idempotency_key")
        lead_id = _id(message.deal_id, "deal_id")
        text = _text(message.text, "text")
        _text(message.text_field_id, "text_field_id")
        if message.bot_id is None:
            raise _invalid("bot_id", "amoCRM sends patient messages through a Salesbot: bot_id is required")
        bot_id = platform_id(message.bot_id, "bot_id", not_found_code="NotFound")
        store_key = f"message:{key}"
        known = self.created.get(store_key)
        if known == MESSAGE_SENT:
            return
        if pending_since(known) is not None:
            raise Rejected(
                f"idempotency_key: the Salesbot run for {key!r} was sent and its answer lost; amoCRM cannot "
                "tell whether the bot ran, so it is not run twice (check the lead's chat)",
                status=409,
                code="outcome_unknown",
                path="idempotency_key",
            )
        field = self._field(message.text_field_id, "text_field_id")
        value = encode_value(field, text, self.tz, "text_field_id")
        self._patch_lead(lead_id, {"custom_fields_values": [value]})
        self.created.set(store_key, f"{PENDING}{now()}")
        run = [{"bot_id": bot_id, "entity_id": lead_id, "entity_type": ENTITY_TYPE_LEAD}]
        try:
            self.transport.send_json("POST", SALESBOT_RUN, run)
        except Rejected as exc:
            self.created.delete(store_key)
            if exc.status == 404:
                raise Rejected(
                    f"bot_id: no Salesbot {message.bot_id!r} in this account",
                    status=404,
                    code=exc.code or "NotFound",
                    path="bot_id",
                ) from None
            raise
        except RetryLater as exc:
            if _throttled(exc):
                self.created.delete(store_key)
            raise
        self.created.set(store_key, MESSAGE_SENT)

    def add_deal_tag(self, deal_id: str, tag: str, *, tag_field_id: str | None = None) -> None:
        """`PATCH /api/v4/leads` with `tags_to_add` (§5.1): `_embedded.tags` would replace every tag the lead
        has, including those other integrations and people set; amo creates a tag name it does not know."""
        lead_id = _id(deal_id, "deal_id")
        name = _text(tag, "tag")
        self._patch_batch([{"id": lead_id, "tags_to_add": [{"name": name.strip()}]}])

    def _patch_lead(self, lead_id: int, body: dict[str, Any]) -> None:
        self._heard(self.transport.send_json("PATCH", f"/api/v4/leads/{lead_id}", body, idempotent=True))

    def _heard(self, answer: Any) -> None:
        """Pass on the `updated_at` of each lead in a PATCH answer (one lead, or `_embedded.leads`)."""
        if self.on_write is None or not isinstance(answer, Mapping):
            return
        embedded = answer.get("_embedded")
        items = embedded.get("leads") if isinstance(embedded, Mapping) else [answer]
        for item in items or []:
            if isinstance(item, Mapping) and item.get("id") is not None and item.get("updated_at"):
                self.on_write("leads", str(item["id"]), int(item["updated_at"]))

    def _reference_value(self, entity: str, ref: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """(custom field values, tags) that carry the reference of a created entity."""
        field_id = self.reference_fields.get(entity)
        if field_id:
            return [{"field_id": int(field_id), "values": [{"value": ref}]}], []
        return [], [{"name": ref}]

    def _find_by_reference(self, entity: str, ref: str) -> Mapping[str, Any] | None:
        params = {"query": ref}
        if entity == "leads":
            params["with"] = "contacts"
        field_id = self.reference_fields.get(entity)
        for item in self.transport.iter_pages(f"/api/v4/{entity}", entity, params):
            carried = [str(t.get("name")) for t in embedded(item, "tags")]
            for cf in item.get("custom_fields_values") or ():
                if field_id and str(cf.get("field_id")) == field_id:
                    carried.extend(str(v.get("value")) for v in cf.get("values") or ())
            if ref in carried:
                return item
        return None

    def create_deal(self, deal: NewDeal, *, idempotency_key: str) -> Deal:
        name = _text(deal.name, "name")
        pipeline_id = _id(deal.stage.pipeline_id, "stage.pipeline_id")
        status_id = _id(deal.stage.stage_id, "stage.stage_id")
        price = deal.price_minor
        if price is not None and (isinstance(price, bool) or not isinstance(price, int) or price % 100):
            raise _invalid("price_minor", f"amoCRM keeps whole currency units; got {price!r} minor units")
        contacts = [_id(c, f"contact_ids[{i}]") for i, c in enumerate(deal.contact_ids)]
        responsible = (
            int(_id(deal.responsible_user_id, "responsible_user_id")) if deal.responsible_user_id else None
        )
        values = self._encode({k: v for k, v in deal.fields.items() if v is not None}, "fields")
        ref = reference_for(_text(idempotency_key, "idempotency_key"))
        ref_values, tags = self._reference_value("leads", ref)
        first, rest = (
            values[: COMPLEX_FIELDS_MAX - len(ref_values)],
            values[COMPLEX_FIELDS_MAX - len(ref_values) :],
        )
        lead: dict[str, Any] = {
            "name": name,
            "pipeline_id": pipeline_id,
            "status_id": status_id,
            "custom_fields_values": first + ref_values,
            "request_id": idempotency_key,
            "_embedded": {"tags": tags, **({"contacts": [{"id": contacts[0]}]} if contacts else {})},
        }
        if price is not None:
            lead["price"] = price // 100
        if responsible is not None:
            lead["responsible_user_id"] = responsible

        def post() -> str:
            created = self.transport.send_json("POST", "/api/v4/leads/complex", [lead])
            if not isinstance(created, list) or not created or "id" not in created[0]:
                raise RetryLater("amoCRM: /leads/complex answered without an id")
            return str(created[0]["id"])

        def read_back(_since: float) -> str | None:
            found = self._find_by_reference("leads", ref)
            return str(found["id"]) if found else None

        lead_id = self._create_once("deal", idempotency_key, post, read_back, look_first=True)
        if rest:
            # Over the complex endpoint's 40 values: the rest as an ordinary (idempotent) update.
            self.transport.send_json(
                "PATCH", f"/api/v4/leads/{lead_id}", {"custom_fields_values": rest}, idempotent=True
            )
        if len(contacts) > 1:
            links = [{"to_entity_id": c, "to_entity_type": "contacts"} for c in contacts[1:]]
            self.transport.send_json("POST", f"/api/v4/leads/{lead_id}/link", links, idempotent=True)
        return self.get_deal(lead_id)

    # --- contacts ---------------------------------------------------------------------------------------

    def find_contacts_by_phone(self, phone_e164: str) -> list[Contact]:
        if not isinstance(phone_e164, str) or not _E164.match(phone_e164):
            raise _invalid(
                "phone_e164", f"an E.164 number like +79161234567 is required (got {phone_e164!r})"
            )
        if normalize_phone(phone_e164, self.phone_region) != phone_e164:
            return []  # E.164-shaped but not a real number: nothing stored can normalise to it
        # amoCRM has no phone filter (§5.3): search the national digits, which every way of typing the
        # number contains, then keep exact matches after normalising.
        import phonenumbers

        national = str(phonenumbers.parse(phone_e164).national_number)
        found = []
        for item in self.transport.iter_pages("/api/v4/contacts", "contacts", {"query": national}):
            phones = {normalize_phone(p, self.phone_region) for p in phone_values(item)}
            if phone_e164 in phones:
                found.append(parse_contact(item))
        return sorted(found, key=lambda c: int(c.id))

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
        ref = reference_for(_text(idempotency_key, "idempotency_key"))
        ref_values, tags = self._reference_value("contacts", ref)
        values: list[dict[str, Any]] = []
        if phones:
            values.append(
                {
                    "field_code": "PHONE",
                    "values": [{"value": p, "enum_code": "WORK"} for p in dict.fromkeys(phones)],
                }
            )
        if emails:
            values.append(
                {
                    "field_code": "EMAIL",
                    "values": [{"value": e, "enum_code": "WORK"} for e in dict.fromkeys(emails)],
                }
            )
        body: dict[str, Any] = {
            "name": name,
            "custom_fields_values": values + ref_values,
            "request_id": idempotency_key,
            "_embedded": {"tags": tags},
        }
        if contact.responsible_user_id:
            body["responsible_user_id"] = _id(contact.responsible_user_id, "responsible_user_id")

        def post() -> str:
            created = embedded(self.transport.send_json("POST", "/api/v4/contacts", [body]), "contacts")
            if not created or "id" not in created[0]:
                raise RetryLater("amoCRM: POST /contacts answered without an id")
            return str(created[0]["id"])

        def read_back(_since: float) -> str | None:
            found = self._find_by_reference("contacts", ref)
            return str(found["id"]) if found else None

        contact_id = self._create_once("contact", idempotency_key, post, read_back, look_first=True)
        return self.get_contact(contact_id)
