"""Seed 002's patient journey as rule templates, installed disabled until the clinic maps them.

Pipeline, stage and field ids are the seed's names (as on the sandbox CRM, where a name is the id); on a
real account the admin replaces them with the account's ids (PATCH) and maps the roles, the message field
and the answer fields in the journey settings, then enables each rule, which is checked in full then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import clock
from ..models import JourneyRule, JourneyRuleVersion, Portal
from .engine import on_confirm_mode_change
from .rules import Catalogue, create_rule, current_version, validate_rule

__all__ = [
    "PREVIOUS_TEMPLATES", "SEED002_TEMPLATES", "TemplateUpgrade", "install_templates", "template_rules",
    "upgrade_templates",
]  # fmt: skip

PRIMARY = "Первичный приём"
REPEAT = "Повторный приём"
NPS = "Сбор NPS"
HYGIENE = "Профгигиена"
RETURN = "Возврат потенциального клиента"
COMPLEX_SALE = "Продажа комплексного лечения"
COMPLEX_CARE = "Реализация комплексного лечения"
CHECKUP = "Профосмотр"

WELCOME = (
    "Вас приветствует стоматологическая клиника {{Бренд}} 🦷\n"
    "Наш специалист скоро свяжется с Вами для консультирования и записи на приём. Пожалуйста, ожидайте."
)
HYGIENE_TEXT = (
    "{{ФИО}}, здравствуйте! Это стоматологическая клиника {{Бренд}} 🦷\n"
    "Приглашаем Вас пройти плановую профилактическую гигиену полости рта.\n"
    "Регулярная гигиена (раз в полгода) по специальной цене — {{цена}}.\n"
    "Для записи на приём отправьте в ответ только „+“ или позвоните на {{тел. номер}}"
)
NPS_QUESTION = (
    "{{ФИО}}, спасибо, что выбрали клинику {{Бренд}}! Оцените, пожалуйста, от 0 до 10, насколько Вы готовы "
    "рекомендовать нас друзьям, знакомым или коллегам?"
)


def _task(text: str, role: str = "responsible", **extra: Any) -> dict[str, Any]:
    return {"type": "task", "role": role, "text": text, **extra}


def _rule(key: str, name: str, trigger: dict[str, Any], actions: list[dict[str, Any]], **rest: Any) -> dict:
    return {"key": key, "name": name, "trigger": trigger, "actions": actions, **rest}


SEED002_TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "welcome": [
        _rule(
            "welcome",
            "Приветствие новой заявки",
            {"type": "stage_entered", "pipeline_id": PRIMARY, "stage_id": "Новая заявка"},
            [{"type": "message", "text": WELCOME}],
            window_hours=2,
        )
    ],
    "invalid_phone": [
        _rule(
            "invalid_phone",
            "Некорректный телефон → «Не заявка»",
            {"type": "phone_flagged"},
            [{"type": "move", "stage_id": "lost", "loss_reason": "Не заявка"}],
        )
    ],
    "booking_notice": [
        _rule(
            "booking_notice",
            "Уведомление о записи",
            {"type": "appointment_status", "statuses": ["booked"]},
            [
                {
                    "type": "message",
                    "text": "{{ФИО}}, Вы записаны на {{дата}} в {{время}}, врач: {{врач}}. {{Бренд}}",
                }
            ],
            conditions={"future_booking": True},
        )
    ],
    "confirm_d1": [
        _rule(
            "confirm_d1.request",
            "Подтверждение записи за день",
            {"type": "offset", "anchor": "visit", "days": -1, "at": "10:00"},
            [
                {
                    "type": "message",
                    "text": "{{ФИО}}, напоминаем о записи {{дата}} в {{время}}, врач: {{врач}}. "
                    "Подтвердите, пожалуйста: ответьте «да» или «нет».",
                }
            ],
            conditions={"statuses": ["booked"], "confirm_mode": "message"},
            window_hours=8,
        ),
        _rule(
            "confirm_d1.call",
            "Подтверждение записи звонком за день",
            {"type": "offset", "anchor": "visit", "days": -1, "at": "10:00"},
            [
                _task(
                    "Позвонить пациенту и подтвердить запись {{дата}} в {{время}}, врач: {{врач}}; "
                    "ответ («да» или «нет») внести в сделку",
                    "administrator",
                )
            ],
            conditions={"statuses": ["booked"], "confirm_mode": "call_task"},
            window_hours=8,
        ),
        _rule(
            "confirm_d1.yes",
            "Запись подтверждена",
            {"type": "answer", "kind": "confirmation"},
            [{"type": "fields", "fields": {"Запись подтверждена": True}}],
            conditions={"answer_values": ["yes"]},
        ),
        _rule(
            "confirm_d1.no",
            "Пациент не подтвердил — предложить новое время",
            {"type": "answer", "kind": "confirmation"},
            [
                _task(
                    "Пациент не подтвердил запись: позвонить и предложить новые дату и время", "administrator"
                )
            ],
            conditions={"answer_values": ["no"]},
        ),
        _rule(
            "confirm_d1.silence",
            "Нет ответа на подтверждение к 18:00",
            {"type": "offset", "anchor": "visit", "days": -1, "at": "18:00"},
            [_task("Пациент не ответил на подтверждение записи: позвонить", "administrator")],
            conditions={"statuses": ["booked"], "no_answer": {"kind": "confirmation", "within_days": 1}},
            window_hours=6,
        ),
    ],
    "nps": [
        _rule(
            "nps.request",
            "Сбор NPS на следующий день после приёма",
            {"type": "offset", "anchor": "visit", "days": 1, "at": "10:00"},
            [
                {
                    "type": "create_deal",
                    "pipeline_id": NPS,
                    "stage_id": "Оценка запрошена",
                    "name": "NPS: {{ФИО}}",
                    "copy_fields": [],
                    "then": [{"type": "message", "text": NPS_QUESTION}],
                }
            ],
            conditions={"statuses": ["completed"], "complex_treatment": False},
        ),
        _rule(
            "nps.high",
            "Высокая оценка → отзовики",
            {"type": "answer", "kind": "nps"},
            [{"type": "message", "text": "Спасибо за высокую оценку! Будем рады Вашему отзыву: {{ссылки}}"}],
            conditions={"score_min": 9},
        ),
        _rule(
            "nps.low",
            "Низкая оценка → проверить комментарий",
            {"type": "answer", "kind": "nps"},
            [_task("Низкая оценка NPS: проверить комментарий пациента и разрешить ситуацию")],
            conditions={"score_max": 8},
        ),
    ],
    "hygiene_recall": [
        _rule(
            "hygiene_recall.invite",
            "Профгигиена через 6 месяцев",
            {"type": "offset", "anchor": "last_visit", "months": 6, "at": "10:00"},
            [
                {
                    "type": "create_deal",
                    "pipeline_id": HYGIENE,
                    "stage_id": "Приглашение отправлено",
                    "name": "Профгигиена: {{ФИО}}",
                    "copy_fields": [],
                    "then": [{"type": "message", "text": HYGIENE_TEXT}],
                }
            ],
            conditions={"no_booking_since_anchor": True},
        ),
        _rule(
            "hygiene_recall.plus",
            "«+» на приглашение → записать",
            {"type": "answer", "kind": "plus"},
            [
                _task(
                    "Пациент ответил «+» на приглашение на профгигиену: связаться и записать", "administrator"
                )
            ],
            conditions={"pipelines": [HYGIENE]},
        ),
        _rule(
            "hygiene_recall.silence",
            "Нет ответа 7 дней → закрыть",
            {"type": "after_rule", "rule": "hygiene_recall.invite", "days": 7, "at": "10:00"},
            [{"type": "move", "pipeline_id": HYGIENE, "stage_id": "lost", "loss_reason": "Нет ответа"}],
            conditions={"no_answer": {"kind": "plus", "within_days": 7}},
            target="created",
        ),
    ],
    "reactivation": [
        _rule(
            "reactivation",
            "12 месяцев без визита → возврат",
            {"type": "offset", "anchor": "last_visit", "months": 12, "at": "10:00"},
            [
                {
                    "type": "create_deal",
                    "pipeline_id": RETURN,
                    "stage_id": "Новая",
                    "name": "Возврат: {{ФИО}}",
                    "copy_fields": [],
                    "then": [_task("Пациент не был более года: позвонить и пригласить")],
                }
            ],
            conditions={"no_booking_since_anchor": True},
        )
    ],
    "deferred_demand": [
        _rule(
            "deferred_demand",
            "Отложенный спрос → возврат в срок",
            {"type": "field_set", "field_id": "Отложенный спрос"},
            [
                {
                    "type": "create_deal",
                    "pipeline_id": RETURN,
                    "stage_id": "Отложенный спрос",
                    "name": "Отложенный спрос: {{ФИО}}",
                    "copy_fields": ["Источник заявки"],
                    "then": [
                        _task("Уточнить актуальность услуг клиники", due_months_field="Отложенный спрос")
                    ],
                }
            ],
            conditions={"fields_set": ["Отложенный спрос"]},
        )
    ],
    "lost_review": [
        _rule(
            "lost_review",
            "Проверка причины отказа",
            {"type": "stage_entered", "stage_id": "lost"},
            [_task("Проверить причину отказа и проведённую работу с клиентом", "head")],
            conditions={"pipelines": [PRIMARY, REPEAT], "not_loss_reasons": ["Перенос", "Отмена"]},
        )
    ],
    "next_visit_control": [
        _rule(
            "next_visit_control",
            "Контроль следующей записи",
            {"type": "stage_entered", "stage_id": "won"},
            [_task("Пациенту нужен следующий приём, но он не записан: вернуться к нему")],
            conditions={"fields_set": ["Контроль следующей записи"], "future_booking": False},
        )
    ],
    "complex_treatment": [
        _rule(
            "complex_treatment",
            "Сделка в «Продажа комплексного лечения»",
            {"type": "stage_entered", "stage_id": "won"},
            [
                {
                    "type": "create_deal",
                    "pipeline_id": COMPLEX_SALE,
                    "stage_from_field": "Продажа комплексного лечения",
                    "name": "Комплексное лечение: {{ФИО}}",
                    "copy_fields": ["Источник заявки", "Потребности", "Филиал"],
                    # From the patient's visits, not a field someone has to keep up to date.
                    "computed_fields": {"Не был более года": "not_seen_for_a_year"},
                    "then": [],
                }
            ],
            conditions={"fields_set": ["Продажа комплексного лечения"]},
        )
    ],
    "plan_presented": [
        _rule(
            "plan_presented",
            "Презентация проведена → согласовать план",
            {"type": "stage_entered", "pipeline_id": COMPLEX_SALE, "stage_id": "Презентация проведена"},
            [
                _task("Согласовать презентованный план лечения", "curator"),
                {"type": "message", "text": "{{ФИО}}, Ваш план лечения: {{план}}"},
            ],
        )
    ],
    "treatment_tag": [
        _rule(
            "treatment_tag",
            "Тег «Комплексное лечение» на повторных приёмах",
            {"type": "appointment_status", "statuses": ["booked"]},
            [{"type": "tag", "tag": "Комплексное лечение"}],
            conditions={"kind": "repeat", "complex_treatment": True},
        )
    ],
    "curator_meeting": [
        _rule(
            "curator_meeting",
            "Встреча куратором",
            {"type": "appointment_status", "statuses": ["booked"]},
            [_task("Встретить пациента в клинике", "curator")],
            conditions={"kind": "repeat", "curator_needed": True},
        )
    ],
    "checkup": [
        _rule(
            "checkup",
            "Профосмотр",
            {"type": "stage_entered", "pipeline_id": CHECKUP, "stage_id": "Новая"},
            [_task("Пригласить пациента на профосмотр", due_date_field="Дата профосмотра")],
        )
    ],
}


def template_rules() -> list[tuple[str, dict[str, Any]]]:
    return [(template, doc) for template, docs in SEED002_TEMPLATES.items() for doc in docs]


def install_templates(session: Session, portal: Portal, actor: str) -> int:
    """Add each seed rule the portal lacks (by key), disabled, and bring rules installed from an earlier
    template up to date (`upgrade_templates`): an install or reinstall leaves the portal current."""
    have = set(session.scalars(select(JourneyRule.key).where(JourneyRule.portal_id == portal.id)))
    added = 0
    for template, doc in template_rules():
        if doc["key"] in have:
            continue
        create_rule(session, portal, {**doc, "enabled": False}, actor, Catalogue(), template=template)
        added += 1
    upgrade_templates(session, portal, actor)
    return added


# What earlier releases installed under these keys, kept as data: a portal's rule still exactly like one
# of them was never edited by the clinic, so it may be replaced by today's template; any other is theirs.
PREVIOUS_TEMPLATES: dict[str, list[dict[str, Any]]] = {
    "invalid_phone": [
        # A deal field someone had to tick, before the MIS's phone flag and the lead's own phones.
        _rule(
            "invalid_phone",
            "Некорректный телефон → «Не заявка»",
            {"type": "field_set", "field_id": "Некорректный телефон"},
            [{"type": "move", "stage_id": "lost", "loss_reason": "Не заявка"}],
        )
    ],
    "confirm_d1.request": [
        # Before confirm_d1_mode: the message went whatever the clinic chose.
        _rule(
            "confirm_d1.request",
            "Подтверждение записи за день",
            {"type": "offset", "anchor": "visit", "days": -1, "at": "10:00"},
            [
                {
                    "type": "message",
                    "text": "{{ФИО}}, напоминаем о записи {{дата}} в {{время}}, врач: {{врач}}. "
                    "Подтвердите, пожалуйста: ответьте «да» или «нет».",
                }
            ],
            conditions={"statuses": ["booked"]},
            window_hours=8,
        )
    ],
    "complex_treatment": [
        # «Не был более года» copied from a field nobody kept up to date, not computed from the visits.
        _rule(
            "complex_treatment",
            "Сделка в «Продажа комплексного лечения»",
            {"type": "stage_entered", "stage_id": "won"},
            [
                {
                    "type": "create_deal",
                    "pipeline_id": COMPLEX_SALE,
                    "stage_from_field": "Продажа комплексного лечения",
                    "name": "Комплексное лечение: {{ФИО}}",
                    "copy_fields": ["Источник заявки", "Потребности", "Филиал", "Не был более года"],
                    "then": [],
                }
            ],
            conditions={"fields_set": ["Продажа комплексного лечения"]},
        )
    ],
}


@dataclass
class TemplateUpgrade:
    upgraded: list[str] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)
    """Keys of rules the clinic changed since they were installed: left as they are."""

    def as_dict(self) -> dict[str, list[str]]:
        return {"upgraded": self.upgraded, "edited": self.edited}


def upgrade_templates(
    session: Session, portal: Portal, actor: str, *, dry_run: bool = False
) -> TemplateUpgrade:
    """Replace each rule still exactly as an earlier template installed it by today's template, as a new
    version (the old one stays, as do the firings citing it; enabled stays as it was). A rule already
    current is skipped, so running again changes nothing; an edited one is listed in `edited`."""
    latest = {doc["key"]: doc for _, doc in template_rules()}
    result = TemplateUpgrade()
    rules = session.scalars(
        select(JourneyRule)
        .where(JourneyRule.portal_id == portal.id, JourneyRule.key.in_(sorted(PREVIOUS_TEMPLATES)))
        .order_by(JourneyRule.key)
    )
    for rule in list(rules):
        assert rule.key is not None
        normalise = lambda doc: validate_rule(session, portal, doc, Catalogue(), strict=False)  # noqa: E731
        document = current_version(session, rule).document
        wanted = normalise(latest[rule.key])
        if document == wanted:
            continue
        if document not in [normalise(old) for old in PREVIOUS_TEMPLATES[rule.key]]:
            result.edited.append(rule.key)
            continue
        result.upgraded.append(rule.key)
        if dry_run:
            continue
        rule.version += 1
        rule.name = wanted["name"]
        session.add(
            JourneyRuleVersion(
                portal_id=portal.id, rule_id=rule.id, version=rule.version, document=wanted, created_by=actor
            )
        )
    session.flush()
    if not dry_run:
        # Occurrences planned before the unchosen confirm_d1 variant stopped planning (or by the request
        # rule before its mode condition) would only turn up as skipped rows: they go, the chosen one's stay.
        on_confirm_mode_change(session, portal, clock.now_utc())
    return result
