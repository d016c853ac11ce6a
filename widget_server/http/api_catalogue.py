"""Tariff and expense-article catalogues of a portal (admins write, staff read names)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, ValidationFailed
from ..models import ExpenseArticle, Tariff
from ..money import AmountError, minor_to_decimal, parse_amount
from .auth import current_portal, current_principal, requires
from .body import load_body
from .idempotency import mutation
from .lifecycle import db_session
from .openapi import api_doc
from .schemas_ledger import ArticleSchema, TariffSchema

__all__ = ["catalogue_api"]

catalogue_api = Blueprint("catalogue_api", __name__, url_prefix="/api/v1")


def _tariff_document(tariff: Tariff, currency: str, money: bool) -> dict[str, Any]:
    document = {"id": tariff.id, "name": tariff.name, "active": tariff.active}
    if money:
        document["daily_rate"] = str(minor_to_decimal(tariff.daily_rate_minor, currency))
    return document


@catalogue_api.get("/tariffs")
@api_doc(summary="Tariffs (rates visible to finance)", tags=["catalogue"], response=TariffSchema(many=True))
@requires("staff")
def list_tariffs() -> Any:
    portal = current_portal()
    money = current_principal().has("finance")
    tariffs = db_session().scalars(select(Tariff).where(Tariff.portal_id == portal.id).order_by(Tariff.name))
    return [_tariff_document(t, portal.currency, money) for t in tariffs]


@catalogue_api.post("/tariffs")
@api_doc(summary="Add a tariff", tags=["catalogue"], request=TariffSchema, response=TariffSchema, status=201)
@requires("admin")
@mutation
def create_tariff() -> Any:
    body = load_body(TariffSchema())
    portal = current_portal()
    try:
        rate = parse_amount(body["daily_rate"], portal.currency)
    except AmountError as exc:
        raise ValidationFailed.for_field("daily_rate", exc.reason) from None
    tariff = Tariff(
        portal_id=portal.id, name=body["name"].strip(), daily_rate_minor=rate, active=body["active"]
    )
    _insert(tariff, "name", f"a tariff named {tariff.name!r} exists")
    return _tariff_document(tariff, portal.currency, True), 201


@catalogue_api.get("/articles")
@api_doc(summary="Expense articles", tags=["catalogue"], response=ArticleSchema(many=True))
@requires("staff")
def list_articles() -> Any:
    articles = db_session().scalars(
        select(ExpenseArticle)
        .where(ExpenseArticle.portal_id == current_portal().id)
        .order_by(ExpenseArticle.name)
    )
    return ArticleSchema(many=True).dump(articles)


@catalogue_api.post("/articles")
@api_doc(
    summary="Add an expense article",
    tags=["catalogue"],
    request=ArticleSchema,
    response=ArticleSchema,
    status=201,
)
@requires("admin")
@mutation
def create_article() -> Any:
    body = load_body(ArticleSchema())
    article = ExpenseArticle(
        portal_id=current_portal().id, name=body["name"].strip(), code=body.get("code"), active=body["active"]
    )
    _insert(article, "name", f"an article named {article.name!r} exists")
    return ArticleSchema().dump(article), 201


def _insert(row: object, field: str, reason: str) -> None:
    session = db_session()
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        raise Conflict(reason, fields={field: [reason]}) from None
