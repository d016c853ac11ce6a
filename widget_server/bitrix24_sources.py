"""Where Bitrix24 events and robot calls may come from (research/bitrix24.md "Source IPs", fact 18).

Bitrix24 publishes the addresses of the servers that call applications (`app-world.json`, and `app.json` for
the Russian region) and changes them as it scales, so we never hard-code an address: a periodic job reads
the published lists and keeps the last good union in Redis, where every web process reads it.

The application token stays the proof of who is calling; the source check is a second fence. Bitrix24 does
not retry an event it failed to deliver, so refusing a call from a node that is newer than our copy of the
list loses that event: the default mode (`log`) only reports strangers, and `enforce` is for deployments
that want the fence and refresh the list often (every 10 min here, the rate Bitrix24 recommends).
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from . import runtime
from .clock import now_utc

__all__ = [
    "SourceList",
    "SourceListInvalid",
    "SourceVerdict",
    "cached_source_list",
    "fetch_source_list",
    "parse_nodes",
    "refresh_event_sources",
    "source_verdict",
]

log = logging.getLogger(__name__)

REDIS_KEY = "cb:b24:event_sources"
# A web process re-reads Redis at most this often: the list changes on the scale of hours.
LOCAL_TTL = timedelta(seconds=60)
# Past this, the list is still used (a stale list beats none) but the refresh failure is logged loudly.
STALE_AFTER = timedelta(hours=24)
_SHARED_KEY = "bitrix24_sources"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class SourceListInvalid(ValueError):
    """A published list that cannot be read; the previous good list stays in force."""


@dataclass(frozen=True)
class SourceList:
    networks: tuple[Network, ...]
    fetched_at: datetime
    urls: tuple[str, ...]

    def allows(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks if network.version == ip.version)

    def to_json(self) -> str:
        return json.dumps(
            {
                "nodes": [str(n) for n in self.networks],
                "fetched_at": self.fetched_at.isoformat(),
                "urls": list(self.urls),
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes) -> SourceList:
        doc = json.loads(raw)
        return cls(
            networks=tuple(ipaddress.ip_network(n, strict=False) for n in doc["nodes"]),
            fetched_at=datetime.fromisoformat(doc["fetched_at"]),
            urls=tuple(doc["urls"]),
        )


@dataclass(frozen=True)
class SourceVerdict:
    allowed: bool
    reason: str
    stranger: bool = False
    """Checked against a list and not on it (whether or not the mode lets it through)."""


def parse_nodes(body: Any, url: str) -> list[Network]:
    """The `{"nodes": [...]}` document: addresses, or networks in CIDR form should Bitrix24 publish ranges."""
    nodes = body.get("nodes") if isinstance(body, dict) else None
    if not isinstance(nodes, list) or not nodes:
        raise SourceListInvalid(f"{url}: 'nodes' must be a non-empty list")
    networks = []
    for index, node in enumerate(nodes):
        try:
            networks.append(ipaddress.ip_network(str(node).strip(), strict=False))
        except ValueError:
            raise SourceListInvalid(f"{url}: nodes[{index}] {node!r} is not an IP address") from None
    return networks


@retry(
    retry=retry_if_exception_type(requests.RequestException),
    stop=stop_after_attempt(3),
    wait=wait_exponential_jitter(initial=1, max=10),
    reraise=True,
)
def _get(url: str) -> Any:
    response = requests.get(url, timeout=10)
    response.raise_for_status()
    try:
        return response.json()
    except ValueError:
        raise SourceListInvalid(f"{url}: not JSON") from None


def fetch_source_list(urls: Sequence[str]) -> SourceList:
    """The union of all published lists. All must be read: a partial union would refuse a whole region."""
    networks: dict[str, Network] = {}
    for url in urls:
        for network in parse_nodes(_get(url), url):
            networks.setdefault(str(network), network)
    return SourceList(networks=tuple(networks.values()), fetched_at=now_utc(), urls=tuple(urls))


def refresh_event_sources() -> str:
    """Periodic job: fetch the published lists and store them for every process; keep the last good on
    failure."""
    rt = runtime.current()
    urls = rt.settings.b24_event_source_lists
    if rt.settings.b24_event_source_check == "off" or not urls:
        return "skipped: source check off"
    try:
        fresh = fetch_source_list(urls)
    except (requests.RequestException, SourceListInvalid) as exc:
        previous = _read_redis()
        age = "none kept" if previous is None else f"kept list from {previous.fetched_at.isoformat()}"
        stale = previous is None or now_utc() - previous.fetched_at > STALE_AFTER
        (log.error if stale else log.warning)("bitrix24 source lists unavailable (%s): %s", exc, age)
        return f"failed: {exc}"
    rt.redis.set(REDIS_KEY, fresh.to_json())
    rt.shared.pop(_SHARED_KEY, None)
    return f"stored {len(fresh.networks)} nodes from {len(urls)} lists"


def _read_redis() -> SourceList | None:
    raw = runtime.current().redis.get(REDIS_KEY)
    if raw is None:
        return None
    try:
        return SourceList.from_json(raw)
    except (ValueError, KeyError, TypeError):
        log.error("bitrix24 source list in Redis is unreadable; ignoring it")
        return None


def cached_source_list() -> SourceList | None:
    """The stored list, re-read from Redis at most once a minute per process."""
    shared = runtime.current().shared
    now = now_utc()
    cached = shared.get(_SHARED_KEY)
    if cached is not None and now - cached[0] < LOCAL_TTL:
        return cached[1]
    current = _read_redis()
    shared[_SHARED_KEY] = (now, current)
    return current


def source_verdict(address: str | None, mode: str, sources: SourceList | None) -> SourceVerdict:
    """May a call from `address` proceed under `mode`? The reason is what the log and a refusal say."""
    if mode == "off":
        return SourceVerdict(True, "source check off")
    if sources is None:
        # Before the first successful refresh there is nothing to compare with; refusing would lose events.
        return SourceVerdict(True, "no published source list yet")
    if address is not None and sources.allows(address):
        return SourceVerdict(True, "published Bitrix24 node")
    reason = f"{address or 'unknown address'} is not in Bitrix24's published server list"
    return SourceVerdict(mode != "enforce", reason, stranger=True)

