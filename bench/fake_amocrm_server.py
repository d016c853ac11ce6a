"""The stateful amoCRM v4 fake of the tests (`tests/support/fake_amocrm/`) served over real HTTP.

Run: .venv/bin/python bench/fake_amocrm_server.py [--port N] [--rate-limit 7]
     (prints "listening on http://127.0.0.1:<port>" once it accepts connections; Ctrl-C stops it)

Not a bench itself: `amocrm_mirror_bench.py` drives `AmoCrmClient` against it. Nothing of the fake is
copied: `FakeAmo` registers one callback on a `responses.RequestsMock` (never started here, only used as
the registry it needs) and every real request is turned into a `requests.PreparedRequest` and handed to
that same callback (`FakeAmo._callback`), under one lock, since the fake's state is not thread-safe; its
clock reads the moment the request was read in full, so waiting for that lock does not move a request in
the rate window. So the fake's checks hold as in the tests: more than 7 requests in a (0.99 s) window →
429, batches and `limit` ≤ 250, paging by `_links.next`, 204 for empty lists, bearer token "access-1".

The client is left unchanged: it insists on `https://<subdomain>.amocrm.ru`, so `LocalAmoAdapter`, a
`requests` transport adapter mounted on the client's session (`PortalHttp(session=…)`), sends every
`https://clinic.amocrm.ru/...` request to this server instead, with the original host in `Host:`. The
fake answers with links on its own https base URL, which the adapter maps the same way.

Control endpoints (for benches; not part of amo's API) live under `/__fake/` on the same port:
  POST /__fake/leads {"count": N, "pipeline_id": …, "status_id": …}  → {"first": id, "last": id}
      creates N leads directly in the fake's state (no HTTP per lead, no rate limit);
  GET  /__fake/stats → requests, 429s, max requests in any 1 s (and 0.99 s) window, per-route counts,
      leads/notes held, the first and last request time;
  GET  /__fake/hits → the arrival time (CLOCK_MONOTONIC, s) of every request since the last reset;
  GET  /__fake/count?field_id=F&prefix=P → how many leads hold a value of field F starting with P;
  POST /__fake/reset → forgets the request log and the 429 count (the entities stay).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import responses
from requests.adapters import HTTPAdapter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.fake_amocrm import FakeAmo

__all__ = ["FakeAmoServer", "LocalAmoAdapter", "local_session"]

_NUMBERS = re.compile(r"/\d+")


class LocalAmoAdapter(HTTPAdapter):
    """Sends https://<amo host>/path to `target` (http://127.0.0.1:<port>), the host kept in `Host:`."""

    def __init__(self, target: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target.rstrip("/")

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        original = request.url or ""
        parts = urlsplit(original)
        request.headers["Host"] = parts.netloc
        request.url = self.target + parts.path + (f"?{parts.query}" if parts.query else "")
        kwargs["proxies"] = {}
        try:
            response = super().send(request, **kwargs)
        finally:
            request.url = original
        response.url = original
        return response


def local_session(target: str, *, pool_maxsize: int = 10) -> requests.Session:
    """A requests session whose amoCRM (and drive) https traffic goes to the local fake at `target`."""
    session = requests.Session()
    session.trust_env = False
    adapter = LocalAmoAdapter(target, pool_connections=4, pool_maxsize=pool_maxsize)
    session.mount("https://", adapter)
    return session


class FakeAmoServer:
    """`FakeAmo` behind a threaded HTTP/1.1 (keep-alive) server on 127.0.0.1."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, **fake_kwargs: Any) -> None:
        # Never started: FakeAmo only needs somewhere to register its callback.
        self._registry = responses.RequestsMock(assert_all_requests_are_fired=False)
        # The fake counts a request at the moment it arrived (read in full), not when it got the lock
        # that serialises its handling: waiting behind another request must not move it in the window.
        self._arrival = threading.local()
        fake_kwargs.setdefault("clock", self._arrived_at)
        self.fake = FakeAmo(self._registry, **fake_kwargs)
        self.lock = threading.Lock()
        self.first_at: float | None = None
        self.last_at: float | None = None
        self.routes: collections.Counter[str] = collections.Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                server._arrival.at = time.monotonic()
                if self.path.startswith("/__fake/"):
                    status, headers, text = server._control(self.command, self.path, raw)
                else:
                    try:
                        status, headers, text = server._dispatch(self.command, self.path, self.headers, raw)
                    except requests.exceptions.RequestException:
                        # An injected "timeout" fault: drop the connection without an answer.
                        self.close_connection = True
                        return
                payload = text.encode("utf-8") if isinstance(text, str) else (text or b"")
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if status != 204:
                    self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if status != 204 and payload:
                    self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._thread: threading.Thread | None = None

    def _arrived_at(self) -> float:
        return getattr(self._arrival, "at", None) or time.monotonic()

    # --- amo API ----------------------------------------------------------------------------------------

    def _dispatch(self, method: str, path: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], str]:
        host = headers.get("Host") or ""
        if host.endswith((".amocrm.ru", ".amocrm.com", ".kommo.com")):
            url = f"https://{host}{path}"
        else:
            url = self.fake.base_url + path
        kept = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        prepared = requests.Request(method, url, headers=kept, data=raw or None).prepare()
        with self.lock:
            now = self._arrived_at()
            self.first_at = now if self.first_at is None else min(self.first_at, now)
            self.last_at = now if self.last_at is None else max(self.last_at, now)
            self.routes[f"{method} {_NUMBERS.sub('/{id}', urlsplit(url).path)}"] += 1
            status, out_headers, text = self.fake._callback(prepared)
        return status, dict(out_headers), text

    # --- control ----------------------------------------------------------------------------------------

    def _control(self, method: str, path: str, raw: bytes) -> tuple[int, dict[str, str], str]:
        body = json.loads(raw) if raw else {}
        kind = {"Content-Type": "application/json"}
        with self.lock:
            if method == "POST" and path == "/__fake/leads":
                pipeline = self.fake.pipelines[0]
                pipeline_id = int(body.get("pipeline_id") or pipeline["id"])
                status_id = int(body.get("status_id") or pipeline["_embedded"]["statuses"][0]["id"])
                ids = [
                    self.fake.new_lead(f"Bench lead {i}", pipeline_id, status_id)["id"]
                    for i in range(int(body["count"]))
                ]
                gc.collect()
                gc.freeze()  # the fake's own collector pauses must not bunch arrivals up in the window
                return (
                    200,
                    kind,
                    json.dumps({"first": ids[0] if ids else None, "last": ids[-1] if ids else None}),
                )
            if method == "GET" and path.startswith("/__fake/count?"):
                query = {k: v[-1] for k, v in parse_qs(urlsplit(path).query).items()}
                return 200, kind, json.dumps({"leads": self.count(int(query["field_id"]), query["prefix"])})
            if method == "GET" and path == "/__fake/hits":
                return 200, kind, json.dumps(sorted(self.fake.hits))
            if method == "GET" and path == "/__fake/stats":
                return 200, kind, json.dumps(self.stats())
            if method == "POST" and path == "/__fake/reset":
                self.fake.hits.clear()
                self.fake.log.clear()
                self.fake.throttled = 0
                self.routes.clear()
                self.first_at = self.last_at = None
                gc.collect()
                gc.freeze()
                return 200, kind, "{}"
        return 404, kind, json.dumps({"error": f"no control endpoint {method} {path}"})

    def count(self, field_id: int, prefix: str) -> int:
        """Leads whose custom field `field_id` holds a value starting with `prefix`."""
        return sum(
            1
            for lead in self.fake.leads.values()
            for item in lead.get("custom_fields_values") or ()
            if item["field_id"] == field_id
            and any(str(v.get("value")).startswith(prefix) for v in item["values"])
        )

    def stats(self) -> dict[str, Any]:
        hits = sorted(self.fake.hits)
        # The tightest span of 8 consecutive arrivals: under 1 s means 8 in some 1 s window.
        spans = [hits[i + 7] - hits[i] for i in range(len(hits) - 7)]
        return {
            "min_span_of_8_s": min(spans) if spans else None,
            "spans_of_8_under_1s": sum(1 for span in spans if span < 1.0),
            "requests": len(self.fake.hits),
            "throttled": self.fake.throttled,
            "max_in_1s": self.fake.max_in_window(1.0),
            "max_in_0_99s": self.fake.max_in_window(0.99),
            "routes": dict(self.routes),
            "leads": len(self.fake.leads),
            "notes": len(self.fake.notes),
            "span_s": (self.last_at - self.first_at) if self.first_at is not None and self.last_at else 0.0,
        }

    # --- lifecycle --------------------------------------------------------------------------------------

    def start(self) -> FakeAmoServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fake-amo", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeAmoServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--rate-limit", type=int, default=7, help="requests per 1 s window before 429")
    args = parser.parse_args()
    server = FakeAmoServer(port=args.port, rate_limit=args.rate_limit)
    print(f"listening on {server.base_url} (as {server.fake.base_url})", flush=True)
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
