"""ClinicBridge: deal-card widgets, robots and MIS sync for clinics on amoCRM and Bitrix24."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from . import runtime as runtime_module
from .config import Settings, load_settings
from .logs import configure_logging

__all__ = ["create_app"]


def create_app(config: Settings | Mapping[str, str] | None = None, *, rt: Any = None) -> Flask:
    """Build the Flask app.

    `config` is a Settings object, a mapping of environment variables (tests), or None for os.environ.
    A bad setting raises ConfigError naming the variable before anything starts.
    """
    if isinstance(config, Settings):
        settings = config
    else:
        settings = load_settings(config)
    configure_logging(settings.log_level)
    runtime = rt or runtime_module.build_runtime(settings)
    runtime_module.install(runtime)

    app = Flask(__name__, static_folder=None)
    app.config.update(SECRET_KEY=settings.secret_key, TESTING=settings.testing, JSON_SORT_KEYS=False)
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024
    app.extensions["clinicbridge"] = runtime
    if settings.trusted_proxy_hops:
        # Only as many X-Forwarded-For hops as we have proxies: a client can prepend any address it likes.
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]

    from .http import register_http

    register_http(app)
    return app
