"""HTTP layer: one blueprint per caller (widget API, hooks, health), all answering errors as JSON."""

from __future__ import annotations

from flask import Flask

from .api_amocrm import amocrm_api
from .api_callers import callers_api
from .api_catalogue import catalogue_api
from .api_counterparties import counterparties_api
from .api_deals import deals_api
from .api_distribution import distribution_api
from .api_inpatient import inpatient_api
from .api_invoices import deal_invoices_api, invoices_api, rates_api
from .api_journey import journey_api
from .api_mis import mis_api
from .api_outbox import outbox_api
from .api_payroll import payroll_api
from .api_portal import portal_api
from .api_reports import reports_api
from .api_settings import settings_api
from .api_stay import stay_api
from .cors import install_cors
from .health import health
from .hooks import hooks
from .hooks_amocrm import amocrm_hooks
from .hooks_bitrix24 import bitrix24_hooks
from .install_amocrm import amocrm_install
from .install_bitrix24 import bitrix24_install
from .lifecycle import install_lifecycle
from .mis import mis_ident
from .openapi import openapi_blueprint
from .widget_static import widget_static

__all__ = ["register_http"]


def register_http(app: Flask) -> None:
    install_lifecycle(app)
    install_cors(app)
    for blueprint in (
        health,
        portal_api,
        deals_api,
        stay_api,
        distribution_api,
        journey_api,
        catalogue_api,
        outbox_api,
        counterparties_api,
        invoices_api,
        deal_invoices_api,
        rates_api,
        hooks,
        amocrm_hooks,
        amocrm_install,
        bitrix24_install,
        bitrix24_hooks,
        amocrm_api,
        openapi_blueprint,
        widget_static,
        settings_api,
        mis_ident,
        mis_api,
        reports_api,
        payroll_api,
        callers_api,
        inpatient_api,
    ):
        app.register_blueprint(blueprint)
