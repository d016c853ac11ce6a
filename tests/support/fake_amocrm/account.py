"""Account, users, pipelines, loss reasons, drive uploads, and helpers for test worlds."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from ._base import Reply, _problem, load_fixture


class AccountMixin:
    # --- account, users, catalogs -----------------------------------------------------------------------

    def _account(self, *, query: Mapping[str, str], body: Any) -> Reply:
        account = load_fixture("api/account__with_drive_url.json")
        account["_links"]["self"]["href"] = f"{self.base_url}/api/v4/account"
        if "drive_url" in query.get("with", ""):
            account["drive_url"] = self.drive_url
        else:
            account.pop("drive_url")
        return 200, account

    def _custom_fields(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return self._page(
            "/api/v4/leads/custom_fields", "custom_fields", list(self.lead_fields.values()), query, total=True
        )

    def _pipelines(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return 200, load_fixture("api/pipelines_list.json")

    def _loss_reasons(self, *, query: Mapping[str, str], body: Any) -> Reply:
        return self._page("/api/v4/leads/loss_reasons", "loss_reasons", self.loss_reasons, query)

    def new_user(self, name: str, *, active: bool = True, admin: bool = False) -> dict[str, Any]:
        template = copy.deepcopy(load_fixture("api/users_list.json")["_embedded"]["users"][1])
        uid = self.next_id("user")
        template.update(id=uid, name=name, email=f"user{uid}@clinic.example")
        template["rights"].update(is_active=active, is_admin=admin)
        template["_links"]["self"]["href"] = f"{self.base_url}/api/v4/users/{uid}"
        self.users[uid] = template
        return template

    def _get_user(self, user_id: str, *, query: Mapping[str, str], body: Any) -> Reply:
        if not self.admin:
            return _problem(403)
        user = self.users.get(int(user_id))
        return (200, copy.deepcopy(user)) if user else _problem(404)

    def _list_users(self, *, query: Mapping[str, str], body: Any) -> Reply:
        if not self.admin:
            return _problem(403)
        users = [copy.deepcopy(u) for _, u in sorted(self.users.items())]
        return self._page("/api/v4/users", "users", users, query, total=True)

    # --- drive ------------------------------------------------------------------------------------------

    def _drive_session(self, *, query: Mapping[str, str], body: Any) -> Reply:
        sid = self.next_id("session")
        key = f"session-{sid}"
        self.sessions[key] = {
            "name": body["file_name"],
            "size": int(body["file_size"]),
            "content_type": body.get("content_type"),
            "data": bytearray(),
        }
        session = load_fixture("api/drive_session.json")
        session.update(
            session_id=sid,
            max_part_size=self.max_part_size,
            upload_url=f"{self.drive_url}/upload/{key}/part-0",
        )
        return 200, session

    def _drive_part(self, key: str, part: str, *, query: Mapping[str, str], body: Any) -> Reply:
        session = self.sessions.get(key)
        if session is None or not isinstance(body, bytes) or len(body) > self.max_part_size:
            return _problem(400)
        session["data"].extend(body)
        if len(session["data"]) < session["size"]:
            return 200, {"session_id": key, "next_url": f"{self.drive_url}/upload/{key}/part-{int(part) + 1}"}
        done = load_fixture("api/drive_upload__done.json")
        done.update(
            uuid=str(uuid.uuid4()), version_uuid=str(uuid.uuid4()), name=session["name"], size=session["size"]
        )
        self.files[done["uuid"]] = {**session, "data": bytes(session["data"]), "uuid": done["uuid"]}
        return 200, done

    # --- helpers for worlds -----------------------------------------------------------------------------

    def encode_fields(self, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
        """`FieldValue`s keyed by field id → the request shape, written independently of the client."""
        out = []
        for key, value in fields.items():
            if value is None:
                continue
            fid = int(key)
            if isinstance(value, tuple):
                values = [{"enum_id": int(v)} for v in value]
            elif isinstance(value, date):
                values = [
                    {"value": int(datetime(value.year, value.month, value.day, tzinfo=self.tz).timestamp())}
                ]
            else:
                values = [{"value": value}]
            out.append({"field_id": fid, "values": values})
        return out
