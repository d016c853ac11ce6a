"""Building the amoCRM `widget.zip` (research/amocrm.md §2.1): reproducible bytes for the same inputs.

The server address and the package version are written into `script.js` and `manifest.json` at build
time, so the uploaded widget talks to exactly one deployment.
"""

from __future__ import annotations

import io
import json
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["WIDGET_DIR", "build_widget_zip", "package_version"]

WIDGET_DIR = Path(__file__).resolve().parent.parent / "static" / "widget" / "amocrm"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_TEMPLATED = {"script.js", "manifest.json"}


def package_version() -> str:
    try:
        return version("clinicbridge")
    except PackageNotFoundError:
        return "0.0.0"


def _check_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    local = parts.hostname in {"localhost", "127.0.0.1"}
    if parts.scheme != "https" and not (local and parts.scheme == "http"):
        raise ValueError(f"--base-url must be an https:// URL (amo pages are https), got {base_url!r}")
    if not parts.netloc or parts.path not in {"", "/"} or parts.query:
        raise ValueError(f"--base-url must be scheme://host[:port] only, got {base_url!r}")
    return base_url.rstrip("/")


def build_widget_zip(base_url: str, *, widget_version: str | None = None, source: Path = WIDGET_DIR) -> bytes:
    base_url = _check_base_url(base_url)
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            name = path.relative_to(source).as_posix()
            data = path.read_bytes()
            if name in _TEMPLATED:
                text = data.decode("utf-8").replace("{{BASE_URL}}", base_url)
                if name == "manifest.json":
                    manifest = json.loads(text)
                    manifest["widget"]["version"] = widget_version or package_version()
                    text = json.dumps(manifest, ensure_ascii=False, indent=2) + "\n"
                data = text.encode("utf-8")
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()
