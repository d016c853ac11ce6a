"""amoCRM REST v4 constants, each from research/amocrm.md (§ numbers refer to it)."""

from __future__ import annotations

import re

__all__ = [
    "API_HOST",
    "BATCH_MAX",
    "BATCH_SIZE",
    "COMPLEX_FIELDS_MAX",
    "DRIVE_HOST",
    "ENTITY_TYPE_LEAD",
    "LOST_STATUS_ID",
    "MAX_RPS",
    "NOTE_ATTACHMENT",
    "NOTE_SERVICE",
    "PAGE_LIMIT",
    "SERVICE_NAME",
    "TASK_TYPE_FOLLOW_UP",
    "WON_STATUS_ID",
]

# §5.1: the account's own host, never www; amocrm.ru, amocrm.com and kommo.com share one API.
API_HOST = re.compile(r"^https://(?!www\.)[a-z0-9-]+\.(amocrm\.ru|amocrm\.com|kommo\.com)$")
# §5.4: the drive host comes from GET /api/v4/account?with=drive_url, e.g. https://drive-b.amocrm.ru.
DRIVE_HOST = re.compile(r"^https://drive-[a-z0-9-]+\.(amocrm\.ru|amocrm\.com|kommo\.com)$")

MAX_RPS = 7  # §6: 7 requests per second; more gets 429, repeated 429s get the IP/account blocked (403).
PAGE_LIMIT = 250  # §5.1: limit ≤ 250.
BATCH_SIZE = 50  # §5.1: writes take ≤ 250 entities, 50 recommended.
BATCH_MAX = 250
COMPLEX_FIELDS_MAX = 40  # §5.2: ≤ 40 custom-field values per entity in /leads/complex.

WON_STATUS_ID = "142"  # §5.2 / Facts 10: system stages, the same ids in every pipeline.
LOST_STATUS_ID = "143"

NOTE_SERVICE = "extended_service_message"  # §5.3, recommended for widget results [K-DPW].
NOTE_ATTACHMENT = "attachment"  # §5.3 / §5.4: params{file_uuid, version_uuid, file_name}.
SERVICE_NAME = "ClinicBridge"
ENTITY_TYPE_LEAD = 2  # §7: /api/v2/salesbot/run takes entity_type 1 = contact, 2 = lead.
TASK_TYPE_FOLLOW_UP = 1  # §5.3: 1 = follow-up, 2 = meeting.
