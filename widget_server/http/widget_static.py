"""The deal-card panel's static files (`static/widget/…`): the shells load the common panel from here.

The app is built with `static_folder=None`, so this is the only static route. The files are public code
with no secrets, and amoCRM loads them as ES modules from the account's own origin, which needs CORS on
module scripts: `*` is safe for them (the API keeps its per-account allowlist in `cors.py`).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

__all__ = ["WIDGET_STATIC_DIR", "widget_static"]

WIDGET_STATIC_DIR = Path(__file__).resolve().parents[2] / "static" / "widget"

widget_static = Blueprint("widget_static", __name__)


def _buffered(response: Response) -> Response:
    # The files are small (tens of KB). Read into memory, the open file is closed here and now; streamed,
    # it stays open until the server closes the response, which a browser dropping the connection
    # mid-transfer (a tab closed while modules preload) can prevent: a leaked file handle per drop.
    response.direct_passthrough = False
    response.make_sequence()
    # make_sequence only defers the file's close to the end of the response; the body is in memory now,
    # so close it here (a later close by the server is a harmless second one).
    response.close()
    return response


@widget_static.get("/static/widget/<path:filename>")
def widget_file(filename: str) -> Response:
    # send_from_directory refuses paths that leave the folder (404), so ../ cannot reach the source tree.
    response = _buffered(send_from_directory(WIDGET_STATIC_DIR, filename, max_age=300))
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@widget_static.get("/static/widget/demo/")
def demo_page() -> Response:
    return _buffered(send_from_directory(WIDGET_STATIC_DIR / "demo", "index.html", max_age=0))
