"""Why a dose was not given, and the next step each reason proposes (seed 000: «отмена врача, закончились
таблетки … купить таблетки, заказать или ожидаем доставки»), with the role whose task it becomes."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NEXT_STEPS", "REASONS", "TASK_ROLES", "NextStep", "Reason", "reason_catalogue"]

TASK_ROLES = ("manager", "building_manager", "nurse", "doctor")
"""Who a task goes to: the deal's responsible manager, the building's manager or nurses' user, the
prescribing (or examining) doctor."""


@dataclass(frozen=True)
class NextStep:
    code: str
    title_ru: str
    title_en: str
    role: str
    task_ru: str


@dataclass(frozen=True)
class Reason:
    code: str
    title_ru: str
    title_en: str
    next_step: str


NEXT_STEPS: dict[str, NextStep] = {
    step.code: step
    for step in (
        NextStep("buy", "Купить препарат", "Buy the drug", "manager",
                 "Купить препарат {drug} ({dose}): согласуйте закупку с представителем"),
        NextStep("order", "Заказать препарат", "Order the drug", "building_manager",
                 "Заказать препарат {drug} ({dose}) для пациента"),
        NextStep("await_delivery", "Ожидать доставку", "Await delivery", "nurse",
                 "Проверить доставку препарата {drug} и выдать пропущенный приём"),
        NextStep("tell_doctor", "Сообщить врачу", "Tell the doctor", "doctor",
                 "Приём {drug} ({dose}) не выполнен: {reason}. Решите, что делать с назначением"),
    )
}  # fmt: skip

REASONS: dict[str, Reason] = {
    reason.code: reason
    for reason in (
        Reason("doctor_cancelled", "Отмена врача", "Cancelled by the doctor", "tell_doctor"),
        Reason("out_of_stock", "Закончились таблетки", "Out of stock", "buy"),
        Reason("not_in_pharmacy", "Нет в аптеке центра", "Not in the centre's pharmacy", "order"),
        Reason("awaiting_delivery", "Ожидаем доставку", "Awaiting delivery", "await_delivery"),
        Reason("patient_refused", "Пациент отказался", "Patient refused", "tell_doctor"),
        Reason("patient_absent", "Пациента нет на месте", "Patient absent", "tell_doctor"),
    )
}


def reason_catalogue() -> list[dict[str, object]]:
    """The catalogue as the panel shows it: each reason with the step it proposes."""
    out: list[dict[str, object]] = []
    for reason in REASONS.values():
        step = NEXT_STEPS[reason.next_step]
        out.append(
            {
                "code": reason.code,
                "title_ru": reason.title_ru,
                "title_en": reason.title_en,
                "next_step": {
                    "code": step.code,
                    "title_ru": step.title_ru,
                    "title_en": step.title_en,
                    "role": step.role,
                },
            }
        )
    return out
