"""amoCRM jobs: finish a marketplace install (the code is kept at most 20 minutes)."""

from __future__ import annotations

from .. import runtime
from ..amocrm_install import complete_install
from .joblog import logged_job

__all__ = ["PENDING_CODE_KEY", "finish_widget_install"]

PENDING_CODE_KEY = "cb:amo:install-code:{host}"


@logged_job("finish_widget_install")
def finish_widget_install(host: str) -> str:
    rt = runtime.current()
    code = rt.redis.getdel(PENDING_CODE_KEY.format(host=host))
    if code is None:
        return "no pending code"
    installed = complete_install(rt, host, code.decode() if isinstance(code, bytes) else str(code))
    return f"portal {installed.slug} {'reinstalled' if installed.reinstalled else 'installed'}"
