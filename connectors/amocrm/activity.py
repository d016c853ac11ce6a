"""Notes, tasks, users, notifications and files of `AmoCrmClient` (research/amocrm.md §5.3-5.4).

- Notes are `extended_service_message` with `is_need_to_trigger_digital_pipeline: false`, so our own
  notes never fire the account's Digital Pipeline triggers (§3).
- Tasks need an aware `due_at`; `complete_till` is a unix time, so the instant survives any timezone.
- amoCRM has no notification API. `notify_user` creates a task for the user due now, with no entity:
  tasks.api documents `entity_id`/`entity_type` as optional (§5.3), so no deal is needed.
- Users are admin-only (§5.4): a 403 from `GET /users` is `Rejected` ("admin only"). Checks that a user
  exists and is active use `GET /users/{id}` and are skipped when the token is not an admin's.
- Files go to the account's drive (`GET /account?with=drive_url`, an upload session, parts to
  `upload_url`/`next_url`) and are attached with an `attachment` note (§5.4).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..arguments import invalid as _invalid
from ..arguments import platform_id
from ..arguments import required_text as _nonempty
from ..created import PENDING, CreatedStore, now
from ..errors import Rejected, RetryLater
from ..types import CrmUser, FileRef, NewNote, NewTask, NoteRef, TaskRef
from .const import BATCH_SIZE, NOTE_ATTACHMENT, NOTE_SERVICE, SERVICE_NAME, TASK_TYPE_FOLLOW_UP
from .schemas import embedded, parse_user

if TYPE_CHECKING:
    from .transport import AmoTransport

__all__ = ["ActivityMixin"]

USER_CACHE_S = 300.0
# A read-back looks this far before the first attempt, for clock skew between us and the platform.
READ_BACK_SKEW_S = 120


def _lead_id(value: object, path: str = "deal_id") -> int:
    return platform_id(value, path, not_found_code="NotFound")


class ActivityMixin:
    transport: AmoTransport
    _user_cache: dict[str, tuple[bool, float]]
    _drive_url: str | None
    created: CreatedStore

    def _create_once(self, kind: str, key: str, post: Any, read_back: Any, *, look_first: bool) -> str:
        raise NotImplementedError

    # --- users ------------------------------------------------------------------------------------------

    def list_users(self) -> list[CrmUser]:
        try:
            users = [parse_user(u) for u in self.transport.iter_pages("/api/v4/users", "users")]
        except Rejected as exc:
            if exc.status == 403 and exc.code != "blocked":
                raise Rejected(
                    "amoCRM lists users to admins only (403)",
                    status=403,
                    code="admin_only",
                    path="/api/v4/users",
                ) from None
            raise
        return sorted(users, key=lambda u: int(u.id))

    def _check_user(self, user_id: str, path: str) -> int:
        """The user's id if it exists and is active; Rejected otherwise. Cached for a few minutes."""
        uid = _lead_id(user_id, path)
        cached = self._user_cache.get(user_id)
        if cached is None or time.monotonic() - cached[1] > USER_CACHE_S:
            try:
                body = self.transport.get_json(f"/api/v4/users/{uid}")
            except Rejected as exc:
                if exc.status == 403 and exc.code != "blocked":
                    return uid  # not an admin's token: the platform validates the id itself
                if exc.status == 404:
                    raise Rejected(
                        f"{path}: no such user {user_id!r}", status=404, code="NotFound", path=path
                    ) from None
                raise
            if body is None:
                raise Rejected(f"{path}: no such user {user_id!r}", status=404, code="NotFound", path=path)
            cached = (parse_user(body).is_active, time.monotonic())
            self._user_cache[user_id] = cached
        if not cached[0]:
            raise _invalid(path, f"user {user_id!r} is deactivated")
        return uid

    # --- notes ------------------------------------------------------------------------------------------

    def _notes_since(
        self, entity_id: int, note_type: str, since: float, entity: str = "leads"
    ) -> list[Mapping[str, Any]]:
        params = {
            "filter[note_type]": note_type,
            "filter[updated_at][from]": max(0, int(since) - READ_BACK_SKEW_S),
        }
        return list(self.transport.iter_pages(f"/api/v4/{entity}/{entity_id}/notes", "notes", params))

    def _post_note(self, lead_id: int, note: dict[str, Any]) -> str:
        body = self.transport.send_json("POST", f"/api/v4/leads/{lead_id}/notes", [note])
        created = embedded(body, "notes")
        if not created or "id" not in created[0]:
            raise RetryLater("amoCRM: POST notes answered without an id")
        return str(created[0]["id"])

    def add_note(self, deal_id: str, text: str, *, idempotency_key: str) -> NoteRef:
        lead_id = _lead_id(deal_id)
        _nonempty(text, "text")
        note = {
            "note_type": NOTE_SERVICE,
            "params": {"service": SERVICE_NAME, "text": text},
            "request_id": idempotency_key,
            "is_need_to_trigger_digital_pipeline": False,
        }

        def read_back(since: float) -> str | None:
            # Notes carry nothing searchable; a note with this text on this deal since the first attempt
            # is taken as ours (only used when the outcome of that attempt is unknown).
            for item in self._notes_since(lead_id, NOTE_SERVICE, since):
                if (item.get("params") or {}).get("text") == text:
                    return str(item["id"])
            return None

        note_id = self._create_once(
            "note", idempotency_key, lambda: self._post_note(lead_id, note), read_back, look_first=False
        )
        return NoteRef(id=note_id, deal_id=str(lead_id))

    def add_notes(self, notes: Sequence[NewNote]) -> list[NoteRef]:
        """Many feed notes, 50 per `POST /api/v4/leads/notes` (§5.3: `entity_id` in each item).

        Exactly once, as `add_note`: each key is marked pending before its batch goes out, so if the batch's
        outcome is unknown (timeout, 5xx, 429) the `RetryLater` propagates and the retry takes a note still
        pending through `add_note`, which reads the deal's feed back before any resend."""
        checked = []
        for i, note in enumerate(notes):
            _nonempty(note.idempotency_key, f"notes[{i}].idempotency_key")
            _nonempty(note.text, f"notes[{i}].text")
            checked.append((_lead_id(note.deal_id), note))
        refs: dict[int, NoteRef] = {}
        fresh: list[tuple[int, int, NewNote]] = []
        for i, (lead_id, note) in enumerate(checked):
            known = self.created.get(f"note:{note.idempotency_key}")
            if known and not known.startswith(PENDING):
                refs[i] = NoteRef(id=known, deal_id=str(lead_id))
            elif known:
                refs[i] = self.add_note(note.deal_id, note.text, idempotency_key=note.idempotency_key)
            else:
                fresh.append((i, lead_id, note))
        for start in range(0, len(fresh), BATCH_SIZE):
            refs.update(self._post_notes(fresh[start : start + BATCH_SIZE]))
        return [refs[i] for i in range(len(checked))]

    def _post_notes(self, batch: list[tuple[int, int, NewNote]]) -> dict[int, NoteRef]:
        started = now()
        for _i, _lead, note in batch:
            self.created.set(f"note:{note.idempotency_key}", f"{PENDING}{started}")
        body = [
            {
                "entity_id": lead_id,
                "note_type": NOTE_SERVICE,
                "params": {"service": SERVICE_NAME, "text": note.text},
                "request_id": note.idempotency_key,
                "is_need_to_trigger_digital_pipeline": False,
            }
            for _i, lead_id, note in batch
        ]
        try:
            answer = self.transport.send_json("POST", "/api/v4/leads/notes", body)
        except Rejected:
            for _i, _lead, note in batch:  # refused as a whole: provably nothing was created
                self.created.delete(f"note:{note.idempotency_key}")
            raise
        created = [item for item in embedded(answer, "notes") if "id" in item]
        ids = {str(item.get("request_id")): str(item["id"]) for item in created}
        out: dict[int, NoteRef] = {}
        for i, lead_id, note in batch:
            note_id = ids.get(note.idempotency_key)
            if note_id is None:
                # amo answered without this note: its fate is unknown, so it stays pending for a read-back.
                raise RetryLater(f"amoCRM: POST notes answered without request_id {note.idempotency_key!r}")
            self.created.set(f"note:{note.idempotency_key}", note_id)
            out[i] = NoteRef(id=note_id, deal_id=str(lead_id))
        return out

    # --- tasks ------------------------------------------------------------------------------------------

    def _post_task(self, task: dict[str, Any]) -> str:
        created = embedded(self.transport.send_json("POST", "/api/v4/tasks", [task]), "tasks")
        if not created or "id" not in created[0]:
            raise RetryLater("amoCRM: POST tasks answered without an id")
        return str(created[0]["id"])

    def _find_task(self, since: float, responsible: int, text: str, lead_id: int | None) -> str | None:
        params: dict[str, Any] = {
            "filter[responsible_user_id]": responsible,
            "filter[updated_at][from]": max(0, int(since) - READ_BACK_SKEW_S),
        }
        if lead_id is not None:
            params["filter[entity_type]"] = "leads"
            params["filter[entity_id]"] = lead_id
        for item in self.transport.iter_pages("/api/v4/tasks", "tasks", params):
            same_entity = (item.get("entity_id") or None) == lead_id
            if item.get("text") == text and same_entity:
                return str(item["id"])
        return None

    def create_task(self, task: NewTask, *, idempotency_key: str) -> TaskRef:
        lead_id = _lead_id(task.deal_id)
        _nonempty(task.text, "text")
        if not isinstance(task.due_at, datetime) or task.due_at.utcoffset() is None:
            raise _invalid("due_at", f"a timezone-aware datetime is required (got {task.due_at!r})")
        responsible = self._check_user(task.responsible_user_id, "responsible_user_id")
        body = {
            "text": task.text,
            "complete_till": int(task.due_at.timestamp()),
            "entity_type": "leads",
            "entity_id": lead_id,
            "task_type_id": TASK_TYPE_FOLLOW_UP,
            "responsible_user_id": responsible,
            "request_id": idempotency_key,
        }
        task_id = self._create_once(
            "task",
            idempotency_key,
            lambda: self._post_task(body),
            lambda since: self._find_task(since, responsible, task.text, lead_id),
            look_first=False,
        )
        return TaskRef(id=task_id, deal_id=str(lead_id))

    def notify_user(self, user_id: str, text: str, *, idempotency_key: str) -> None:
        _nonempty(text, "text")
        responsible = self._check_user(user_id, "user_id")
        # "Due now": a minute ahead, so the platform does not see a deadline already in the past.
        body = {
            "text": text,
            "complete_till": int(datetime.now(UTC).timestamp()) + 60,
            "task_type_id": TASK_TYPE_FOLLOW_UP,
            "responsible_user_id": responsible,
            "request_id": idempotency_key,
        }
        self._create_once(
            "notify",
            idempotency_key,
            lambda: self._post_task(body),
            lambda since: self._find_task(since, responsible, text, None),
            look_first=False,
        )

    # --- files ------------------------------------------------------------------------------------------

    def _drive(self) -> str:
        if self._drive_url is None:
            account = self.transport.get_json("/api/v4/account", {"with": "drive_url"}) or {}
            url = account.get("drive_url")
            if not isinstance(url, str) or not url:
                raise Rejected("amoCRM account has no drive_url (files scope missing?)", code="no_drive")
            self._drive_url = url.rstrip("/")
        return self._drive_url

    def _upload(self, name: str, content: bytes, mime_type: str) -> Mapping[str, Any]:
        session = self.transport.send_json(
            "POST",
            f"{self._drive()}/v1.0/sessions",
            {"file_name": name, "file_size": len(content), "content_type": mime_type},
        )
        if not isinstance(session, Mapping) or not session.get("upload_url"):
            raise RetryLater("amoCRM drive: no upload session")
        if len(content) > int(session.get("max_file_size") or len(content)):
            raise _invalid("content", f"file too large for amoCRM drive ({len(content)} bytes)")
        part = max(1, int(session.get("max_part_size") or len(content)))
        url: str = session["upload_url"]
        result: Mapping[str, Any] = {}
        for offset in range(0, len(content), part):
            # A part resent after a timeout is the same bytes at the same offset of the same session.
            result = (
                self.transport.send_json(
                    "POST",
                    url,
                    None,
                    data=content[offset : offset + part],
                    headers={"Content-Type": "application/octet-stream"},
                    idempotent=True,
                )
                or {}
            )
            if result.get("next_url"):
                url = str(result["next_url"])
        if not result.get("uuid"):
            raise RetryLater("amoCRM drive: upload finished without a file uuid")
        return result

    def attach_file(
        self, deal_id: str, name: str, content: bytes, mime_type: str, *, idempotency_key: str
    ) -> FileRef:
        lead_id = _lead_id(deal_id)
        _nonempty(name, "name")
        _nonempty(mime_type, "mime_type")
        if not isinstance(content, bytes | bytearray) or not content:
            raise _invalid("content", "a file needs non-empty bytes")
        uploaded: dict[str, Mapping[str, Any]] = {}

        def post() -> str:
            if "file" not in uploaded:
                # Check the deal first: an upload for a deal that does not exist would be orphaned.
                self.transport.get_json(f"/api/v4/leads/{lead_id}")
                uploaded["file"] = self._upload(name, bytes(content), mime_type)
            file = uploaded["file"]
            self._post_note(
                lead_id,
                {
                    "note_type": NOTE_ATTACHMENT,
                    "params": {
                        "file_uuid": file["uuid"],
                        "version_uuid": file.get("version_uuid"),
                        "file_name": name,
                    },
                    "request_id": idempotency_key,
                    "is_need_to_trigger_digital_pipeline": False,
                },
            )
            return str(file["uuid"])

        def read_back(since: float) -> str | None:
            wanted = uploaded.get("file", {}).get("uuid")
            for item in self._notes_since(lead_id, NOTE_ATTACHMENT, since):
                params = item.get("params") or {}
                if (wanted and params.get("file_uuid") == wanted) or (
                    not wanted and params.get("file_name") == name
                ):
                    return str(params.get("file_uuid"))
            return None

        file_id = self._create_once("file", idempotency_key, post, read_back, look_first=False)
        return FileRef(id=file_id, deal_id=str(lead_id), name=name)
